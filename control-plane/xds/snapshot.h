/*
 * A snapshot: every resource every kind of node can receive, built from one store input (the
 * whole configuration read at one point in time, store_input_read) and nothing else: pure, no
 * I/O. Immutable once built (except its body cache) and reference-counted, so streams keep
 * using the one they hold while a newer one is built. A build reuses from the previous snapshot
 * the resources (and their encoded bytes) of every service whose revision did not move, and of
 * every proxy group none of whose services changed.
 *
 * Views: one per (proxy group, node kind), plus one gRPC view of every service for gRPC
 * clients whose node.cluster names no group.
 */
#ifndef HF_XDS_SNAPSHOT_H
#define HF_XDS_SNAPSHOT_H

#include "hf_err.h"
#include "rbuf.h"
#include "resources.h"
#include "store.h"
#include "xds_types.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct xds_body_cache xds_body_cache;

typedef struct xds_view {
    char group[HF_NAME_MAX]; /* "" for the all-services gRPC view */
    enum xds_node_kind kind;
    xds_resource_list res[XDS_NTYPES];
    xds_body_cache *cache; /* SotW bodies already encoded, by (type, subscription) */
} xds_view;

typedef struct xds_built xds_built;

typedef struct xds_snapshot {
    atomic_uint refs;
    uint64_t generation; /* the store generation of its input */
    uint64_t serial;     /* unique per snapshot built in this process */
    xds_view *views;
    size_t n_views;
    size_t n_resources;
    size_t n_rebuilt; /* services whose resources were built afresh (the rest were reused) */
    xds_built *built; /* per service and group: what the next build may reuse */
} xds_snapshot;

/* Builds a snapshot from in alone, reusing what did not change since prev (may be NULL). Pure:
 * callable from any thread, no I/O. Returns HF_OK and *out (one reference). */
int xds_snapshot_build(const store_input *in, const xds_snapshot *prev, xds_snapshot **out,
                       hf_detail *d);
/* The consistency check run before a snapshot is published (go-control-plane's
 * Snapshot.Consistent as the model): in every view, every listener's route configuration (or,
 * for gRPC API listeners, cluster), every route configuration's clusters and every cluster's
 * ClusterLoadAssignment exist. HF_OK, or HF_EINVAL with d naming the first dangling name. */
int xds_snapshot_check(const xds_snapshot *s, hf_detail *d);
xds_snapshot *xds_snapshot_ref(xds_snapshot *s);
void xds_snapshot_unref(xds_snapshot *s);

/* The view for a node of kind in group (node.cluster). Envoy nodes of an unknown group get an
 * empty view; gRPC nodes of an unknown group get the all-services view. Never NULL. */
xds_view *xds_snapshot_view(xds_snapshot *s, const char *group, enum xds_node_kind kind);

/* A subscription: wildcard, or a sorted set of names. */
typedef struct xds_names {
    bool wildcard;
    char **names; /* sorted, unique, owned by the caller */
    size_t n;
} xds_names;

/* A hash of (t, sub): computed once per subscription change, passed to xds_view_sotw. */
uint64_t xds_names_key(enum xds_type t, const xds_names *sub);

/* What a client holds of one type (EDS and RDS in state of the world, where a response carries
 * only the resources that changed). */
typedef struct xds_held {
    /* The version of name the client was last sent, or NULL. */
    const char *(*version_of)(const void *map, const char *name);
    const void *map;
    uint64_t fingerprint; /* equal fingerprints mean equal held sets */
} xds_held;

/* A state-of-the-world response body: DiscoveryResponse fields version_info, resources and
 * type_url (the caller appends its nonce). */
typedef struct xds_sotw_reply {
    hf_rbuf *body;                 /* a reference the caller releases (xds_sotw_reply_release) */
    char version[HF_VERSION_LEN];  /* content hash of the complete subscribed set */
    xds_resource *const *included; /* what body carries; valid while the snapshot is */
    size_t n_included;
    bool owned; /* not cached: release frees included */
} xds_sotw_reply;

/* The body for type t and subscription sub (key: xds_names_key). held NULL gives the complete
 * subscribed set (CDS and LDS always, and a client's first response); otherwise only the
 * subscribed resources whose version differs from what held says. Encoded once per snapshot,
 * subscription and held set, then shared (a bounded number per view). Thread-safe. */
void xds_view_sotw(xds_view *v, enum xds_type t, const xds_names *sub, uint64_t key,
                   const xds_held *held, xds_sotw_reply *out);
void xds_sotw_reply_release(xds_sotw_reply *r);

#endif
