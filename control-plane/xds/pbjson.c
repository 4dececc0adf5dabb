/*
 * protobuf-c messages as proto3 JSON (see pbjson.h). A walk over protobuf-c's descriptors: a
 * field's value is found at its offset in the message struct, its presence through its label
 * (proto3 implicit presence: a non-default value; a oneof member: the case field; optional: its
 * has_ flag), and message types with a special JSON form are recognised by their full name.
 */
#include "pbjson.h"

#include "envoy/config/cluster/v3/cluster.pb-c.h"
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/config/listener/v3/listener.pb-c.h"
#include "envoy/config/route/v3/route.pb-c.h"
#include "envoy/extensions/filters/http/router/v3/router.pb-c.h"
#include "envoy/extensions/filters/http/stateful_session/v3/stateful_session.pb-c.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb-c.h"
#include "envoy/extensions/http/stateful_session/cookie/v3/cookie.pb-c.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/duration.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEPTH 64

/* The message types an Any from holdfast may hold. */
static const ProtobufCMessageDescriptor *const registry[] = {
    &envoy__config__listener__v3__listener__descriptor,
    &envoy__config__route__v3__route_configuration__descriptor,
    &envoy__config__cluster__v3__cluster__descriptor,
    &envoy__config__endpoint__v3__cluster_load_assignment__descriptor,
    &envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager__descriptor,
    &envoy__extensions__filters__http__router__v3__router__descriptor,
    &envoy__extensions__filters__http__stateful_session__v3__stateful_session__descriptor,
    &envoy__extensions__filters__http__stateful_session__v3__stateful_session_per_route__descriptor,
    &envoy__extensions__http__stateful_session__cookie__v3__cookie_based_session_state__descriptor,
    &envoy__extensions__upstreams__http__v3__http_protocol_options__descriptor,
    &google__protobuf__duration__descriptor,
    &google__protobuf__struct__descriptor,
    &google__protobuf__value__descriptor,
    &google__protobuf__uint32_value__descriptor,
    &google__protobuf__bool_value__descriptor,
};

static void message_at(hf_buf *out, const ProtobufCMessage *m, int depth);

void pbjson_string(hf_buf *out, const char *s, size_t len)
{
    hf_buf_puts(out, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            hf_buf_append(out, esc, 2);
        } else if (c < 0x20) {
            hf_buf_printf(out, "\\u%04x", c);
        } else {
            hf_buf_append(out, &s[i], 1);
        }
    }
    hf_buf_puts(out, "\"");
}

static void cstring(hf_buf *out, const char *s)
{
    pbjson_string(out, s ? s : "", s ? strlen(s) : 0);
}

static void base64(hf_buf *out, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    hf_buf_puts(out, "\"");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        v |= i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0;
        v |= i + 2 < n ? d[i + 2] : 0;
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        hf_buf_append(out, q, 4);
    }
    hf_buf_puts(out, "\"");
}

/* A field's JSON name: lowerCamelCase, as protoc derives json_name. */
static void json_name(hf_buf *out, const char *name)
{
    hf_buf_puts(out, "\"");
    bool upper = false;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        char c = upper ? (char)toupper((unsigned char)*p) : *p;
        upper = false;
        hf_buf_append(out, &c, 1);
    }
    hf_buf_puts(out, "\"");
}

/* Shortest decimal that reads back as the same float or double (as Python prints them). */
static void number(hf_buf *out, double v, bool is_float)
{
    if (isnan(v)) {
        hf_buf_puts(out, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        hf_buf_puts(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v) {
            break;
        }
    }
    hf_buf_puts(out, buf);
}

/* "3600s", "1.500s", "-0.000001s": seconds with 0, 3, 6 or 9 fractional digits. */
static void duration(hf_buf *out, int64_t s, int32_t nanos)
{
    bool neg = s < 0 || nanos < 0;
    uint64_t as = (uint64_t)(s < 0 ? -s : s);
    uint32_t an = (uint32_t)(nanos < 0 ? -nanos : nanos);
    hf_buf_printf(out, "\"%s%" PRIu64, neg ? "-" : "", as);
    if (an % 1000000 == 0 && an) {
        hf_buf_printf(out, ".%03u", an / 1000000);
    } else if (an % 1000 == 0 && an) {
        hf_buf_printf(out, ".%06u", an / 1000);
    } else if (an) {
        hf_buf_printf(out, ".%09u", an);
    }
    hf_buf_puts(out, "s\"");
}

static void timestamp(hf_buf *out, int64_t s, int32_t nanos)
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    hf_buf_printf(out, "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    uint32_t an = (uint32_t)(nanos < 0 ? 0 : nanos);
    if (an % 1000000 == 0 && an) {
        hf_buf_printf(out, ".%03u", an / 1000000);
    } else if (an % 1000 == 0 && an) {
        hf_buf_printf(out, ".%06u", an / 1000);
    } else if (an) {
        hf_buf_printf(out, ".%09u", an);
    }
    hf_buf_puts(out, "Z\"");
}

/* ---- one value of a field ---------------------------------------------------------------- */

static size_t scalar_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    default:
        return 4;
    }
}

static void enum_value(hf_buf *out, const ProtobufCEnumDescriptor *ed, int v)
{
    if (strcmp(ed->name, "google.protobuf.NullValue") == 0) {
        hf_buf_puts(out, "null");
        return;
    }
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);
    if (ev != NULL) {
        cstring(out, ev->name);
    } else {
        hf_buf_printf(out, "%d", v);
    }
}

/* The value at p (a field's storage, or one element of a repeated field). */
static void value(hf_buf *out, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        hf_buf_printf(out, "%" PRId32, *(const int32_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        hf_buf_printf(out, "%" PRIu32, *(const uint32_t *)p);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        hf_buf_printf(out, "\"%" PRId64 "\"", *(const int64_t *)p);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        hf_buf_printf(out, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        number(out, *(const float *)p, true);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        number(out, *(const double *)p, false);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        hf_buf_puts(out, *(const protobuf_c_boolean *)p ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM:
        enum_value(out, f->descriptor, *(const int *)p);
        break;
    case PROTOBUF_C_TYPE_STRING:
        cstring(out, *(char *const *)p);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        base64(out, b->data, b->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        message_at(out, *(ProtobufCMessage *const *)p, depth + 1);
        break;
    }
}

/* True when a singular field is present (proto3 JSON leaves out absent and default values). */
static bool present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    const void *p = base + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        return *(ProtobufCMessage *const *)p != NULL;
    }
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
        return true;
    }
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)p;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
            return s != NULL && s != f->default_value;
        }
        return s != NULL && s[0] != '\0';
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    }
    if (f->type == PROTOBUF_C_TYPE_BYTES) {
        return ((const ProtobufCBinaryData *)p)->len > 0;
    }
    static const uint8_t zero[8];
    if (f->type == PROTOBUF_C_TYPE_FLOAT) {
        return *(const float *)p != 0 || signbit(*(const float *)p);
    }
    if (f->type == PROTOBUF_C_TYPE_DOUBLE) {
        return *(const double *)p != 0 || signbit(*(const double *)p);
    }
    return memcmp(p, zero, scalar_size(f->type)) != 0;
}

static bool is_map_entry(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED) {
        return false;
    }
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t n = strlen(d->short_name);
    return n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
           strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0;
}

/* A map field: a JSON object, keys as strings. */
static void map_field(hf_buf *out, const ProtobufCFieldDescriptor *f, size_t n,
                      ProtobufCMessage *const *entries, int depth)
{
    const ProtobufCMessageDescriptor *d = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &d->fields[0], *vf = &d->fields[1];
    hf_buf_puts(out, "{");
    for (size_t i = 0; i < n; i++) {
        const char *e = (const char *)entries[i];
        hf_buf_puts(out, i ? "," : "");
        if (kf->type == PROTOBUF_C_TYPE_STRING) {
            value(out, kf, e + kf->offset, depth);
        } else {
            hf_buf_puts(out, "\"");
            hf_buf tmp = {0};
            value(&tmp, kf, e + kf->offset, depth);
            const char *t = tmp.data ? tmp.data : "";
            size_t tl = tmp.len;
            if (tl >= 2 && t[0] == '"') { /* 64-bit keys are already quoted */
                t++;
                tl -= 2;
            }
            hf_buf_append(out, t, tl);
            hf_buf_destroy(&tmp);
            hf_buf_puts(out, "\"");
        }
        hf_buf_puts(out, ":");
        if (vf->type == PROTOBUF_C_TYPE_MESSAGE &&
            *(ProtobufCMessage *const *)(e + vf->offset) == NULL) {
            hf_buf_puts(out, "{}");
        } else {
            value(out, vf, e + vf->offset, depth);
        }
    }
    hf_buf_puts(out, "}");
}

static void repeated_field(hf_buf *out, const ProtobufCMessage *m,
                           const ProtobufCFieldDescriptor *f, int depth)
{
    const char *base = (const char *)m;
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const char *arr = *(char *const *)(base + f->offset);
    if (is_map_entry(f)) {
        map_field(out, f, n, (ProtobufCMessage *const *)arr, depth);
        return;
    }
    size_t sz = scalar_size(f->type);
    hf_buf_puts(out, "[");
    for (size_t i = 0; i < n; i++) {
        hf_buf_puts(out, i ? "," : "");
        value(out, f, arr + i * sz, depth);
    }
    hf_buf_puts(out, "]");
}

/* The fields of m as members (without braces); returns how many were written. */
static size_t members(hf_buf *out, const ProtobufCMessage *m, size_t written, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (*(const size_t *)((const char *)m + f->quantifier_offset) == 0) {
                continue;
            }
        } else if (!present(m, f)) {
            continue;
        }
        hf_buf_puts(out, written++ ? "," : "");
        json_name(out, f->name);
        hf_buf_puts(out, ":");
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            repeated_field(out, m, f, depth);
        } else {
            value(out, f, (const char *)m + f->offset, depth);
        }
    }
    return written;
}

/* ---- well-known types -------------------------------------------------------------------- */

static const ProtobufCMessageDescriptor *lookup(const char *type_url)
{
    const char *slash = strrchr(type_url, '/');
    const char *full = slash ? slash + 1 : type_url;
    for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++) {
        if (strcmp(registry[i]->name, full) == 0) {
            return registry[i];
        }
    }
    return NULL;
}

/* An Any: {"@type", the fields of the message it holds} (a well-known type's JSON goes under
 * "value"); a type outside the registry keeps its bytes, in base64, under "value". */
static void any_json(hf_buf *out, const Google__Protobuf__Any *a, int depth)
{
    const ProtobufCMessageDescriptor *inner = lookup(a->type_url ? a->type_url : "");
    ProtobufCMessage *im =
        inner ? protobuf_c_message_unpack(inner, NULL, a->value.len, a->value.data) : NULL;
    hf_buf_puts(out, "{\"@type\":");
    cstring(out, a->type_url);
    if (im == NULL) {
        hf_buf_puts(out, ",\"value\":");
        base64(out, a->value.data, a->value.len);
    } else if (strncmp(im->descriptor->name, "google.protobuf.", 16) == 0) {
        hf_buf_puts(out, ",\"value\":");
        message_at(out, im, depth + 1);
    } else {
        members(out, im, 1, depth + 1);
    }
    if (im != NULL) {
        protobuf_c_message_free_unpacked(im, NULL);
    }
    hf_buf_puts(out, "}");
}

/* Writes the special JSON form of a well-known type; false when m is not one. */
static bool well_known(hf_buf *out, const ProtobufCMessage *m, int depth)
{
    const char *name = m->descriptor->name;
    if (strncmp(name, "google.protobuf.", 16) != 0) {
        return false;
    }
    name += 16;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (strcmp(name, "Duration") == 0 || strcmp(name, "Timestamp") == 0) {
        int64_t s = *(const int64_t *)((const char *)m + d->fields[0].offset);
        int32_t ns = *(const int32_t *)((const char *)m + d->fields[1].offset);
        (name[0] == 'D' ? duration : timestamp)(out, s, ns);
        return true;
    }
    size_t len = strlen(name);
    if (len > 5 && strcmp(name + len - 5, "Value") == 0 && strcmp(name, "Value") != 0 &&
        strcmp(name, "ListValue") != 0) { /* wrappers: the bare value */
        value(out, &d->fields[0], (const char *)m + d->fields[0].offset, depth);
        return true;
    }
    if (strcmp(name, "Struct") == 0) {
        const ProtobufCFieldDescriptor *f = &d->fields[0];
        map_field(out, f, *(const size_t *)((const char *)m + f->quantifier_offset),
                  *(ProtobufCMessage *const *const *)((const char *)m + f->offset), depth);
        return true;
    }
    if (strcmp(name, "ListValue") == 0) {
        repeated_field(out, m, &d->fields[0], depth);
        return true;
    }
    if (strcmp(name, "Value") == 0) {
        for (unsigned i = 0; i < d->n_fields; i++) {
            if (present(m, &d->fields[i])) {
                value(out, &d->fields[i], (const char *)m + d->fields[i].offset, depth);
                return true;
            }
        }
        hf_buf_puts(out, "null");
        return true;
    }
    if (strcmp(name, "Empty") == 0) {
        hf_buf_puts(out, "{}");
        return true;
    }
    if (strcmp(name, "Any") == 0) {
        any_json(out, (const Google__Protobuf__Any *)m, depth);
        return true;
    }
    return false;
}

static void message_at(hf_buf *out, const ProtobufCMessage *m, int depth)
{
    if (m == NULL || depth > MAX_DEPTH) {
        hf_buf_puts(out, "null");
        return;
    }
    if (well_known(out, m, depth)) {
        return;
    }
    hf_buf_puts(out, "{");
    members(out, m, 0, depth);
    hf_buf_puts(out, "}");
}

void pbjson_message(hf_buf *out, const ProtobufCMessage *m)
{
    message_at(out, m, 0);
}

int pbjson_any_bytes(hf_buf *out, const uint8_t *data, size_t len)
{
    Google__Protobuf__Any *a = google__protobuf__any__unpack(NULL, len, data);
    if (a == NULL) {
        return -1;
    }
    pbjson_message(out, &a->base);
    google__protobuf__any__free_unpacked(a, NULL);
    return 0;
}
