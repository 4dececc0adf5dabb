/*
 * What each stream was last sent, per type, and its dump as JSON (GET
 * /api/v1/proxies/{node_id}/config, issue 12 item 8): every resource the proxy holds from us,
 * with the version it ACKed or NACKed, so a NACK can be traced to the object that caused it.
 *
 * ads.c keeps what it needs (xds_stream_dump): for state-of-the-world CDS and LDS a reference to
 * the complete response body last sent (encoded once per snapshot and subscription, shared by
 * every stream that sends it); for EDS and RDS, whose responses carry only what changed, and for
 * delta, the names and versions the client holds, with the newest snapshot's bytes where it
 * still has that version. Rendering to JSON (pbjson.c) happens outside the stream's lock.
 */
#include "xds_internal.h"

#include "buf.h"
#include "pbjson.h"
#include "timeutil.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void xds_sent_clear(xds_sent *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        hf_rbuf_unref(s->items[i].any);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

/* ---- the dump ---------------------------------------------------------------------------- */

/* A copy of one stream's state, taken under its lock (xds_stream_dump) and rendered after. */
typedef struct dump_copy {
    xds_proxy_info p;
    xds_sent sent[XDS_NTYPES];
    hf_rbuf *body[XDS_NTYPES]; /* SotW CDS and LDS: the last complete response body sent */
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

/* Releases what xds_stream_dump put in c (c itself stays). */
static void copy_free(dump_copy *c)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        xds_sent_clear(&c->sent[t]);
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
        if (it->any == NULL || pbjson_any_bytes(b, it->any->data, it->any->len) != 0) {
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
    pbjson_string(&b, c->p.node_id, strlen(c->p.node_id));
    hf_buf_printf(&b, ",\"stream_id\":%llu,\"kind\":\"%s\",\"mode\":\"%s\",\"proxy_group\":",
                  (unsigned long long)c->p.stream_id, xds_node_kind_name(c->p.kind),
                  c->p.delta ? "delta" : "sotw");
    pbjson_string(&b, c->p.group, strlen(c->p.group));
    hf_buf_puts(&b, ",\"types\":{");
    for (int t = 0; t < XDS_NTYPES; t++) {
        hf_buf_puts(&b, t ? "," : "");
        xds_sent from_body = {0};
        if (c->body[t] != NULL) {
            body_items(c->body[t], &from_body);
        }
        type_json(&b, (enum xds_type)t, &c->p.types[t], c->body[t] ? &from_body : &c->sent[t]);
        xds_sent_clear(&from_body);
    }
    hf_buf_puts(&b, "}}");
    return hf_buf_take(&b);
}

int xds_proxy_config(xds_server *srv, const char *node_id, char **json)
{
    dump_copy *c = xcalloc(1, sizeof(*c));
    bool found = false;
    uint64_t best = 0;
    pthread_mutex_lock(&srv->reg_lock);
    xds_stream *newest = NULL;
    for (xds_conn *k = srv->streams; k != NULL; k = k->next) {
        uint64_t id;
        if (xds_stream_is_node(k->proto, node_id, &id) && (newest == NULL || id > best)) {
            newest = k->proto;
            best = id;
        }
    }
    if (newest != NULL) {
        found = xds_stream_dump(newest, &c->p, c->sent, c->body);
    }
    pthread_mutex_unlock(&srv->reg_lock);
    if (!found) {
        free(c);
        return HF_ENOTFOUND;
    }
    *json = render(c);
    copy_free(c);
    free(c);
    return HF_OK;
}
