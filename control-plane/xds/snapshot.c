/*
 * Snapshot building from the store, views, and the shared SotW body cache; see snapshot.h.
 */
#include "snapshot.h"

#include "buf.h"
#include "hash.h"
#include "log.h"
#include "timeutil.h"
#include "wire.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CACHED_BODIES 256 /* per view: beyond this, bodies are encoded per stream */

struct cache_entry {
    enum xds_type type;
    uint64_t key;         /* xds_names_key of the subscription */
    uint64_t fingerprint; /* of the held set; 0 for complete sets */
    bool complete;
    xds_sotw_reply reply;
};

struct xds_body_cache {
    pthread_mutex_t lock;
    struct cache_entry *items;
    size_t n;
};

/* One service's resources, shared by consecutive snapshots while its revision holds. */
struct svc_built {
    atomic_uint refs;
    int64_t id;
    uint64_t rev;
    uint64_t row; /* hash of the service row alone: what Envoy's routes and listener depend on */
    xds_service_resources res;
};

/* An Envoy proxy group's route configuration and listener, keyed on the group row and the
 * revisions of its services. */
struct group_built {
    char name[HF_NAME_MAX];
    uint64_t key;
    xds_resource_list rds, lds;
};

struct xds_built {
    struct svc_built **svcs; /* by service name, as in the input */
    size_t n_svcs;
    struct group_built *groups; /* by group name */
    size_t n_groups;
};

static xds_view empty_envoy_view = {.kind = XDS_NODE_ENVOY};

/* ---- per service and per group ---- */

static void svc_unref(struct svc_built *b)
{
    if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1) {
        return;
    }
    xds_service_resources_clear(&b->res);
    free(b);
}

static xds_service_input service_input(const store_input_service *s)
{
    return (xds_service_input){&s->svc, s->fleets, s->n_fleets, s->endpoints, s->n_endpoints};
}

/* The built resources of s: prev's when its revision holds (prev walked by name with a
 * cursor, as both lists are by name), else built now. */
static struct svc_built *svc_get(const xds_built *prev, size_t *cursor,
                                 const store_input_service *s, size_t *rebuilt)
{
    for (size_t i = *cursor; prev != NULL && i < prev->n_svcs; i++) {
        if (prev->svcs[i]->id == s->id) {
            *cursor = i + 1;
            if (prev->svcs[i]->rev == s->rev) {
                atomic_fetch_add(&prev->svcs[i]->refs, 1);
                return prev->svcs[i];
            }
            break;
        }
    }
    struct svc_built *b = xcalloc(1, sizeof(*b));
    atomic_init(&b->refs, 1);
    b->id = s->id;
    b->rev = s->rev;
    b->row = hf_hash_update(HF_HASH_INIT, &s->svc, sizeof(s->svc)); /* zero-padded by readers */
    xds_service_input in = service_input(s);
    xds_build_service(&in, &b->res);
    (*rebuilt)++;
    return b;
}

/* The group's route configuration and listener depend on the group row and its services'
 * rows, not on their endpoints: an endpoint change keeps them. */
static uint64_t group_key(const hf_proxy_group *g, const store_input *in, const xds_built *b)
{
    uint64_t h = hf_hash_str(HF_HASH_INIT, g->name);
    h = hf_hash_update(h, &g->listener_port, sizeof(g->listener_port));
    for (size_t i = 0; i < in->n_services; i++) {
        if (strcmp(in->services[i]->svc.proxy_group, g->name) == 0) {
            h = hf_hash_update(h, &b->svcs[i]->row, sizeof(b->svcs[i]->row));
        }
    }
    return h;
}

static void group_build(const hf_proxy_group *g, const store_input *in, const xds_built *b,
                        const xds_built *prev, struct group_built *out)
{
    snprintf(out->name, sizeof(out->name), "%s", g->name);
    out->key = group_key(g, in, b);
    for (size_t i = 0; prev != NULL && i < prev->n_groups; i++) {
        const struct group_built *p = &prev->groups[i];
        if (p->key == out->key && strcmp(p->name, g->name) == 0) {
            xds_resource_list_extend(&out->rds, &p->rds);
            xds_resource_list_extend(&out->lds, &p->lds);
            return;
        }
    }
    xds_service_input *mine = xcalloc(in->n_services + 1, sizeof(*mine));
    size_t n = 0;
    for (size_t i = 0; i < in->n_services; i++) {
        if (strcmp(in->services[i]->svc.proxy_group, g->name) == 0) {
            mine[n++] = service_input(in->services[i]);
        }
    }
    xds_build_group(g, mine, n, &out->rds, &out->lds);
    free(mine);
}

static void built_free(xds_built *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->n_svcs; i++) {
        svc_unref(b->svcs[i]);
    }
    for (size_t i = 0; i < b->n_groups; i++) {
        xds_resource_list_clear(&b->groups[i].rds);
        xds_resource_list_clear(&b->groups[i].lds);
    }
    free(b->svcs);
    free(b->groups);
    free(b);
}

/* ---- views ---- */

static void view_init(xds_view *v, const char *group, enum xds_node_kind kind)
{
    snprintf(v->group, sizeof(v->group), "%s", group);
    v->kind = kind;
    v->cache = xcalloc(1, sizeof(*v->cache));
    pthread_mutex_init(&v->cache->lock, NULL);
}

static void reply_free(xds_sotw_reply *r)
{
    hf_rbuf_unref(r->body);
    free((void *)r->included);
}

static void view_destroy(xds_view *v)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        xds_resource_list_clear(&v->res[t]);
    }
    if (v->cache != NULL) {
        for (size_t i = 0; i < v->cache->n; i++) {
            reply_free(&v->cache->items[i].reply);
        }
        free(v->cache->items);
        pthread_mutex_destroy(&v->cache->lock);
        free(v->cache);
    }
}

/* Fills a view from the services of group (NULL: every service) as a node of kind sees them.
 * Services are by name, so CDS and EDS come out sorted. */
static void view_fill(xds_view *v, const store_input *in, const xds_built *b, const char *group,
                      const struct group_built *gb)
{
    for (size_t i = 0; i < in->n_services; i++) {
        if (group != NULL && strcmp(in->services[i]->svc.proxy_group, group) != 0) {
            continue;
        }
        const xds_service_resources *r = &b->svcs[i]->res;
        xds_resource_list_extend(&v->res[XDS_EDS], &r->eds);
        xds_resource_list_extend(&v->res[XDS_CDS], &r->cds[v->kind]);
        if (v->kind == XDS_NODE_GRPC) {
            xds_resource_list_extend(&v->res[XDS_LDS], &r->api);
        }
    }
    if (v->kind == XDS_NODE_ENVOY && gb != NULL) {
        xds_resource_list_extend(&v->res[XDS_RDS], &gb->rds);
        xds_resource_list_extend(&v->res[XDS_LDS], &gb->lds);
    }
    if (v->kind == XDS_NODE_GRPC) {
        xds_resource_list_unique(&v->res[XDS_LDS]);
    } else {
        xds_resource_list_sort(&v->res[XDS_LDS]);
    }
}

int xds_snapshot_build(const store_input *in, const xds_snapshot *prev, xds_snapshot **out,
                       hf_detail *d)
{
    (void)d;
    uint64_t t0 = hf_mono_ns();
    const xds_built *pb = prev != NULL ? prev->built : NULL;
    xds_snapshot *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->generation = in->generation;
    static atomic_ullong serials;
    s->serial = atomic_fetch_add(&serials, 1) + 1;
    xds_built *b = s->built = xcalloc(1, sizeof(*b));
    b->svcs = xcalloc(in->n_services + 1, sizeof(*b->svcs));
    size_t cursor = 0;
    for (size_t i = 0; i < in->n_services; i++) {
        b->svcs[b->n_svcs++] = svc_get(pb, &cursor, in->services[i], &s->n_rebuilt);
    }
    b->groups = xcalloc(in->n_groups + 1, sizeof(*b->groups));
    s->views = xcalloc(2 * in->n_groups + 1, sizeof(*s->views));
    for (size_t g = 0; g < in->n_groups; g++) {
        struct group_built *gb = &b->groups[b->n_groups++];
        group_build(&in->groups[g], in, b, pb, gb);
        for (int k = XDS_NODE_ENVOY; k <= XDS_NODE_GRPC; k++) {
            xds_view *v = &s->views[s->n_views++];
            view_init(v, in->groups[g].name, (enum xds_node_kind)k);
            view_fill(v, in, b, in->groups[g].name, gb);
        }
    }
    xds_view *all = &s->views[s->n_views++];
    view_init(all, "", XDS_NODE_GRPC);
    view_fill(all, in, b, NULL, NULL);
    for (size_t i = 0; i < s->n_views; i++) {
        for (int t = 0; t < XDS_NTYPES; t++) {
            s->n_resources += s->views[i].res[t].n;
        }
    }
    hf_debug("xds", "snapshot %llu: %zu views, %zu resources, %zu of %zu services rebuilt, %.2f ms",
             (unsigned long long)in->generation, s->n_views, s->n_resources, s->n_rebuilt,
             in->n_services, (double)(hf_mono_ns() - t0) / 1e6);
    *out = s;
    return HF_OK;
}

/* Checks that every name resource r refers to exists in view v. */
static int check_refs(const xds_view *v, const xds_resource *r, enum xds_type t, hf_detail *d)
{
    for (size_t i = 0; i < r->n_refs; i++) {
        if (xds_resource_find(&v->res[r->ref_type], r->ref_names[i]) == NULL) {
            return hf_fail(d, HF_EINVAL, "",
                           "view %s/%s: %s '%s' names %s '%s', which is not in the snapshot",
                           v->group[0] ? v->group : "(all services)", xds_node_kind_name(v->kind),
                           xds_type_name(t), r->name, xds_type_name(r->ref_type), r->ref_names[i]);
        }
    }
    return HF_OK;
}

int xds_snapshot_check(const xds_snapshot *s, hf_detail *d)
{
    for (size_t i = 0; i < s->n_views; i++) {
        const xds_view *v = &s->views[i];
        for (int t = 0; t < XDS_NTYPES; t++) {
            for (size_t j = 0; j < v->res[t].n; j++) {
                int rc = check_refs(v, v->res[t].items[j], (enum xds_type)t, d);
                if (rc != HF_OK) {
                    return rc;
                }
            }
        }
    }
    return HF_OK;
}

xds_snapshot *xds_snapshot_ref(xds_snapshot *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void xds_snapshot_unref(xds_snapshot *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < s->n_views; i++) {
        view_destroy(&s->views[i]);
    }
    free(s->views);
    built_free(s->built);
    free(s);
}

xds_view *xds_snapshot_view(xds_snapshot *s, const char *group, enum xds_node_kind kind)
{
    for (size_t i = 0; i < s->n_views; i++) {
        if (s->views[i].kind == kind && s->views[i].group[0] != '\0' &&
            strcmp(s->views[i].group, group) == 0) {
            return &s->views[i];
        }
    }
    if (kind == XDS_NODE_GRPC) {
        return &s->views[s->n_views - 1]; /* the all-services view */
    }
    return &empty_envoy_view;
}

/* ---- SotW bodies ---- */

uint64_t xds_names_key(enum xds_type t, const xds_names *sub)
{
    uint64_t h = hf_hash_update(HF_HASH_INIT, &t, sizeof(t));
    h = hf_hash_update(h, &sub->wildcard, sizeof(sub->wildcard));
    for (size_t i = 0; i < sub->n; i++) {
        h = hf_hash_str(h, sub->names[i]);
    }
    return h;
}

/* The subscribed resources of type t (all of them, or those held at another version). */
static void encode_reply(const xds_view *v, enum xds_type t, const xds_names *sub,
                         const xds_held *held, xds_sotw_reply *out)
{
    const xds_resource_list *l = &v->res[t];
    xds_resource **picked = xcalloc(l->n + 1, sizeof(*picked));
    size_t n = 0;
    uint64_t h = hf_hash_str(HF_HASH_INIT, xds_type_url(t));
    for (size_t i = 0; sub->wildcard ? i < l->n : i < sub->n; i++) {
        xds_resource *r =
            sub->wildcard ? l->items[i] : (xds_resource *)xds_resource_find(l, sub->names[i]);
        if (r == NULL) {
            continue;
        }
        /* The version is a hash of the complete subscribed set: stable across restarts. */
        h = hf_hash_str(h, r->name);
        h = hf_hash_update(h, &r->hash, sizeof(r->hash));
        const char *have = held != NULL ? held->version_of(held->map, r->name) : NULL;
        if (held == NULL || have == NULL || strcmp(have, r->version) != 0) {
            picked[n++] = r;
        }
    }
    hf_hash_hex(h, out->version);
    hf_buf b = {0};
    wire_put_string(&b, 1, out->version); /* version_info */
    for (size_t i = 0; i < n; i++) {
        wire_put_bytes(&b, 2, picked[i]->any->data, picked[i]->any->len); /* resources */
    }
    wire_put_string(&b, 4, xds_type_url(t)); /* type_url */
    out->body = hf_rbuf_copy(b.data, b.len);
    out->included = picked;
    out->n_included = n;
    hf_buf_destroy(&b);
}

void xds_view_sotw(xds_view *v, enum xds_type t, const xds_names *sub, uint64_t key,
                   const xds_held *held, xds_sotw_reply *out)
{
    memset(out, 0, sizeof(*out));
    xds_body_cache *c = v->cache;
    uint64_t fp = held != NULL ? held->fingerprint : 0;
    if (c != NULL) {
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n; i++) {
            struct cache_entry *e = &c->items[i];
            if (e->type == t && e->key == key && e->complete == (held == NULL) &&
                e->fingerprint == fp) {
                *out = e->reply;
                hf_rbuf_ref(out->body);
                pthread_mutex_unlock(&c->lock);
                return;
            }
        }
    }
    encode_reply(v, t, sub, held, out);
    if (c == NULL || c->n >= MAX_CACHED_BODIES) {
        out->owned = true; /* the static empty view, or a full cache */
    } else {
        c->items = xrealloc(c->items, (c->n + 1) * sizeof(*c->items));
        c->items[c->n++] = (struct cache_entry){
            .type = t, .key = key, .fingerprint = fp, .complete = !held, .reply = *out};
        hf_rbuf_ref(out->body);
    }
    if (c != NULL) {
        pthread_mutex_unlock(&c->lock);
    }
}

void xds_sotw_reply_release(xds_sotw_reply *r)
{
    if (r->owned) {
        reply_free(r);
    } else {
        hf_rbuf_unref(r->body);
    }
    memset(r, 0, sizeof(*r));
}
