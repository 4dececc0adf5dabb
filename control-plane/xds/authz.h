/*
 * Who may do what on the xDS port (docs/security.md, "Mutual TLS and identities"). Pure
 * functions: no I/O, no locks, no gRPC type. The transport gives the URI SAN of the verified
 * client certificate (hf_stream_identity); these functions turn it into a principal and decide:
 *
 *   spiffe://holdfast/group/<group>    a proxy of that proxy group: ADS for that group only, LRS
 *                                      reports for the clusters of that group only;
 *   spiffe://holdfast/checker/<name>   a health checker: HDS only, under its certificate's name;
 *   anything else                      nothing.
 *
 * On a plaintext connection (no TLS: loopback only, or the --xds-local listener) there is no
 * principal and the node's own claims decide, as before TLS existed.
 */
#ifndef HF_XDS_AUTHZ_H
#define HF_XDS_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

#define XDS_SPIFFE_GROUP "spiffe://holdfast/group/"
#define XDS_SPIFFE_CHECKER "spiffe://holdfast/checker/"

enum xds_principal_kind {
    XDS_PRINCIPAL_PLAINTEXT = 0, /* no TLS on this connection: nothing is proven */
    XDS_PRINCIPAL_GROUP,         /* a proxy of proxy group `name` */
    XDS_PRINCIPAL_CHECKER,       /* the health checker `name` */
    XDS_PRINCIPAL_UNKNOWN,       /* a verified certificate whose URI SAN means nothing here */
};

typedef struct xds_principal {
    enum xds_principal_kind kind;
    char name[128]; /* group or checker name; for UNKNOWN the SAN (cut), "" when none */
} xds_principal;

/* Parses the URI SAN of a verified client certificate (NULL: a plaintext connection). Group
 * names follow the model's rule ([a-z0-9][a-z0-9-]{0,62}); checker names are 1-127 characters
 * of [A-Za-z0-9._-]. Anything else (no SAN, another scheme, a bad name) is UNKNOWN. Never fails. */
void xds_principal_parse(const char *uri_san, xds_principal *out);
/* A printable description for audit events and logs: "group edge", "checker shim-a",
 * "an unknown identity 'spiffe://x'", "a plaintext client". */
void xds_principal_describe(const xds_principal *p, char *buf, size_t len);

/* May an ADS (SotW or delta) stream whose node says node.cluster = node_cluster be served?
 * Plaintext: yes. A group principal: only its own group. Checkers and unknown: no. On refusal,
 * why receives a sentence for the client and the audit log. */
bool xds_authz_ads(const xds_principal *p, const char *node_cluster, char *why, size_t len);

/* May an LRS stream be opened? Plaintext and group principals: yes; others: no (why says). */
bool xds_authz_lrs_stream(const xds_principal *p, char *why, size_t len);
/* Which proxy group an LRS stream reports for: the principal's group, or on plaintext the
 * node's claim (node_cluster, may be NULL). NULL when none. */
const char *xds_authz_lrs_group(const xds_principal *p, const char *node_cluster);
/* Does a report for a cluster of cluster_group (NULL: no such cluster) from a stream of
 * stream_group (see xds_authz_lrs_group) count? Only when both name the same group. */
bool xds_authz_lrs_report(const char *stream_group, const char *cluster_group);

/* May an HDS stream register as checker node_id? Plaintext: yes (the node id is the name).
 * A checker principal: only under its own name. Groups and unknown: no. */
bool xds_authz_hds(const xds_principal *p, const char *node_id, char *why, size_t len);
/* Does a newer HDS stream of principal newer replace a live older one of older? Yes when both
 * are the same authenticated checker; plaintext streams never replace each other. */
bool xds_authz_hds_replaces(const xds_principal *newer, const xds_principal *older);

#endif
