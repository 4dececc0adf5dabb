/*
 * The xDS server (DESIGN §3): ADS, state-of-the-world and delta, on the gRPC transport. It
 * watches the store (through its change hook), builds snapshots on its own thread, and pushes
 * them to every connected proxy. The gRPC threads never touch SQLite: what must be recorded
 * (connections, NACKs) is queued and written by the xDS thread.
 */
#ifndef HF_XDS_H
#define HF_XDS_H

#include "compat.h"
#include "hash.h"
#include "grpc_transport.h"
#include "hf_err.h"
#include "store.h"
#include "xds_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xds_server xds_server;

/* Where load reports go: fn(arg, cluster, fleet (locality sub_zone), requests) for every
 * locality of every report. Runs on gRPC threads: it must be quick and never block. */
typedef struct xds_load_sink {
    void (*fn)(void *arg, const char *cluster, const char *fleet, uint64_t requests);
    void *arg;
    /* per endpoint (when the client reports endpoint stats): requests in progress on
     * address:port, as seen by node; may be NULL */
    void (*endpoint_fn)(void *arg, const char *node, const char *cluster, const char *address,
                        uint32_t port, uint64_t in_progress);
    /* once per counted cluster of a report: node reported load for cluster; may be NULL */
    void (*reporter_fn)(void *arg, const char *node, const char *cluster);
} xds_load_sink;

typedef struct xds_config {
    const char *address;      /* "127.0.0.1:18000" */
    hf_store *store;          /* borrowed; outlives the server */
    int threads;              /* gRPC completion-queue threads */
    uint32_t lrs_interval_ms; /* the load reporting interval asked of clients */
    xds_load_sink load_sink;
    int hds_replicas;          /* health checkers per endpoint (default 2) */
    long max_connections;      /* xDS connections held at once (0: no cap); more are closed */
    const hf_grpc_tls *tls;    /* NULL: plaintext; else mutual TLS (docs/security.md) */
    const char *local_address; /* NULL, or a second, plaintext listener for on-host clients */
} xds_config;

/* Builds the first snapshot, then serves. *port receives the bound port. Sets the store's change
 * hook. */
int xds_start(const xds_config *cfg, xds_server **out, int *port, hf_detail *d);
/* Ends every stream and stops; pending audit events are written first. */
void xds_stop(xds_server *srv);

/* Certificates for new TLS handshakes (xds_auth.c); see hf_grpc_tls_update. Thread-safe. */
int xds_tls_update(xds_server *srv, const hf_grpc_tls *tls);
/* Connected ADS streams of proxy group (arg is the xds_server). Thread-safe. */
int xds_group_proxies(void *srv, const char *group);
/* The bound port of cfg->local_address, 0 without one. */
int xds_local_port(const xds_server *srv);

/* What one stream has of one type. Versions are "" when nothing was sent / ACKed. */
typedef struct xds_type_status {
    bool subscribed;
    char sent[HF_VERSION_LEN];
    int64_t sent_at; /* ms since the epoch, 0 if never */
    char acked[HF_VERSION_LEN];
    int64_t acked_at;
    char nack_version[HF_VERSION_LEN]; /* the last version the proxy rejected */
    char nack_error[512];
    int64_t nack_at;
    /* SotW: the version the current snapshot has for this subscription (what the proxy should
     * end up ACKing); "" for delta streams and unsubscribed types */
    char current[HF_VERSION_LEN];
} xds_type_status;

/* One connected stream (a proxy, or a gRPC client). */
typedef struct xds_proxy_info {
    uint64_t stream_id;
    char node_id[128];
    char group[64]; /* node.cluster */
    bool group_known;
    char user_agent[128];
    enum xds_node_kind kind;
    char peer[64];
    bool delta;
    int64_t connected_since;
    xds_build_version build_version; /* what the node announced (Envoy), if it did */
    xds_type_status types[XDS_NTYPES];
    /* type URLs the stream asked for that holdfast does not serve (ignored; at most 4) */
    char ignored_types[4][128];
    int n_ignored_types;
    const char *api; /* "ads", or the per-type service: "cds", "eds", "lds", "rds" */
} xds_proxy_info;

/* A copy of what every connected stream has; the caller frees *out. Thread-safe. */
int xds_proxies(xds_server *srv, xds_proxy_info **out, size_t *n);

/* The configuration dump of the newest stream of node_id, as JSON text (the caller frees
 * *json): per type the versions sent, ACKed and NACKed (with the error), and every resource the
 * node was last sent, in the proto3 JSON mapping. HF_ENOTFOUND when no such node is connected.
 * Thread-safe. */
int xds_proxy_config(xds_server *srv, const char *node_id, char **json);

/* A connected health checker (HDS). */
typedef struct xds_checker_info {
    char node_id[128];
    char zone[128];
    int64_t connected_since;
    size_t endpoints; /* assigned to it */
    char replica[64]; /* the replica it is connected to ("" on SQLite: this process) */
} xds_checker_info;

/* The connected health checkers (on a shared database, those of every live replica); the
 * caller frees *out. Thread-safe. */
int xds_checkers(xds_server *srv, xds_checker_info **out, size_t *n);
/* The checkers an endpoint is assigned to (node ids, at most max); returns how many. */
int xds_assignments(xds_server *srv, const char *service, const char *address, uint32_t port,
                    char assigned[][128], int max);

#endif
