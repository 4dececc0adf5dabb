/*
 * Identity checks on xDS streams (xds_auth.c), called by ads.c, lrs.c and hds.c. Decisions are
 * in authz.h; this applies them to a stream. Every function runs on the stream's gRPC thread
 * and never blocks (refusals are audited through the xDS thread's event queue).
 */
#ifndef HF_XDS_AUTH_H
#define HF_XDS_AUTH_H

#include "authz.h"
#include "xds_internal.h"

#include <stdbool.h>
#include <stddef.h>

/* The principal of stream t (plaintext when the connection has no TLS). */
void xds__principal_of(hf_stream *t, xds_principal *out);
/* Refuses stream t: PERMISSION_DENIED with why, a warning, an "xds.denied" audit event naming
 * the node and the reason, and holdfast_xds_denied_total{service}. */
void xds__deny(struct xds_server *srv, hf_stream *t, const char *service, const char *node_id,
               const char *why);
/* xds_authz_ads for stream t; refuses it (xds__deny) and returns false when not allowed. */
bool xds__authorize_ads(struct xds_server *srv, hf_stream *t, const char *node_id,
                        const char *node_cluster);
/* xds_authz_lrs_stream for stream t (refused as above); on success group receives the proxy
 * group the stream reports for ("" when none: then no report counts). */
bool xds__authorize_lrs(struct xds_server *srv, hf_stream *t, const char *node_id,
                        const char *node_cluster, char *group, size_t len);
/* Does a load report for cluster from a stream of group count? Counts the dropped ones in
 * holdfast_lrs_reports_dropped_total. */
bool xds__lrs_counts(struct xds_server *srv, const char *group, const char *cluster);
/* The transport's TLS-failure callback: an audit event (arg is the xds_server). */
void xds__tls_failure(void *arg, const char *why);

#endif
