/*
 * A snapshot: every resource every kind of node can receive, built from one committed store
 * state. Immutable once built (except its body cache) and reference-counted, so streams keep
 * using the one they hold while a newer one is built.
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

typedef struct xds_snapshot {
    atomic_uint refs;
    uint64_t generation; /* the store generation it was built after */
    xds_view *views;
    size_t n_views;
    size_t n_resources;
} xds_snapshot;

/* Builds a snapshot from the store's committed state. Call off the gRPC threads. */
int xds_snapshot_build(hf_store *st, uint64_t generation, xds_snapshot **out, hf_detail *d);
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

/* The state-of-the-world response body for type t and subscription sub: DiscoveryResponse
 * fields version_info, resources and type_url (the caller appends its nonce). Encoded once per
 * snapshot and subscription, then shared. Returns a new reference; version receives the
 * response's content-hash version. Thread-safe. */
hf_rbuf *xds_view_sotw_body(xds_view *v, enum xds_type t, const xds_names *sub,
                            char version[HF_VERSION_LEN]);

#endif
