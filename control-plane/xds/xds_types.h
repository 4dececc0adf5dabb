/* xDS resource types in push order (make before break: CDS, EDS, LDS, RDS), and node kinds. */
#ifndef HF_XDS_TYPES_H
#define HF_XDS_TYPES_H

enum xds_type { XDS_CDS = 0, XDS_EDS, XDS_LDS, XDS_RDS, XDS_NTYPES };

enum xds_node_kind {
    XDS_NODE_ENVOY = 0, /* Envoy: wildcard LDS/CDS, RDS over ADS, stateful-session cookies */
    XDS_NODE_GRPC,      /* a proxyless gRPC client: API listeners named after services */
};

/* "type.googleapis.com/envoy.config.cluster.v3.Cluster", ... */
const char *xds_type_url(enum xds_type t);
/* "cds", "eds", "lds", "rds" */
const char *xds_type_name(enum xds_type t);
/* Returns 0 and *out for a known type URL, -1 otherwise. */
int xds_type_from_url(const char *url, enum xds_type *out);
const char *xds_node_kind_name(enum xds_node_kind k);

#endif
