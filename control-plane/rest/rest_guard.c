/* Checks made before a request's body is read; see rest_guard.h. */
#include "rest_guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- host names ---- */

/* Copies the host part of an authority ("name:port", "[v6]:port", "name") into host and
 * returns the port after it (0 when absent, -1 when malformed). */
static long split_authority(const char *auth, char *host, size_t cap)
{
    const char *end;
    const char *rest;
    if (auth[0] == '[') {
        end = strchr(auth, ']');
        if (end == NULL) {
            return -1;
        }
        auth++;
        rest = end + 1;
    } else {
        end = auth + strcspn(auth, ":");
        rest = end;
    }
    size_t n = (size_t)(end - auth);
    if (n == 0 || n >= cap) {
        return -1;
    }
    memcpy(host, auth, n);
    host[n] = '\0';
    if (n > 1 && host[n - 1] == '.') {
        host[n - 1] = '\0'; /* "localhost." is "localhost" */
    }
    if (*rest == '\0') {
        return 0;
    }
    char *stop;
    long port = *rest == ':' && isdigit((unsigned char)rest[1]) ? strtol(rest + 1, &stop, 10) : -1;
    return port >= 1 && port <= 65535 && *stop == '\0' ? port : -1;
}

/* Parses an IPv4 or IPv6 literal into a 16-byte form; false when s is a name. */
static bool ip_literal(const char *s, unsigned char out[16])
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out + 12) == 1) {
        out[10] = out[11] = 0xff; /* v4-mapped, so both families compare alike */
        return true;
    }
    return inet_pton(AF_INET6, s, out) == 1;
}

int rest__guard_init(rest_guard *g, const char *bound, const char *const *hosts, size_t n_hosts,
                     hf_detail *d)
{
    memset(g, 0, sizeof(*g));
    snprintf(g->bound, sizeof(g->bound), "%s", bound);
    unsigned char ip[16];
    static const unsigned char any4[16] = {[10] = 0xff, [11] = 0xff};
    static const unsigned char any6[16] = {0};
    g->wildcard = ip_literal(bound, ip) && (memcmp(ip, any4, 16) == 0 || memcmp(ip, any6, 16) == 0);
    if (n_hosts > REST_GUARD_MAX_HOSTS) {
        return hf_fail(d, HF_EINVAL, "http-host", "at most %d --http-host names",
                       REST_GUARD_MAX_HOSTS);
    }
    for (size_t i = 0; i < n_hosts; i++) {
        size_t len = strlen(hosts[i]);
        bool ok = len > 0 && len < sizeof(g->hosts[i]);
        for (size_t k = 0; ok && k < len; k++) {
            unsigned char c = (unsigned char)hosts[i][k];
            ok = isalnum(c) || c == '-' || c == '.' || c == '_';
        }
        if (!ok) {
            return hf_fail(d, HF_EINVAL, "http-host",
                           "--http-host wants a DNS name (letters, digits, '-', '.'), got '%s'",
                           hosts[i]);
        }
        for (size_t k = 0; k < len; k++) {
            g->hosts[i][k] = (char)tolower((unsigned char)hosts[i][k]);
        }
        g->n_hosts++;
    }
    return HF_OK;
}

/* True when host (no port) names this server. */
static bool host_allowed(const rest_guard *g, const char *host)
{
    unsigned char ip[16], mine[16];
    if (ip_literal(host, ip)) {
        return g->wildcard || (ip_literal(g->bound, mine) && memcmp(ip, mine, 16) == 0);
    }
    if (strcasecmp(host, "localhost") == 0) {
        return true;
    }
    for (size_t i = 0; i < g->n_hosts; i++) {
        if (strcasecmp(host, g->hosts[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- headers ---- */

struct lengths {
    const char *first;
    bool conflict;
};

static enum MHD_Result each_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct lengths *l = cls;
    if (strcasecmp(key, "Content-Length") != 0 || value == NULL) {
        return MHD_YES;
    }
    if (l->first == NULL) {
        l->first = value;
    } else if (strcmp(l->first, value) != 0) {
        l->conflict = true;
    }
    return MHD_YES;
}

bool rest__guard_mutating(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
           strcmp(method, "OPTIONS") != 0;
}

/* True when the Origin header value names the same site as the Host header value. */
static bool same_origin(const char *origin, const char *host_header)
{
    long dflt;
    if (strncasecmp(origin, "http://", 7) == 0) {
        dflt = 80;
        origin += 7;
    } else if (strncasecmp(origin, "https://", 8) == 0) {
        dflt = 443;
        origin += 8;
    } else {
        return false; /* "null", or another scheme */
    }
    char oh[256], hh[256];
    long op = split_authority(origin, oh, sizeof(oh));
    long hp = split_authority(host_header, hh, sizeof(hh));
    if (op < 0 || hp < 0) {
        return false;
    }
    return strcasecmp(oh, hh) == 0 && (op ? op : dflt) == (hp ? hp : dflt);
}

/* application/json, with or without parameters (charset). */
static bool is_json_type(const char *type)
{
    if (type == NULL || strncasecmp(type, "application/json", 16) != 0) {
        return false;
    }
    char c = type[16];
    return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

bool rest__guard_admit(const rest_guard *g, struct MHD_Connection *conn, const char *method,
                       rest_resp *resp)
{
    struct lengths l = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, each_length, &l);
    if (l.conflict) {
        rest__error_status(resp, 400, "bad_request", "",
                           "the request has two different Content-Length headers");
        return false;
    }
    if (l.first != NULL && strtoull(l.first, NULL, 10) > REST_MAX_BODY) {
        rest__error_status(resp, 413, "too_large", "", "the body is larger than %d bytes",
                           REST_MAX_BODY);
        return false;
    }
    const char *host_header = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    char host[256];
    if (host_header != NULL &&
        (split_authority(host_header, host, sizeof(host)) < 0 || !host_allowed(g, host))) {
        rest__error_status(resp, 421, "misdirected_request", "",
                           "this server does not answer for that Host; add the name with "
                           "--http-host NAME if it is really ours");
        return false;
    }
    if (!rest__guard_mutating(method)) {
        return true;
    }
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin != NULL && (host_header == NULL || !same_origin(origin, host_header))) {
        rest__error_status(resp, 403, "cross_origin", "",
                           "a request from another site (Origin) may not change anything");
        return false;
    }
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (!is_json_type(type)) {
        rest__error_status(resp, 415, "unsupported_media_type", "",
                           "a %s needs Content-Type: application/json (even without a body)",
                           method);
        return false;
    }
    return true;
}
