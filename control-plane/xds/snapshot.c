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

struct cache_entry {
    enum xds_type type;
    uint64_t key; /* hash of the subscription */
    hf_rbuf *body;
    char version[HF_VERSION_LEN];
};

struct xds_body_cache {
    pthread_mutex_t lock;
    struct cache_entry *items;
    size_t n;
};

static xds_view empty_envoy_view = {.kind = XDS_NODE_ENVOY};

/* ---- reading the store ---- */

struct loaded {
    hf_proxy_group *groups;
    size_t n_groups;
    hf_service *services;
    size_t n_services;
    xds_service_input *inputs; /* one per service */
};

static void loaded_free(struct loaded *l)
{
    for (size_t i = 0; i < l->n_services && l->inputs; i++) {
        free((void *)l->inputs[i].fleets);
        free((void *)l->inputs[i].endpoints);
    }
    free(l->inputs);
    free(l->services);
    free(l->groups);
}

static int load_service(hf_store *st, xds_service_input *in, hf_detail *d)
{
    hf_fleet *fleets;
    size_t nf;
    int rc = store_fleet_list(st, in->svc->name, &fleets, &nf, d);
    if (rc != HF_OK) {
        return rc;
    }
    in->fleets = fleets;
    in->n_fleets = nf;
    hf_endpoint *all = NULL;
    size_t n = 0;
    for (size_t f = 0; f < nf && rc == HF_OK; f++) {
        if (fleets[f].role != HF_ROLE_ACTIVE && fleets[f].role != HF_ROLE_DRAINING) {
            continue; /* standby and retired fleets are not served */
        }
        hf_endpoint *eps;
        size_t ne;
        rc = store_endpoint_list(st, in->svc->name, fleets[f].name, &eps, &ne, d);
        if (rc == HF_OK && ne > 0) {
            all = xrealloc(all, (n + ne) * sizeof(*all));
            memcpy(all + n, eps, ne * sizeof(*eps));
            n += ne;
        }
        if (rc == HF_OK) {
            free(eps);
        }
    }
    in->endpoints = all;
    in->n_endpoints = n;
    return rc;
}

/* Reads everything the snapshot needs. A service deleted meanwhile is simply skipped at the
 * next build (the change hook fires again). */
static int load(hf_store *st, struct loaded *l, hf_detail *d)
{
    memset(l, 0, sizeof(*l));
    int rc = store_group_list(st, &l->groups, &l->n_groups);
    if (rc == HF_OK) {
        rc = store_service_list(st, NULL, &l->services, &l->n_services);
    }
    if (rc != HF_OK) {
        return hf_fail(d, rc, "", "cannot read the store for a snapshot");
    }
    l->inputs = xcalloc(l->n_services + 1, sizeof(*l->inputs));
    for (size_t i = 0; i < l->n_services && rc == HF_OK; i++) {
        l->inputs[i].svc = &l->services[i];
        rc = load_service(st, &l->inputs[i], d);
        if (rc == HF_ENOTFOUND) {
            rc = HF_OK; /* deleted between the two reads */
        }
    }
    return rc;
}

/* ---- building ---- */

static void view_init(xds_view *v, const char *group, enum xds_node_kind kind)
{
    snprintf(v->group, sizeof(v->group), "%s", group);
    v->kind = kind;
    v->cache = xcalloc(1, sizeof(*v->cache));
    pthread_mutex_init(&v->cache->lock, NULL);
}

static void view_destroy(xds_view *v)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        xds_resource_list_clear(&v->res[t]);
    }
    if (v->cache != NULL) {
        for (size_t i = 0; i < v->cache->n; i++) {
            hf_rbuf_unref(v->cache->items[i].body);
        }
        free(v->cache->items);
        pthread_mutex_destroy(&v->cache->lock);
        free(v->cache);
    }
}

int xds_snapshot_build(hf_store *st, uint64_t generation, xds_snapshot **out, hf_detail *d)
{
    uint64_t t0 = hf_mono_ns();
    struct loaded l;
    int rc = load(st, &l, d);
    if (rc != HF_OK) {
        loaded_free(&l);
        return rc;
    }
    xds_snapshot *s = xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->generation = generation;
    s->views = xcalloc(2 * l.n_groups + 1, sizeof(*s->views));
    xds_service_input *mine = xcalloc(l.n_services + 1, sizeof(*mine));
    for (size_t g = 0; g < l.n_groups; g++) {
        size_t n = 0;
        for (size_t i = 0; i < l.n_services; i++) {
            if (strcmp(l.services[i].proxy_group, l.groups[g].name) == 0) {
                mine[n++] = l.inputs[i];
            }
        }
        for (int k = XDS_NODE_ENVOY; k <= XDS_NODE_GRPC; k++) {
            xds_view *v = &s->views[s->n_views++];
            view_init(v, l.groups[g].name, (enum xds_node_kind)k);
            xds_build_view(&l.groups[g], mine, n, (enum xds_node_kind)k, v->res);
        }
    }
    xds_view *all = &s->views[s->n_views++];
    view_init(all, "", XDS_NODE_GRPC);
    xds_build_view(NULL, l.inputs, l.n_services, XDS_NODE_GRPC, all->res);
    free(mine);
    for (size_t i = 0; i < s->n_views; i++) {
        for (int t = 0; t < XDS_NTYPES; t++) {
            s->n_resources += s->views[i].res[t].n;
        }
    }
    loaded_free(&l);
    hf_debug("xds", "snapshot %llu: %zu views, %zu resources, built in %.2f ms",
             (unsigned long long)generation, s->n_views, s->n_resources,
             (double)(hf_mono_ns() - t0) / 1e6);
    *out = s;
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

static uint64_t subscription_key(enum xds_type t, const xds_names *sub)
{
    uint64_t h = hf_hash_update(HF_HASH_INIT, &t, sizeof(t));
    h = hf_hash_update(h, &sub->wildcard, sizeof(sub->wildcard));
    for (size_t i = 0; i < sub->n; i++) {
        h = hf_hash_str(h, sub->names[i]);
    }
    return h;
}

static hf_rbuf *encode_body(const xds_view *v, enum xds_type t, const xds_names *sub,
                            char version[HF_VERSION_LEN])
{
    const xds_resource_list *l = &v->res[t];
    const xds_resource **picked = xcalloc(l->n + 1, sizeof(*picked));
    size_t n = 0;
    if (sub->wildcard) {
        for (size_t i = 0; i < l->n; i++) {
            picked[n++] = &l->items[i];
        }
    } else {
        for (size_t i = 0; i < sub->n && n < l->n; i++) {
            const xds_resource *r = xds_resource_find(l, sub->names[i]);
            if (r != NULL) {
                picked[n++] = r;
            }
        }
    }
    /* The version is a hash of what is sent: stable across restarts. */
    uint64_t h = hf_hash_str(HF_HASH_INIT, xds_type_url(t));
    for (size_t i = 0; i < n; i++) {
        h = hf_hash_str(h, picked[i]->name);
        h = hf_hash_update(h, &picked[i]->hash, sizeof(picked[i]->hash));
    }
    hf_hash_hex(h, version);
    hf_buf b = {0};
    wire_put_string(&b, 1, version); /* version_info */
    for (size_t i = 0; i < n; i++) {
        wire_put_bytes(&b, 2, picked[i]->any->data, picked[i]->any->len); /* resources */
    }
    wire_put_string(&b, 4, xds_type_url(t)); /* type_url */
    free(picked);
    hf_rbuf *body = hf_rbuf_copy(b.data, b.len);
    hf_buf_destroy(&b);
    return body;
}

hf_rbuf *xds_view_sotw_body(xds_view *v, enum xds_type t, const xds_names *sub,
                            char version[HF_VERSION_LEN])
{
    uint64_t key = subscription_key(t, sub);
    if (v->cache == NULL) { /* the static empty view */
        return encode_body(v, t, sub, version);
    }
    xds_body_cache *c = v->cache;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].type == t && c->items[i].key == key) {
            memcpy(version, c->items[i].version, HF_VERSION_LEN);
            hf_rbuf *body = hf_rbuf_ref(c->items[i].body);
            pthread_mutex_unlock(&c->lock);
            return body;
        }
    }
    struct cache_entry e = {.type = t, .key = key};
    e.body = encode_body(v, t, sub, e.version);
    c->items = xrealloc(c->items, (c->n + 1) * sizeof(*c->items));
    c->items[c->n++] = e;
    memcpy(version, e.version, HF_VERSION_LEN);
    hf_rbuf *body = hf_rbuf_ref(e.body);
    pthread_mutex_unlock(&c->lock);
    return body;
}
