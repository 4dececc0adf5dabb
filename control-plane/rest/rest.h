/*
 * The REST API server (DESIGN §7) on libmicrohttpd: /api/v1/..., /healthz, /readyz, /metrics.
 * It owns no state: every request reads or changes the store.
 */
#ifndef HF_REST_H
#define HF_REST_H

#include "hf_err.h"
#include "store.h"
#include "xds.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct rest_server rest_server;

typedef struct rest_config {
    const char *address;      /* an IPv4 or IPv6 literal to bind */
    uint16_t port;            /* 0 picks a free port (see rest_port) */
    hf_store *store;          /* borrowed; outlives the server */
    xds_server *xds;          /* borrowed; NULL when xDS is not served */
    const char *const *hosts; /* extra names the Host header may carry (--http-host), borrowed */
    size_t n_hosts;
    const char *tls_cert_pem; /* NULL: plain HTTP; else HTTPS with this chain and key (PEM) */
    const char *tls_key_pem;
} rest_config;

/* Starts serving on its own threads. Binding a non-loopback address requires that at least one
 * API token exists (HF_ECONFLICT otherwise); a malformed host name is HF_EINVAL. Requests whose
 * Host header names neither the bound address, localhost nor one of cfg->hosts are refused. */
int rest_start(const rest_config *cfg, rest_server **out, hf_detail *d);
/* The port actually bound. */
uint16_t rest_port(const rest_server *srv);
/* HTTPS only: new connections use this certificate chain and key (PEM, copied); established
 * ones keep theirs. HF_EINVAL (d says why) when unusable or the server has no TLS. */
int rest_tls_update(rest_server *srv, const char *cert_pem, const char *key_pem, hf_detail *d);
/* Stops accepting, finishes in-flight requests, frees the server. */
void rest_stop(rest_server *srv);

/* One route of the API, for documentation checks: method and path pattern. */
typedef struct rest_route_info {
    const char *method;
    const char *pattern; /* e.g. "/api/v1/services/{service}" */
} rest_route_info;
/* The route table: *n receives its length. */
const rest_route_info *rest_routes(size_t *n);

#endif
