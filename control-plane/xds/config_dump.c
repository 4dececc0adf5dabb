/*
 * What each stream was last sent, per type, and its dump as JSON (GET
 * /api/v1/proxies/{node_id}/config, issue 12 item 8): every resource the proxy holds from us,
 * with the version it ACKed or NACKed, so a NACK can be traced to the object that caused it.
 *
 * ads.c records a type's resources when a response goes out. State of the world: a reference to
 * the response body, which is encoded once per snapshot and subscription and shared by every
 * stream that sends it, so recording costs a stream one pointer per type. Delta: the changes
 * applied to what the stream holds, sharing the snapshot's encoded Any buffers by reference.
 * Rendering to JSON (pbjson.c) happens outside the stream's lock.
 */
#include "xds_internal.h"

#include "buf.h"
#include "pbjson.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const xds_sent_item *)a)->name, ((const xds_sent_item *)b)->name);
}

static xds_sent_item *sent_find(const xds_sent *s, const char *name)
{
    xds_sent_item key = {.name = (char *)name};
    return s->n ? bsearch(&key, s->items, s->n, sizeof(*s->items), item_cmp) : NULL;
}

static void item_set(xds_sent_item *it, const xds_resource *r)
{
    hf_rbuf_unref(it->any);
    it->any = hf_rbuf_ref(r->any);
    memcpy(it->version, r->version, HF_VERSION_LEN);
}

static void sent_put(xds_sent *s, const xds_resource *r)
{
    xds_sent_item *it = sent_find(s, r->name);
    if (it != NULL) {
        item_set(it, r);
        return;
    }
    s->items = xrealloc(s->items, (s->n + 1) * sizeof(*s->items));
    it = &s->items[s->n++];
    memset(it, 0, sizeof(*it));
    it->name = xstrdup(r->name);
    item_set(it, r);
    qsort(s->items, s->n, sizeof(*s->items), item_cmp);
}

static void sent_remove(xds_sent *s, const char *name)
{
    xds_sent_item *it = sent_find(s, name);
    if (it == NULL) {
        return;
    }
    free(it->name);
    hf_rbuf_unref(it->any);
    size_t i = (size_t)(it - s->items);
    memmove(it, it + 1, (s->n - i - 1) * sizeof(*it));
    s->n--;
}

static void sent_items_clear(xds_sent *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        hf_rbuf_unref(s->items[i].any);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

void xds__sent_clear(xds_type_state *ts)
{
    sent_items_clear(&ts->last);
    hf_rbuf_unref(ts->last_body);
    ts->last_body = NULL;
}

void xds__sent_sotw(xds_type_state *ts, hf_rbuf *body)
{
    hf_rbuf_unref(ts->last_body);
    ts->last_body = hf_rbuf_ref(body);
}

void xds__sent_delta(xds_sent *s, const xds_view *v, enum xds_type t, const xds_kvset *pending)
{
    for (size_t i = 0; i < pending->n; i++) {
        const xds_kv *kv = &pending->items[i];
        const xds_resource *r = kv->version[0] ? xds_resource_find(&v->res[t], kv->name) : NULL;
        if (r != NULL) {
            sent_put(s, r);
        } else {
            sent_remove(s, kv->name);
        }
    }
}

/* ---- the dump ---------------------------------------------------------------------------- */

/* A copy of one stream's state, taken under its lock and rendered after. */
typedef struct dump_copy {
    xds_stream_info info;
    bool delta;
    xds_type_status status[XDS_NTYPES];
    xds_sent sent[XDS_NTYPES];
    hf_rbuf *body[XDS_NTYPES]; /* SotW: the last response body sent */
} dump_copy;

/* Reads one field of protobuf wire format at *p: its number and, for a length-delimited field,
 * its bytes. Returns false at the end or on malformed input. */
static bool wire_next(const uint8_t **p, const uint8_t *end, uint32_t *field, const uint8_t **val,
                      size_t *len)
{
    uint64_t key = 0, n = 0;
    for (int shift = 0;; shift += 7) {
        if (*p >= end || shift > 63) {
            return false;
        }
        uint8_t c = *(*p)++;
        key |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            break;
        }
    }
    *field = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0: /* varint */
        while (*p < end && (*(*p)++ & 0x80)) {
        }
        *val = NULL;
        return true;
    case 1:
    case 5: {
        size_t w = (key & 7) == 1 ? 8 : 4;
        if ((size_t)(end - *p) < w) {
            return false;
        }
        *p += w;
        *val = NULL;
        return true;
    }
    case 2:
        for (int shift = 0;; shift += 7) {
            if (*p >= end || shift > 63) {
                return false;
            }
            uint8_t c = *(*p)++;
            n |= (uint64_t)(c & 0x7f) << shift;
            if (!(c & 0x80)) {
                break;
            }
        }
        if (n > (uint64_t)(end - *p)) {
            return false;
        }
        *val = *p;
        *len = (size_t)n;
        *p += n;
        return true;
    default:
        return false;
    }
}

/* The first length-delimited field number f of a message, or NULL. */
static const uint8_t *wire_find(const uint8_t *p, size_t n, uint32_t f, size_t *len)
{
    const uint8_t *end = p + n, *val;
    uint32_t field;
    while (wire_next(&p, end, &field, &val, len)) {
        if (field == f && val != NULL) {
            return val;
        }
    }
    return NULL;
}

/* The resources of a state-of-the-world response body (DiscoveryResponse.resources = 2): each
 * Any's resource name (field 1 of Listener, RouteConfiguration, Cluster, ClusterLoadAssignment)
 * and content-hash version, as the snapshot computed them. */
static void body_items(const hf_rbuf *body, xds_sent *out)
{
    const uint8_t *p = body->data, *end = body->data + body->len, *any;
    uint32_t field;
    size_t len;
    while (wire_next(&p, end, &field, &any, &len)) {
        if (field != 2 || any == NULL) {
            continue;
        }
        size_t vlen = 0, nlen = 0;
        const uint8_t *value = wire_find(any, len, 2, &vlen);
        const uint8_t *name = value ? wire_find(value, vlen, 1, &nlen) : NULL;
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(*out->items));
        xds_sent_item *it = &out->items[out->n++];
        it->name = xcalloc(1, nlen + 1);
        if (name != NULL) {
            memcpy(it->name, name, nlen);
        }
        it->any = hf_rbuf_copy(any, len);
        hf_hash_hex(hf_hash_update(HF_HASH_INIT, any, len), it->version);
    }
}

static void copy_sent(xds_sent *dst, const xds_sent *src)
{
    dst->n = src->n;
    dst->items = xcalloc(src->n ? src->n : 1, sizeof(*dst->items));
    for (size_t i = 0; i < src->n; i++) {
        dst->items[i].name = xstrdup(src->items[i].name);
        dst->items[i].any = hf_rbuf_ref(src->items[i].any);
        memcpy(dst->items[i].version, src->items[i].version, HF_VERSION_LEN);
    }
}

static void copy_stream(dump_copy *c, const xds_stream *s)
{
    c->info = s->info;
    c->delta = s->delta;
    for (int t = 0; t < XDS_NTYPES; t++) {
        const xds_type_state *ts = &s->types[t];
        xds_type_status *o = &c->status[t];
        o->subscribed = ts->active;
        memcpy(o->sent, ts->sent, HF_VERSION_LEN);
        memcpy(o->acked, ts->acked, HF_VERSION_LEN);
        memcpy(o->nack_version, ts->nack_version, HF_VERSION_LEN);
        snprintf(o->nack_error, sizeof(o->nack_error), "%s", ts->nack_error ? ts->nack_error : "");
        o->sent_at = ts->sent_at;
        o->acked_at = ts->acked_at;
        o->nack_at = ts->nack_at;
        copy_sent(&c->sent[t], &ts->last);
        c->body[t] = ts->last_body != NULL ? hf_rbuf_ref(ts->last_body) : NULL;
    }
}

/* Releases what copy_stream took (c itself stays). */
static void copy_free(dump_copy *c)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        sent_items_clear(&c->sent[t]);
        hf_rbuf_unref(c->body[t]);
        c->body[t] = NULL;
    }
}

static void version_json(hf_buf *b, const char *v)
{
    if (v[0]) {
        pbjson_string(b, v, strlen(v));
    } else {
        hf_buf_puts(b, "null");
    }
}

static void time_json(hf_buf *b, int64_t ms)
{
    char t[40];
    if (ms == 0) {
        hf_buf_puts(b, "null");
        return;
    }
    hf_time_format(ms, t, sizeof(t));
    hf_buf_printf(b, "\"%s\"", t);
}

static void type_json(hf_buf *b, enum xds_type t, const xds_type_status *st, const xds_sent *sent)
{
    hf_buf_printf(b, "\"%s\":{\"type_url\":\"%s\",\"subscribed\":%s,\"sent_version\":",
                  xds_type_name(t), xds_type_url(t), st->subscribed ? "true" : "false");
    version_json(b, st->sent);
    hf_buf_puts(b, ",\"sent_at\":");
    time_json(b, st->sent_at);
    hf_buf_puts(b, ",\"acked_version\":");
    version_json(b, st->acked);
    hf_buf_puts(b, ",\"acked_at\":");
    time_json(b, st->acked_at);
    hf_buf_puts(b, ",\"last_nack\":");
    if (st->nack_at != 0) {
        hf_buf_puts(b, "{\"version\":");
        version_json(b, st->nack_version);
        hf_buf_puts(b, ",\"error\":");
        pbjson_string(b, st->nack_error, strlen(st->nack_error));
        hf_buf_puts(b, ",\"at\":");
        time_json(b, st->nack_at);
        hf_buf_puts(b, "}");
    } else {
        hf_buf_puts(b, "null");
    }
    hf_buf_puts(b, ",\"resources\":[");
    for (size_t i = 0; i < sent->n; i++) {
        const xds_sent_item *it = &sent->items[i];
        hf_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        pbjson_string(b, it->name, strlen(it->name));
        hf_buf_printf(b, ",\"version\":\"%s\",\"resource\":", it->version);
        if (pbjson_any_bytes(b, it->any->data, it->any->len) != 0) {
            hf_buf_puts(b, "null");
        }
        hf_buf_puts(b, "}");
    }
    hf_buf_puts(b, "]}");
}

static char *render(const dump_copy *c)
{
    hf_buf b = {0};
    hf_buf_puts(&b, "{\"id\":");
    pbjson_string(&b, c->info.node_id, strlen(c->info.node_id));
    hf_buf_printf(&b, ",\"stream_id\":%llu,\"kind\":\"%s\",\"mode\":\"%s\",\"proxy_group\":",
                  (unsigned long long)c->info.stream_id, xds_node_kind_name(c->info.kind),
                  c->delta ? "delta" : "sotw");
    pbjson_string(&b, c->info.group, strlen(c->info.group));
    hf_buf_puts(&b, ",\"types\":{");
    for (int t = 0; t < XDS_NTYPES; t++) {
        hf_buf_puts(&b, t ? "," : "");
        xds_sent from_body = {0};
        if (c->body[t] != NULL) {
            body_items(c->body[t], &from_body);
        }
        type_json(&b, (enum xds_type)t, &c->status[t], c->body[t] ? &from_body : &c->sent[t]);
        sent_items_clear(&from_body);
    }
    hf_buf_puts(&b, "}}");
    return hf_buf_take(&b);
}

int xds_proxy_config(xds_server *srv, const char *node_id, char **json)
{
    dump_copy *c = NULL;
    uint64_t best = 0;
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_stream *s = srv->streams; s != NULL; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (s->have_node && strcmp(s->info.node_id, node_id) == 0 &&
            (c == NULL || s->info.stream_id > best)) {
            if (c != NULL) {
                copy_free(c);
            } else {
                c = xcalloc(1, sizeof(*c));
            }
            copy_stream(c, s);
            best = s->info.stream_id;
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&srv->reg_lock);
    if (c == NULL) {
        return HF_ENOTFOUND;
    }
    *json = render(c);
    copy_free(c);
    free(c);
    return HF_OK;
}
