/*
 * The LRS server (envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats): Envoy (with
 * cluster_manager.load_stats_config) and gRPC clients (with the cluster's lrs_server) report, per
 * cluster and locality, the requests of each interval. Localities are (zone, fleet), so the
 * counts split by fleet: what the blue-green affinity tail is computed from. Each report is
 * handed to the configured sink at once, on the gRPC thread (the sink must not block).
 */
#include "xds_internal.h"
#include "xds_auth.h"

#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include "envoy/service/load_stats/v3/lrs.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Envoy__Service__LoadStats__V3__LoadStatsRequest LoadStatsRequest;
typedef Envoy__Service__LoadStats__V3__LoadStatsResponse LoadStatsResponse;
typedef Envoy__Config__Endpoint__V3__ClusterStats ClusterStats;
typedef Envoy__Config__Endpoint__V3__UpstreamLocalityStats LocalityStats;

typedef struct lrs_stream {
    struct xds_server *srv;
    hf_stream *transport;
    pthread_mutex_t lock;
    bool answered; /* the LoadStatsResponse went out */
    bool closed;
    char node_id[128];
    char group[64]; /* the proxy group whose clusters its reports count for */
    hf_rbuf *response;
} lrs_stream;

static void *lrs_open(void *ctx, hf_stream *t, const char *peer)
{
    (void)peer;
    lrs_stream *s = xcalloc(1, sizeof(*s));
    s->srv = ctx;
    s->transport = t;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

/* The one response: report every cluster, per endpoint too, every interval. */
static hf_rbuf *encode_response(uint32_t interval_ms)
{
    Google__Protobuf__Duration interval = GOOGLE__PROTOBUF__DURATION__INIT;
    interval.seconds = interval_ms / 1000;
    interval.nanos = (int32_t)(interval_ms % 1000) * 1000000;
    LoadStatsResponse r = ENVOY__SERVICE__LOAD_STATS__V3__LOAD_STATS_RESPONSE__INIT;
    r.send_all_clusters = 1;
    r.report_endpoint_granularity = 1;
    r.load_reporting_interval = &interval;
    hf_rbuf *b = hf_rbuf_new(protobuf_c_message_get_packed_size(&r.base));
    protobuf_c_message_pack(&r.base, b->data);
    return b;
}

/* Requests of one locality in one report: issued when the client counts them, else completed. */
static uint64_t locality_requests(const LocalityStats *l)
{
    if (l->total_issued_requests > 0) {
        return l->total_issued_requests;
    }
    return l->total_successful_requests + l->total_error_requests;
}

static void take_report(lrs_stream *s, const LoadStatsRequest *rq)
{
    const xds_load_sink *sink = &s->srv->load_sink;
    for (size_t c = 0; c < rq->n_cluster_stats; c++) {
        const ClusterStats *cs = rq->cluster_stats[c];
        const char *cluster = cs->cluster_service_name && cs->cluster_service_name[0]
                                  ? cs->cluster_service_name
                                  : cs->cluster_name;
        if (cluster == NULL || !xds__lrs_counts(s->srv, s->group, cluster)) {
            continue; /* not a cluster of the reporter's group */
        }
        if (sink->reporter_fn != NULL && s->node_id[0] != '\0') {
            sink->reporter_fn(sink->arg, s->node_id, cluster);
        }
        for (size_t i = 0; i < cs->n_upstream_locality_stats; i++) {
            const LocalityStats *l = cs->upstream_locality_stats[i];
            const char *fleet = l->locality && l->locality->sub_zone ? l->locality->sub_zone : "";
            uint64_t n = locality_requests(l);
            if (sink->fn != NULL && cluster != NULL && n > 0) {
                sink->fn(sink->arg, cluster, fleet, n);
            }
            for (size_t k = 0; sink->endpoint_fn != NULL && cluster != NULL &&
                               s->node_id[0] != '\0' && k < l->n_upstream_endpoint_stats;
                 k++) {
                const Envoy__Config__Endpoint__V3__UpstreamEndpointStats *es =
                    l->upstream_endpoint_stats[k];
                const Envoy__Config__Core__V3__SocketAddress *sa =
                    es->address != NULL &&
                            es->address->address_case ==
                                ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS
                        ? es->address->socket_address
                        : NULL;
                if (sa != NULL && sa->address != NULL &&
                    sa->port_specifier_case ==
                        ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE) {
                    sink->endpoint_fn(sink->arg, s->node_id, cluster, sa->address, sa->port_value,
                                      es->total_requests_in_progress);
                }
            }
        }
    }
    hf_counter_add("holdfast_lrs_reports_total", "Load reports received.", "", 1);
}

static void lrs_message(void *user, const uint8_t *data, size_t len)
{
    lrs_stream *s = user;
    LoadStatsRequest *rq =
        envoy__service__load_stats__v3__load_stats_request__unpack(NULL, len, data);
    pthread_mutex_lock(&s->lock);
    if (rq == NULL) {
        hf_warn("lrs", "undecodable LoadStatsRequest (%zu bytes) from %s", len,
                s->node_id[0] ? s->node_id : "a new stream");
        hf_stream_finish(s->transport, HF_GRPC_INVALID_ARGUMENT,
                         "cannot decode a LoadStatsRequest");
        pthread_mutex_unlock(&s->lock);
        return;
    }
    if (s->node_id[0] == '\0' && rq->node != NULL && rq->node->id != NULL) {
        snprintf(s->node_id, sizeof(s->node_id), "%s", rq->node->id);
    }
    if (!s->answered &&
        !xds__authorize_lrs(s->srv, s->transport, s->node_id, rq->node ? rq->node->cluster : NULL,
                            s->group, sizeof(s->group))) {
        pthread_mutex_unlock(&s->lock);
        envoy__service__load_stats__v3__load_stats_request__free_unpacked(rq, NULL);
        return;
    }
    if (!s->answered) {
        s->answered = true;
        s->response = encode_response(s->srv->lrs_interval_ms);
        if (hf_stream_send(s->transport, &s->response, 1) != HF_OK) {
            hf_warn("lrs", "cannot answer %s", s->node_id);
        }
    }
    pthread_mutex_unlock(&s->lock);
    take_report(s, rq);
    envoy__service__load_stats__v3__load_stats_request__free_unpacked(rq, NULL);
}

static void lrs_sent(void *user)
{
    (void)user;
}

static void lrs_wake(void *user)
{
    (void)user;
}

static void lrs_closed(void *user)
{
    lrs_stream *s = user;
    hf_rbuf_unref(s->response);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const hf_stream_handler xds__lrs_handler = {lrs_open, lrs_message, lrs_sent, lrs_closed, lrs_wake};
