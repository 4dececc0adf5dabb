/*
 * Translation of the model into Envoy xDS resources (DESIGN §3), encoded once with the official
 * Envoy protos. The only xds file besides ads.c that includes generated protobuf-c headers.
 * Pure: no I/O, no locks; the snapshot builder calls it off the gRPC threads.
 */
#ifndef HF_XDS_RESOURCES_H
#define HF_XDS_RESOURCES_H

#include "hash.h"
#include "model.h"
#include "rbuf.h"
#include "xds_types.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* One encoded resource: immutable once built and reference-counted, so snapshots built one
 * after the other share the resources that did not change (and their encoded bytes). */
typedef struct xds_resource {
    atomic_uint refs;
    char *name;                   /* owned */
    hf_rbuf *any;                 /* google.protobuf.Any holding the resource */
    hf_rbuf *delta;               /* envoy.service.discovery.v3.Resource{name, version, Any} */
    uint64_t hash;                /* of the Any bytes */
    char version[HF_VERSION_LEN]; /* hex of hash */
    /* The resources it names, for the consistency check: a listener its route configuration
     * (Envoy) or clusters (gRPC API listener), a route configuration its clusters, a cluster
     * its ClusterLoadAssignment. */
    enum xds_type ref_type;
    char **ref_names; /* owned */
    size_t n_refs;
} xds_resource;

/* Resources of one type, sorted by name; the list holds one reference to each. */
typedef struct xds_resource_list {
    xds_resource **items;
    size_t n;
} xds_resource_list;

/* A service with its fleets and all their endpoints (each endpoint names its fleet). */
typedef struct xds_service_input {
    const hf_service *svc;
    const hf_fleet *fleets;
    size_t n_fleets;
    const hf_endpoint *endpoints;
    size_t n_endpoints;
} xds_service_input;

/* What one service contributes to every view: its ClusterLoadAssignment, its cluster as an
 * Envoy and as a gRPC client sees it, and the gRPC API listeners for its name and domains. */
typedef struct xds_service_resources {
    xds_resource_list eds;
    xds_resource_list cds[2]; /* by enum xds_node_kind */
    xds_resource_list api;    /* sorted by name */
} xds_service_resources;

/* Builds a service's resources. out must be zeroed. Pure. */
void xds_build_service(const xds_service_input *in, xds_service_resources *out);
void xds_service_resources_clear(xds_service_resources *r);
/* Builds an Envoy proxy group's RouteConfiguration and Listener from its services (by name).
 * rds and lds must be empty. Pure. */
void xds_build_group(const hf_proxy_group *group, const xds_service_input *svcs, size_t n,
                     xds_resource_list *rds, xds_resource_list *lds);

/* Builds the four resource lists a node of kind sees. group is the proxy group (NULL: the view
 * of a gRPC client outside any group, which sees every service). out[] must be empty. */
void xds_build_view(const hf_proxy_group *group, const xds_service_input *svcs, size_t n,
                    enum xds_node_kind kind, xds_resource_list out[XDS_NTYPES]);
xds_resource *xds_resource_ref(xds_resource *r);
void xds_resource_unref(xds_resource *r);
/* Appends r to l, taking a new reference (keep l sorted: append in order, or sort after). */
void xds_resource_list_add(xds_resource_list *l, xds_resource *r);
/* Appends every resource of from to l (new references). */
void xds_resource_list_extend(xds_resource_list *l, const xds_resource_list *from);
void xds_resource_list_sort(xds_resource_list *l);
/* Sorts l by name and keeps one resource per name (by content order, so the same one after every
 * rebuild). A gRPC client outside any proxy group sees every service, and two groups may route
 * the same host (or a name another group uses as a domain): it gets one listener of that name. */
void xds_resource_list_unique(xds_resource_list *l);
/* Drops the list's references and empties it. */
void xds_resource_list_clear(xds_resource_list *l);
/* Binary search by name; NULL when absent. */
const xds_resource *xds_resource_find(const xds_resource_list *l, const char *name);

#endif
