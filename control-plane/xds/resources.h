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

#include <stddef.h>
#include <stdint.h>

/* One encoded resource. */
typedef struct xds_resource {
    char *name;                   /* owned */
    hf_rbuf *any;                 /* google.protobuf.Any holding the resource */
    hf_rbuf *delta;               /* envoy.service.discovery.v3.Resource{name, version, Any} */
    uint64_t hash;                /* of the Any bytes */
    char version[HF_VERSION_LEN]; /* hex of hash */
} xds_resource;

/* Resources of one type, sorted by name. */
typedef struct xds_resource_list {
    xds_resource *items;
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

/* Builds the four resource lists a node of kind sees. group is the proxy group (NULL: the view
 * of a gRPC client outside any group, which sees every service). out[] must be empty. */
void xds_build_view(const hf_proxy_group *group, const xds_service_input *svcs, size_t n,
                    enum xds_node_kind kind, xds_resource_list out[XDS_NTYPES]);
void xds_resource_list_clear(xds_resource_list *l);
/* Binary search by name; NULL when absent. */
const xds_resource *xds_resource_find(const xds_resource_list *l, const char *name);

#endif
