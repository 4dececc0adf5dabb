/*
 * The glue between the pure decisions of authz.c and the streams of ads.c, lrs.c and hds.c:
 * the principal of a stream (from the transport's peer identity), refusals (PERMISSION_DENIED,
 * a log line, an audit event naming who and why, a metric), the proxy group owning a cluster,
 * and certificate rotation on the xDS port.
 */
#include "xds_auth.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void xds__principal_of(hf_stream *t, xds_principal *out)
{
    char uri[512];
    int rc = hf_stream_identity(t, uri, sizeof(uri));
    if (rc == HF_ENOTFOUND) {
        xds_principal_parse(NULL, out);
    } else {
        /* HF_EINVAL (several URI SANs) leaves a text that parses as unknown. */
        xds_principal_parse(uri, out);
    }
}

void xds__deny(struct xds_server *srv, hf_stream *t, const char *service, const char *node_id,
               const char *why)
{
    char labels[64];
    snprintf(labels, sizeof(labels), "service=\"%s\"", service);
    hf_counter_add("holdfast_xds_denied_total",
                   "xDS, LRS and HDS streams refused for their client certificate's identity.",
                   labels, 1);
    const char *id = node_id != NULL && node_id[0] != '\0' ? node_id : "(no node id)";
    hf_warn("xds", "%s stream of node %.128s refused: %s", service, id, why);
    xds__event(srv, "xds.denied", id, "%s stream of node %.128s refused: %s", service, id, why);
    hf_stream_finish(t, HF_GRPC_PERMISSION_DENIED, why);
}

bool xds__authorize_ads(struct xds_server *srv, hf_stream *t, const char *node_id,
                        const char *node_cluster)
{
    xds_principal p;
    xds__principal_of(t, &p);
    char why[256];
    if (xds_authz_ads(&p, node_cluster, why, sizeof(why))) {
        return true;
    }
    xds__deny(srv, t, "ADS", node_id, why);
    return false;
}

bool xds__authorize_lrs(struct xds_server *srv, hf_stream *t, const char *node_id,
                        const char *node_cluster, char *group, size_t len)
{
    xds_principal p;
    xds__principal_of(t, &p);
    char why[256];
    if (!xds_authz_lrs_stream(&p, why, sizeof(why))) {
        xds__deny(srv, t, "LRS", node_id, why);
        return false;
    }
    const char *g = xds_authz_lrs_group(&p, node_cluster);
    snprintf(group, len, "%s", g != NULL ? g : "");
    return true;
}

/* The proxy group whose Envoy view carries cluster, or NULL. */
static const char *cluster_group(xds_snapshot *snap, const char *cluster)
{
    for (size_t i = 0; i < snap->n_views; i++) {
        xds_view *v = &snap->views[i];
        if (v->kind == XDS_NODE_ENVOY && v->group[0] != '\0' &&
            xds_resource_find(&v->res[XDS_CDS], cluster) != NULL) {
            return v->group;
        }
    }
    return NULL;
}

bool xds__lrs_counts(struct xds_server *srv, const char *group, const char *cluster)
{
    xds_snapshot *snap = xds__snapshot(srv);
    bool ok = xds_authz_lrs_report(group, cluster_group(snap, cluster));
    xds_snapshot_unref(snap);
    if (!ok) {
        hf_counter_add("holdfast_lrs_reports_dropped_total",
                       "Per-cluster load reports dropped: the reporter is not a proxy of the "
                       "cluster's group.",
                       "", 1);
    }
    return ok;
}

int xds_tls_update(xds_server *srv, const hf_grpc_tls *tls)
{
    return hf_grpc_tls_update(srv->grpc, tls);
}

int xds_group_proxies(void *arg, const char *group)
{
    struct xds_server *srv = arg;
    int n = 0;
    pthread_mutex_lock(&srv->reg_lock);
    for (xds_conn *c = srv->streams; c != NULL; c = c->next) {
        n += xds_stream_in_group(c->proto, group);
    }
    pthread_mutex_unlock(&srv->reg_lock);
    return n;
}

int xds_local_port(const xds_server *srv)
{
    return hf_grpc_local_port(srv->grpc);
}

void xds__tls_failure(void *arg, const char *why)
{
    struct xds_server *srv = arg;
    /* gRPC's text names the TLS library's reason ("certificate verify failed", "peer did not
     * return a certificate"); it holds no key material. */
    xds__event(srv, "xds.tls_refused", "tls", "a TLS handshake on the xDS port failed: %.400s",
               why);
}
