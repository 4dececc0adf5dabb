/* HDS client of the shim; see hds_client.h. */
#include "hds_client.h"

#include "xalloc.h"

#include "envoy/service/health/v3/hds.pb-c.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define METHOD "/envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck"

enum op { OP_START, OP_RECV, OP_SEND, OP_STATUS };

/* Results by endpoint key, hashed (open addressing, no deletion: a set is cleared whole). */
typedef struct result_set {
    sh_result *v;
    size_t n, cap;
    uint32_t *slot; /* 0 empty, else index + 1 */
    size_t mask;
} result_set;

struct hds_client {
    char server[256];
    char node_id[128];
    char zone[128];
    sh_checker *checker;
    grpc_completion_queue *cq;
    grpc_channel *channel;
    shim_tls *tls;        /* NULL: plaintext */
    pthread_mutex_t lock; /* the result sets */
    result_set pending;   /* transitions waiting to be sent (latest per endpoint) */
    result_set known;     /* latest result of every endpoint, resent after a reconnect */
    bool full_due;        /* a full report is waiting to be sent */
};

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_line(const char *fmt, ...)
{
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s shim: %s\n", ts, line);
}

hds_client *hds_client_new(const char *server, const char *node_id, const char *zone,
                           sh_checker *checker)
{
    hds_client *c = xcalloc(1, sizeof(*c));
    snprintf(c->server, sizeof(c->server), "%s", server);
    snprintf(c->node_id, sizeof(c->node_id), "%s", node_id);
    snprintf(c->zone, sizeof(c->zone), "%s", zone);
    c->checker = checker;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void hds_client_set_checker(hds_client *c, sh_checker *checker)
{
    c->checker = checker;
}

static void set_clear(result_set *s)
{
    free(s->v);
    free(s->slot);
    memset(s, 0, sizeof(*s));
}

static void set_reindex(result_set *s, size_t size)
{
    free(s->slot);
    s->slot = xcalloc(size, sizeof(*s->slot));
    s->mask = size - 1;
    for (size_t i = 0; i < s->n; i++) {
        size_t pos = hf_endpoint_key_hash(&s->v[i].key) & s->mask;
        while (s->slot[pos] != 0) {
            pos = (pos + 1) & s->mask;
        }
        s->slot[pos] = (uint32_t)(i + 1);
    }
}

/* Sets r in s: the latest result per endpoint wins. */
static void set_put(result_set *s, const sh_result *r)
{
    if (s->slot == NULL || 2 * (s->n + 1) > s->mask + 1) {
        set_reindex(s, s->slot == NULL ? 64 : 2 * (s->mask + 1));
    }
    size_t pos = hf_endpoint_key_hash(&r->key) & s->mask;
    for (; s->slot[pos] != 0; pos = (pos + 1) & s->mask) {
        sh_result *x = &s->v[s->slot[pos] - 1];
        if (hf_endpoint_key_eq(&x->key, &r->key)) {
            *x = *r;
            return;
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n] = *r;
    s->slot[pos] = (uint32_t)(++s->n);
}

/* Takes the contents of s (the caller frees *out); s is left empty. */
static sh_result *set_take(result_set *s, size_t *n)
{
    sh_result *out = s->v;
    *n = s->n;
    s->v = NULL;
    s->n = s->cap = 0;
    free(s->slot);
    s->slot = NULL;
    return out;
}

void hds_client_free(hds_client *c)
{
    set_clear(&c->pending);
    set_clear(&c->known);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void hds_client_report(void *arg, const sh_result *r, size_t n, bool full)
{
    hds_client *c = arg;
    pthread_mutex_lock(&c->lock);
    if (full) {
        /* the full set replaces what is known (endpoints no longer assigned drop out) */
        set_clear(&c->known);
        c->full_due = true;
    }
    for (size_t i = 0; i < n; i++) {
        set_put(&c->known, &r[i]);
        if (!full) {
            set_put(&c->pending, &r[i]);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- encoding ---- */

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_byte_buffer *hello(hds_client *c)
{
    Envoy__Config__Core__V3__Locality loc = ENVOY__CONFIG__CORE__V3__LOCALITY__INIT;
    loc.zone = c->zone;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    node.id = c->node_id;
    node.cluster = "holdfast-shim";
    node.locality = &loc;
    node.user_agent_name = "holdfast-shim";
    Envoy__Service__Health__V3__Capability__Protocol protos[2] = {
        ENVOY__SERVICE__HEALTH__V3__CAPABILITY__PROTOCOL__HTTP,
        ENVOY__SERVICE__HEALTH__V3__CAPABILITY__PROTOCOL__TCP};
    Envoy__Service__Health__V3__Capability cap = ENVOY__SERVICE__HEALTH__V3__CAPABILITY__INIT;
    cap.n_health_check_protocols = 2;
    cap.health_check_protocols = protos;
    Envoy__Service__Health__V3__HealthCheckRequest hr =
        ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST__INIT;
    hr.node = &node;
    hr.capability = &cap;
    Envoy__Service__Health__V3__HealthCheckRequestOrEndpointHealthResponse m =
        ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__INIT;
    m.request_type_case =
        ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__REQUEST_TYPE_HEALTH_CHECK_REQUEST;
    m.health_check_request = &hr;
    return pack(&m.base);
}

/* One EndpointHealthResponse of the given results: a cluster and a locality per result. */
static grpc_byte_buffer *report(const sh_result *r, size_t n)
{
    typedef Envoy__Service__Health__V3__ClusterEndpointsHealth Ceh;
    typedef Envoy__Service__Health__V3__LocalityEndpointsHealth Leh;
    typedef Envoy__Service__Health__V3__EndpointHealth Eh;
    Ceh *ce = xcalloc(n + 1, sizeof(*ce));
    Ceh **cep = xcalloc(n + 1, sizeof(*cep));
    Leh *le = xcalloc(n + 1, sizeof(*le));
    Leh **lep = xcalloc(n + 1, sizeof(*lep));
    Eh *eh = xcalloc(n + 1, sizeof(*eh));
    Eh **ehp = xcalloc(n + 1, sizeof(*ehp));
    Envoy__Config__Core__V3__Locality *loc = xcalloc(n + 1, sizeof(*loc));
    Envoy__Config__Endpoint__V3__Endpoint *ep = xcalloc(n + 1, sizeof(*ep));
    Envoy__Config__Core__V3__Address *ad = xcalloc(n + 1, sizeof(*ad));
    Envoy__Config__Core__V3__SocketAddress *sa = xcalloc(n + 1, sizeof(*sa));
    for (size_t i = 0; i < n; i++) {
        envoy__config__core__v3__socket_address__init(&sa[i]);
        sa[i].address = (char *)r[i].key.address;
        sa[i].port_specifier_case =
            ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
        sa[i].port_value = r[i].key.port;
        envoy__config__core__v3__address__init(&ad[i]);
        ad[i].address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
        ad[i].socket_address = &sa[i];
        envoy__config__endpoint__v3__endpoint__init(&ep[i]);
        ep[i].address = &ad[i];
        if (r[i].reason[0] != '\0') {
            ep[i].hostname = (char *)r[i].reason; /* why (docs/health.md: "Reasons") */
        }
        envoy__service__health__v3__endpoint_health__init(&eh[i]);
        eh[i].endpoint = &ep[i];
        eh[i].health_status =
            r[i].health == SH_HEALTHY     ? ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY
            : r[i].health == SH_UNHEALTHY ? ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNHEALTHY
                                          : ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__UNKNOWN;
        ehp[i] = &eh[i];
        envoy__config__core__v3__locality__init(&loc[i]);
        loc[i].zone = (char *)r[i].zone;
        loc[i].sub_zone = (char *)r[i].fleet;
        envoy__service__health__v3__locality_endpoints_health__init(&le[i]);
        le[i].locality = &loc[i];
        le[i].n_endpoints_health = 1;
        le[i].endpoints_health = &ehp[i];
        lep[i] = &le[i];
        envoy__service__health__v3__cluster_endpoints_health__init(&ce[i]);
        ce[i].cluster_name = (char *)r[i].key.service;
        ce[i].n_locality_endpoints_health = 1;
        ce[i].locality_endpoints_health = &lep[i];
        cep[i] = &ce[i];
    }
    Envoy__Service__Health__V3__EndpointHealthResponse resp =
        ENVOY__SERVICE__HEALTH__V3__ENDPOINT_HEALTH_RESPONSE__INIT;
    resp.n_cluster_endpoints_health = n;
    resp.cluster_endpoints_health = cep;
    Envoy__Service__Health__V3__HealthCheckRequestOrEndpointHealthResponse m =
        ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__INIT;
    m.request_type_case =
        ENVOY__SERVICE__HEALTH__V3__HEALTH_CHECK_REQUEST_OR_ENDPOINT_HEALTH_RESPONSE__REQUEST_TYPE_ENDPOINT_HEALTH_RESPONSE;
    m.endpoint_health_response = &resp;
    grpc_byte_buffer *bb = pack(&m.base);
    free(ce);
    free(cep);
    free(le);
    free(lep);
    free(eh);
    free(ehp);
    free(loc);
    free(ep);
    free(ad);
    free(sa);
    return bb;
}

/* ---- decoding a specifier into checker targets ---- */

static uint32_t ms_of(const Google__Protobuf__Duration *d, uint32_t def)
{
    return d ? (uint32_t)(d->seconds * 1000 + d->nanos / 1000000) : def;
}

static void apply_specifier(hds_client *c, const uint8_t *data, size_t len)
{
    Envoy__Service__Health__V3__HealthCheckSpecifier *s =
        envoy__service__health__v3__health_check_specifier__unpack(NULL, len, data);
    if (s == NULL) {
        log_line("undecodable specifier");
        return;
    }
    size_t cap = 0;
    for (size_t i = 0; i < s->n_cluster_health_checks; i++) {
        for (size_t l = 0; l < s->cluster_health_checks[i]->n_locality_endpoints; l++) {
            cap += s->cluster_health_checks[i]->locality_endpoints[l]->n_endpoints;
        }
    }
    sh_target_spec *t = xcalloc(cap + 1, sizeof(*t));
    size_t n = 0;
    for (size_t i = 0; i < s->n_cluster_health_checks; i++) {
        const Envoy__Service__Health__V3__ClusterHealthCheck *ch = s->cluster_health_checks[i];
        const Envoy__Config__Core__V3__HealthCheck *hc =
            ch->n_health_checks ? ch->health_checks[0] : NULL;
        if (hc == NULL) {
            continue;
        }
        for (size_t l = 0; l < ch->n_locality_endpoints; l++) {
            const Envoy__Service__Health__V3__LocalityEndpoints *le = ch->locality_endpoints[l];
            for (size_t e = 0; e < le->n_endpoints; e++) {
                const Envoy__Config__Core__V3__SocketAddress *sa =
                    le->endpoints[e]->address &&
                            le->endpoints[e]->address->address_case ==
                                ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS
                        ? le->endpoints[e]->address->socket_address
                        : NULL;
                if (sa == NULL || sa->address == NULL) {
                    continue;
                }
                sh_target_spec *x = &t[n++];
                if (sa->port_value < 1 || sa->port_value > 65535) {
                    n--;
                    continue;
                }
                hf_endpoint_key_set(&x->key, ch->cluster_name, sa->address, sa->port_value);
                if (le->locality) {
                    snprintf(x->zone, sizeof(x->zone), "%s",
                             le->locality->zone ? le->locality->zone : "");
                    snprintf(x->fleet, sizeof(x->fleet), "%s",
                             le->locality->sub_zone ? le->locality->sub_zone : "");
                }
                x->interval_ms = ms_of(hc->interval, 2000);
                x->timeout_ms = ms_of(hc->timeout, 1000);
                x->unhealthy_threshold =
                    hc->unhealthy_threshold ? hc->unhealthy_threshold->value : 3;
                x->healthy_threshold = hc->healthy_threshold ? hc->healthy_threshold->value : 2;
                x->jitter_pct = hc->interval_jitter_percent;
                x->reuse_connection = hc->reuse_connection ? hc->reuse_connection->value : true;
                if (hc->health_checker_case ==
                    ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_TCP_HEALTH_CHECK) {
                    x->protocol = SH_TCP;
                } else if (
                    hc->health_checker_case ==
                    ENVOY__CONFIG__CORE__V3__HEALTH_CHECK__HEALTH_CHECKER_GRPC_HEALTH_CHECK) {
                    x->protocol = SH_GRPC;
                    snprintf(x->service_name, sizeof(x->service_name), "%s",
                             hc->grpc_health_check && hc->grpc_health_check->service_name
                                 ? hc->grpc_health_check->service_name
                                 : "");
                } else {
                    x->protocol = SH_HTTP;
                    snprintf(x->path, sizeof(x->path), "%s",
                             hc->http_health_check && hc->http_health_check->path
                                 ? hc->http_health_check->path
                                 : "/");
                }
            }
        }
    }
    uint32_t report_ms = ms_of(s->interval, 5000);
    envoy__service__health__v3__health_check_specifier__free_unpacked(s, NULL);
    log_line("specifier applied: %zu endpoints", n);
    sh_checker_apply(c->checker, t, n, report_ms);
    free(t);
}

/* ---- one stream ---- */

struct stream {
    grpc_call *call;
    grpc_metadata_array md_initial, md_trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    bool start_busy, recv_busy, send_busy, status_busy;
    bool ended, got_spec;
    int tags[4];
};

static void post_recv(struct stream *st)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &st->recv_buf;
    st->recv_busy =
        grpc_call_start_batch(st->call, &op, 1, &st->tags[OP_RECV], NULL) == GRPC_CALL_OK;
}

static void send_buf(struct stream *st, grpc_byte_buffer *bb)
{
    st->send_buf = bb;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = bb;
    st->send_busy =
        grpc_call_start_batch(st->call, &op, 1, &st->tags[OP_SEND], NULL) == GRPC_CALL_OK;
    if (!st->send_busy) {
        grpc_byte_buffer_destroy(bb);
        st->send_buf = NULL;
    }
}

/* Sends, when the slot is free: transitions first, in a small report of their own; then a due
 * full report (or, right after connecting, everything known). */
static void flush(hds_client *c, struct stream *st, bool everything)
{
    if (st->send_busy || !st->got_spec || st->ended) {
        return;
    }
    pthread_mutex_lock(&c->lock);
    sh_result *r = NULL;
    size_t n = 0;
    if (!everything && c->pending.n > 0) {
        r = set_take(&c->pending, &n);
    } else if (everything || c->full_due) {
        n = c->known.n;
        r = xcalloc(n + 1, sizeof(*r));
        if (n > 0) {
            memcpy(r, c->known.v, n * sizeof(*r));
        }
        c->full_due = false;
        if (everything) {
            set_clear(&c->pending); /* all of it is in the full report */
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (n > 0) {
        send_buf(st, report(r, n));
    }
    free(r);
}

static void start_stream(hds_client *c, struct stream *st)
{
    memset(st, 0, sizeof(*st));
    grpc_slice method = grpc_slice_from_static_string(METHOD);
    st->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method,
                                        NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_metadata_array_init(&st->md_initial);
    grpc_metadata_array_init(&st->md_trailing);
    /* Wait for the channel to be ready rather than failing while it reconnects. */
    grpc_op ops[2] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA, .flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY},
        {.op = GRPC_OP_RECV_INITIAL_METADATA}};
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &st->md_initial;
    st->start_busy =
        grpc_call_start_batch(st->call, ops, 2, &st->tags[OP_START], NULL) == GRPC_CALL_OK;
    grpc_op sop = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    sop.data.recv_status_on_client.trailing_metadata = &st->md_trailing;
    sop.data.recv_status_on_client.status = &st->status;
    sop.data.recv_status_on_client.status_details = &st->details;
    st->status_busy =
        grpc_call_start_batch(st->call, &sop, 1, &st->tags[OP_STATUS], NULL) == GRPC_CALL_OK;
    send_buf(st, hello(c));
    post_recv(st);
}

static void on_spec(hds_client *c, struct stream *st, bool *connected)
{
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, st->recv_buf);
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(st->recv_buf);
    st->recv_buf = NULL;
    apply_specifier(c, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
    grpc_slice_unref(s);
    bool first = !st->got_spec;
    st->got_spec = true;
    if (first) {
        *connected = true;
        log_line("connected to %s as %s", c->server, c->node_id);
        flush(c, st, true); /* resynchronise holdfast with what this shim knows */
    }
    post_recv(st);
}

static void run_stream(hds_client *c, atomic_int *stop, bool *connected)
{
    struct stream st;
    start_stream(c, &st);
    bool cancelled = false;
    while (st.start_busy || st.recv_busy || st.send_busy || st.status_busy) {
        if ((*stop || st.ended) && !cancelled) {
            grpc_call_cancel(st.call, NULL);
            cancelled = true;
        }
        flush(c, &st, false);
        grpc_event ev = grpc_completion_queue_next(
            c->cq,
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        switch ((int)((int *)ev.tag - st.tags)) {
        case OP_START:
            st.start_busy = false;
            break;
        case OP_SEND:
            grpc_byte_buffer_destroy(st.send_buf);
            st.send_buf = NULL;
            st.send_busy = false;
            break;
        case OP_RECV:
            st.recv_busy = false;
            if (ev.success && st.recv_buf != NULL && !st.ended) {
                on_spec(c, &st, connected);
            } else {
                st.ended = true;
            }
            break;
        case OP_STATUS:
            st.status_busy = false;
            st.ended = true;
            break;
        }
    }
    if (st.recv_buf) {
        grpc_byte_buffer_destroy(st.recv_buf);
    }
    grpc_metadata_array_destroy(&st.md_initial);
    grpc_metadata_array_destroy(&st.md_trailing);
    grpc_slice_unref(st.details);
    grpc_call_unref(st.call);
}

static void log_text(const char *line)
{
    log_line("%s", line);
}

void hds_client_set_tls(hds_client *c, shim_tls *tls)
{
    c->tls = tls;
}

/* A channel to the server: mutual TLS with the shim's certificate, or plaintext. */
static grpc_channel *make_channel(hds_client *c, const grpc_channel_args *args)
{
    grpc_channel_credentials *creds;
    if (c->tls != NULL) {
        grpc_ssl_pem_key_cert_pair pair = {c->tls->key_pem, c->tls->cert_pem};
        creds = grpc_ssl_credentials_create(c->tls->ca_pem, &pair, NULL, NULL);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_channel *ch = grpc_channel_create(c->server, creds, args);
    grpc_channel_credentials_release(creds);
    return ch;
}

void hds_client_run(hds_client *c, atomic_int *stop)
{
    grpc_init();
    c->cq = grpc_completion_queue_create_for_next(NULL);
    /* Reconnect quickly after the control plane restarts (gRPC's default backoff grows to two
     * minutes), and notice a dead peer on an idle stream. */
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 100}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 2000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 10000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 5000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
    };
    grpc_channel_args chargs = {sizeof(args) / sizeof(args[0]), args};
    c->channel = make_channel(c, &chargs);
    unsigned backoff_ms = 100;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    while (!*stop) {
        bool connected = false;
        if (c->tls != NULL && shim_tls_refresh(c->tls, log_text)) {
            grpc_channel_destroy(c->channel); /* between streams: none is dropped */
            c->channel = make_channel(c, &chargs);
        }
        run_stream(c, stop, &connected);
        if (*stop) {
            break;
        }
        if (connected) {
            backoff_ms = 100;
            log_line("stream to %s ended; reconnecting (checks go on)", c->server);
        }
        unsigned wait = backoff_ms / 2 + (unsigned)rand_r(&seed) % (backoff_ms / 2 + 1);
        for (unsigned waited = 0; waited < wait && !*stop; waited += 50) {
            usleep(50000);
        }
        backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
    }
    grpc_channel_destroy(c->channel);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->cq);
    grpc_shutdown_blocking();
}
