/* xDS type names; see xds_types.h. */
#include "xds_types.h"

#include <string.h>

static const char *const urls[XDS_NTYPES] = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
};
static const char *const names[XDS_NTYPES] = {"cds", "eds", "lds", "rds"};

const char *xds_type_url(enum xds_type t)
{
    return urls[t];
}

const char *xds_type_name(enum xds_type t)
{
    return names[t];
}

int xds_type_from_url(const char *url, enum xds_type *out)
{
    for (int t = 0; t < XDS_NTYPES; t++) {
        if (strcmp(url, urls[t]) == 0) {
            *out = (enum xds_type)t;
            return 0;
        }
    }
    return -1;
}

const char *xds_node_kind_name(enum xds_node_kind k)
{
    return k == XDS_NODE_GRPC ? "grpc" : "envoy";
}
