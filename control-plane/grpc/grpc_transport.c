/*
 * gRPC core server for bidirectional streams; see grpc_transport.h.
 *
 * Per call: one batch {SEND_INITIAL_METADATA, RECV_CLOSE_ON_SERVER} that completes when the call
 * ends; one RECV_MESSAGE always outstanding; at most one SEND_MESSAGE in flight. A call's memory
 * is freed when it has ended, its handler has been told, and no batch is outstanding.
 */
#include "grpc_transport.h"
#include "grpc_tls.h"

#include "grpc_conncap.h"

#include "log.h"
#include "thread.h"
#include "xalloc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum tag_kind { TAG_NEW_CALL, TAG_RECV, TAG_SEND, TAG_CLOSE, TAG_STATUS, TAG_WAKE, TAG_SHUTDOWN };

struct tag {
    enum tag_kind kind;
    void *owner;
};

struct worker;

/* One posted request for a new call: for a registered method, or (method NULL) for any other. */
struct slot {
    struct tag tag;
    struct worker *w;
    const hf_grpc_method *method;
    void *registered;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details;
    grpc_byte_buffer *payload;
};

struct hf_stream {
    struct tag recv_tag, send_tag, close_tag, status_tag, wake_tag;
    grpc_call *call;
    const hf_grpc_method *method;
    void *user;
    pthread_mutex_t lock;
    int ops;          /* batches outstanding */
    bool send_busy;   /* a SEND_MESSAGE is in flight */
    bool wake_busy;   /* a wake-up is posted */
    bool ended;       /* RECV_CLOSE_ON_SERVER completed */
    bool finished;    /* we ended it (status sent or cancelled) */
    bool told_closed; /* the handler's closed callback has run */
    int close_cancelled;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
};

struct worker {
    pthread_t thread;
    grpc_completion_queue *cq;
    struct hf_grpc_server *srv;
    struct slot *slots; /* n_methods + 1 (the last takes unknown methods) */
};

struct hf_grpc_server {
    grpc_server *server;
    struct worker *workers;
    int nworkers;
    hf_grpc_config cfg;
    void **registered;
    atomic_bool stopping;
    struct tag shutdown_tag;
    pthread_mutex_t shutdown_lock;
    pthread_cond_t shutdown_cond;
    bool shutdown_done;
    hf_conncap *conncap;    /* our listener with the connection cap, or NULL (grpc_conncap.c) */
    hf_grpc_tls_state *tls; /* NULL when plaintext */
    int local_port;
};

/* ---- posting requests for new calls ---- */

static void post_slot(struct slot *sl)
{
    struct hf_grpc_server *srv = sl->w->srv;
    if (atomic_load(&srv->stopping)) {
        return;
    }
    grpc_metadata_array_init(&sl->md);
    sl->call = NULL;
    sl->payload = NULL;
    grpc_call_error err;
    if (sl->method != NULL) {
        err = grpc_server_request_registered_call(srv->server, sl->registered, &sl->call,
                                                  &sl->deadline, &sl->md, NULL, sl->w->cq,
                                                  sl->w->cq, &sl->tag);
    } else {
        grpc_call_details_init(&sl->details);
        err = grpc_server_request_call(srv->server, &sl->call, &sl->details, &sl->md, sl->w->cq,
                                       sl->w->cq, &sl->tag);
    }
    if (err != GRPC_CALL_OK) {
        hf_error("grpc", "cannot request calls: error %d", (int)err);
    }
}

static void clear_slot(struct slot *sl)
{
    grpc_metadata_array_destroy(&sl->md);
    if (sl->method == NULL) {
        grpc_call_details_destroy(&sl->details);
    }
}

/* ---- per-stream batches ---- */

static void maybe_free(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool done = s->told_closed && s->ops == 0;
    pthread_mutex_unlock(&s->lock);
    if (!done) {
        return;
    }
    grpc_call_unref(s->call);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Posts the next RECV_MESSAGE; called with s->lock held. */
static void post_recv(hf_stream *s)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &s->recv_buf;
    if (grpc_call_start_batch(s->call, &op, 1, &s->recv_tag, NULL) == GRPC_CALL_OK) {
        s->ops++;
    }
}

static void start_stream(struct slot *sl)
{
    hf_stream *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->call = sl->call;
    s->method = sl->method;
    s->recv_tag = (struct tag){TAG_RECV, s};
    s->send_tag = (struct tag){TAG_SEND, s};
    s->close_tag = (struct tag){TAG_CLOSE, s};
    s->status_tag = (struct tag){TAG_STATUS, s};
    s->wake_tag = (struct tag){TAG_WAKE, s};
    char *peer = grpc_call_get_peer(s->call);
    char shown[96];
    hf__conncap_peer(sl->w->srv->conncap, peer ? peer : "?", shown, sizeof(shown));
    s->user = s->method->handler->open(s->method->ctx, s, shown);
    gpr_free(peer);

    grpc_op ops[2] = {{.op = GRPC_OP_SEND_INITIAL_METADATA}, {.op = GRPC_OP_RECV_CLOSE_ON_SERVER}};
    ops[1].data.recv_close_on_server.cancelled = &s->close_cancelled;
    pthread_mutex_lock(&s->lock);
    if (grpc_call_start_batch(s->call, ops, 2, &s->close_tag, NULL) == GRPC_CALL_OK) {
        s->ops++;
        post_recv(s);
    } else {
        hf_error("grpc", "cannot start a stream's first batch");
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_new_call(struct slot *sl, bool ok)
{
    if (!ok) {
        clear_slot(sl); /* the server is shutting down */
        return;
    }
    if (sl->method == NULL) {
        char path[256];
        size_t n = GRPC_SLICE_LENGTH(sl->details.method);
        if (n >= sizeof(path)) {
            n = sizeof(path) - 1;
        }
        memcpy(path, GRPC_SLICE_START_PTR(sl->details.method), n);
        path[n] = '\0';
        char msg[320];
        snprintf(msg, sizeof(msg), "holdfast does not serve %s", path);
        grpc_call_cancel_with_status(sl->call, GRPC_STATUS_UNIMPLEMENTED, msg, NULL);
        grpc_call_unref(sl->call);
        hf_debug("grpc", "unknown method %s: UNIMPLEMENTED", path);
    } else {
        start_stream(sl);
    }
    clear_slot(sl);
    post_slot(sl);
}

static void on_recv(hf_stream *s, bool ok)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    grpc_byte_buffer *buf = s->recv_buf;
    s->recv_buf = NULL;
    bool gone = s->told_closed;
    pthread_mutex_unlock(&s->lock);

    if (ok && buf != NULL && !gone) {
        grpc_byte_buffer_reader reader;
        if (grpc_byte_buffer_reader_init(&reader, buf)) {
            grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
            grpc_byte_buffer_reader_destroy(&reader);
            grpc_byte_buffer_destroy(buf);
            buf = NULL;
            s->method->handler->message(s->user, GRPC_SLICE_START_PTR(slice),
                                        GRPC_SLICE_LENGTH(slice));
            grpc_slice_unref(slice);
        }
        pthread_mutex_lock(&s->lock);
        if (!s->ended && !s->finished) {
            post_recv(s);
        }
        pthread_mutex_unlock(&s->lock);
    } else if (ok && buf == NULL && !gone && !grpc_call_failed_before_recv_message(s->call)) {
        /* The client half-closed: it will send nothing more. End the stream cleanly. */
        pthread_mutex_lock(&s->lock);
        if (!s->finished && !s->ended) {
            s->finished = true;
            grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
            op.data.send_status_from_server.status = GRPC_STATUS_OK;
            if (grpc_call_start_batch(s->call, &op, 1, &s->status_tag, NULL) == GRPC_CALL_OK) {
                s->ops++;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (buf != NULL) {
        grpc_byte_buffer_destroy(buf);
    }
    maybe_free(s);
}

static void on_send(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    grpc_byte_buffer_destroy(s->send_buf);
    s->send_buf = NULL;
    s->send_busy = false;
    bool gone = s->told_closed;
    pthread_mutex_unlock(&s->lock);
    if (!gone) {
        s->method->handler->sent(s->user);
    }
    maybe_free(s);
}

static void on_close(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    s->ended = true;
    pthread_mutex_unlock(&s->lock);
    s->method->handler->closed(s->user);
    pthread_mutex_lock(&s->lock);
    s->told_closed = true;
    s->user = NULL;
    pthread_mutex_unlock(&s->lock);
    maybe_free(s);
}

static void on_wake(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    s->wake_busy = false;
    bool gone = s->told_closed;
    pthread_mutex_unlock(&s->lock);
    if (!gone) {
        s->method->handler->wake(s->user);
    }
    maybe_free(s);
}

void hf_stream_wake(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->wake_busy && !s->ended && !s->told_closed) {
        /* An empty batch completes at once on the call's own queue. */
        if (grpc_call_start_batch(s->call, NULL, 0, &s->wake_tag, NULL) == GRPC_CALL_OK) {
            s->ops++;
            s->wake_busy = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_status(hf_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->ops--;
    pthread_mutex_unlock(&s->lock);
    maybe_free(s);
}

/* ---- sending ---- */

static void rbuf_release(void *p)
{
    hf_rbuf_unref(p);
}

int hf_stream_send(hf_stream *s, hf_rbuf *const *parts, size_t n)
{
    pthread_mutex_lock(&s->lock);
    int rc = HF_OK;
    if (s->ended || s->finished || s->told_closed) {
        rc = HF_ECLOSED;
    } else if (s->send_busy) {
        rc = HF_EBUSY;
    }
    if (rc != HF_OK) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    grpc_slice stack[8];
    grpc_slice *slices = n <= 8 ? stack : xmalloc(n * sizeof(*slices));
    for (size_t i = 0; i < n; i++) {
        hf_rbuf *b = hf_rbuf_ref(parts[i]);
        slices[i] = grpc_slice_new_with_user_data(b->data, b->len, rbuf_release, b);
    }
    s->send_buf = grpc_raw_byte_buffer_create(slices, n);
    for (size_t i = 0; i < n; i++) {
        grpc_slice_unref(slices[i]);
    }
    if (slices != stack) {
        free(slices);
    }
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = s->send_buf;
    grpc_call_error err = grpc_call_start_batch(s->call, &op, 1, &s->send_tag, NULL);
    if (err == GRPC_CALL_OK) {
        s->ops++;
        s->send_busy = true;
    } else {
        grpc_byte_buffer_destroy(s->send_buf);
        s->send_buf = NULL;
        rc = HF_ECLOSED;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void hf_stream_finish(hf_stream *s, enum hf_grpc_status status, const char *message)
{
    pthread_mutex_lock(&s->lock);
    if (!s->finished && !s->ended && !s->told_closed) {
        s->finished = true;
        grpc_call_cancel_with_status(s->call, (grpc_status_code)status, message, NULL);
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- worker threads ---- */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        struct tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW_CALL:
            on_new_call(t->owner, ev.success != 0);
            break;
        case TAG_RECV:
            on_recv(t->owner, ev.success != 0);
            break;
        case TAG_SEND:
            on_send(t->owner);
            break;
        case TAG_CLOSE:
            on_close(t->owner);
            break;
        case TAG_STATUS:
            on_status(t->owner);
            break;
        case TAG_WAKE:
            on_wake(t->owner);
            break;
        case TAG_SHUTDOWN: {
            struct hf_grpc_server *srv = t->owner;
            pthread_mutex_lock(&srv->shutdown_lock);
            srv->shutdown_done = true;
            pthread_cond_signal(&srv->shutdown_cond);
            pthread_mutex_unlock(&srv->shutdown_lock);
            break;
        }
        }
    }
    return NULL;
}

/* ---- start / stop ---- */

/*
 * Debian's abseil is built with mutex deadlock detection on: every lock gRPC takes then updates
 * a process-wide lock-order graph, which cost about a fifth of holdfast's CPU when pushing to
 * thousands of streams (measured with perf; see docs/performance.md). It is a debugging aid,
 * off in release builds of abseil; turn it off. This is
 * absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore), bound by its mangled
 * name since C cannot name a C++ function; weak, so an abseil without it is simply left alone.
 */
extern void hf_absl_set_deadlock_mode(int mode) __asm__(
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE") __attribute__((weak));

static void tune_abseil(void)
{
    if (hf_absl_set_deadlock_mode != NULL) {
        hf_absl_set_deadlock_mode(0); /* OnDeadlockCycle::kIgnore */
    }
}

static grpc_server *create_server(const hf_grpc_config *cfg)
{
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)cfg->max_message}},
        /* Envoy and gRPC clients ping idle ADS streams: accept pings every 5 s or more. */
        {GRPC_ARG_INTEGER,
         GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         {.integer = 5000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PING_STRIKES, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, {.integer = 0}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
        /* Our own pings find dead peers behind silent networks. */
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = 30000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 10000}},
        /* xDS messages are small: bandwidth-delay probing only adds a PING per exchange. */
        {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
    };
    grpc_channel_args chargs = {sizeof(args) / sizeof(args[0]), args};
    return grpc_server_create(&chargs, NULL);
}

/* Adds the main port (TLS or not) and the optional plaintext local one. Returns the main bound
 * port, 0 when it failed, -1 when the local one failed. */
/* Binds the xDS address: mutual TLS through gRPC's own listener; plaintext through our capped
 * listener (grpc_conncap.c) when a connection cap is set (gRPC 1.51 hands a descriptor over only
 * with insecure credentials, so the cap does not apply to TLS). Then the optional plaintext
 * loopback listener. Returns the bound port, 0 when the main address failed, -1 when the local
 * one did. */
static int add_ports(struct hf_grpc_server *srv, const hf_grpc_config *cfg, hf_detail *d)
{
    grpc_server_credentials *creds;
    int bound = 0;
    if (cfg->tls != NULL) {
        srv->tls = hf__grpc_tls_new(cfg->tls, &creds);
        hf__grpc_tls_watch_log(cfg->on_tls_failure, cfg->tls_failure_arg);
        bound = grpc_server_add_http2_port(srv->server, cfg->address, creds);
        grpc_server_credentials_release(creds);
    } else if (cfg->max_connections > 0) {
        srv->conncap = hf__conncap_listen(cfg->address, cfg->max_connections, &bound, d);
    } else {
        creds = grpc_insecure_server_credentials_create();
        bound = grpc_server_add_http2_port(srv->server, cfg->address, creds);
        grpc_server_credentials_release(creds);
    }
    if (bound > 0 && cfg->local_address != NULL) {
        creds = grpc_insecure_server_credentials_create();
        srv->local_port = grpc_server_add_http2_port(srv->server, cfg->local_address, creds);
        grpc_server_credentials_release(creds);
        bound = srv->local_port > 0 ? bound : -1;
    }
    return bound;
}

int hf_grpc_local_port(const hf_grpc_server *srv)
{
    return srv->local_port;
}

int hf_grpc_tls_update(hf_grpc_server *srv, const hf_grpc_tls *tls)
{
    if (srv->tls == NULL) {
        return HF_EINVAL;
    }
    hf__grpc_tls_stage(srv->tls, tls);
    return HF_OK;
}

int hf_stream_identity(hf_stream *s, char *buf, size_t len)
{
    return hf__grpc_call_identity(s->call, buf, len);
}

int hf_grpc_start(const hf_grpc_config *cfg, hf_grpc_server **out, int *port, hf_detail *d)
{
    tune_abseil();
    grpc_init();
    struct hf_grpc_server *srv = xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->nworkers = cfg->threads > 0 ? cfg->threads : 1;
    pthread_mutex_init(&srv->shutdown_lock, NULL);
    pthread_cond_init(&srv->shutdown_cond, NULL);
    srv->shutdown_tag = (struct tag){TAG_SHUTDOWN, srv};
    srv->server = create_server(cfg);
    srv->registered = xcalloc(cfg->n_methods ? cfg->n_methods : 1, sizeof(void *));
    for (size_t i = 0; i < cfg->n_methods; i++) {
        srv->registered[i] = grpc_server_register_method(srv->server, cfg->methods[i].path, NULL,
                                                         GRPC_SRM_PAYLOAD_NONE, 0);
    }
    srv->workers = xcalloc((size_t)srv->nworkers, sizeof(struct worker));
    for (int i = 0; i < srv->nworkers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->workers[i].cq, NULL);
    }
    int bound = add_ports(srv, cfg, d);
    if (bound <= 0) {
        for (int i = 0; i < srv->nworkers; i++) {
            grpc_completion_queue_shutdown(srv->workers[i].cq);
            grpc_completion_queue_destroy(srv->workers[i].cq);
        }
        grpc_server_destroy(srv->server);
        free(srv->workers);
        free(srv->registered);
        hf__grpc_tls_free(srv->tls);
        free(srv);
        grpc_shutdown_blocking();
        return hf_fail(d, HF_EIO, "xds", "cannot listen on %s (in use?)",
                       bound < 0 ? cfg->local_address : cfg->address);
    }
    grpc_server_start(srv->server);
    if (srv->conncap != NULL) {
        hf__conncap_start(srv->conncap, srv->server);
    }
    for (int i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        w->slots = xcalloc(cfg->n_methods + 1, sizeof(struct slot));
        for (size_t m = 0; m <= cfg->n_methods; m++) {
            struct slot *sl = &w->slots[m];
            sl->tag = (struct tag){TAG_NEW_CALL, sl};
            sl->w = w;
            sl->method = m < cfg->n_methods ? &cfg->methods[m] : NULL;
            sl->registered = m < cfg->n_methods ? srv->registered[m] : NULL;
            post_slot(sl);
        }
        hf_thread_start(&w->thread, worker_main, w, "grpc-worker");
    }
    *port = bound;
    *out = srv;
    return HF_OK;
}

void hf_grpc_stop(hf_grpc_server *srv)
{
    if (srv == NULL) {
        return;
    }
    atomic_store(&srv->stopping, true);
    hf__conncap_stop(srv->conncap);
    grpc_server_shutdown_and_notify(srv->server, srv->workers[0].cq, &srv->shutdown_tag);
    grpc_server_cancel_all_calls(srv->server);
    pthread_mutex_lock(&srv->shutdown_lock);
    while (!srv->shutdown_done) {
        pthread_cond_wait(&srv->shutdown_cond, &srv->shutdown_lock);
    }
    pthread_mutex_unlock(&srv->shutdown_lock);
    for (int i = 0; i < srv->nworkers; i++) {
        grpc_completion_queue_shutdown(srv->workers[i].cq);
    }
    for (int i = 0; i < srv->nworkers; i++) {
        pthread_join(srv->workers[i].thread, NULL);
    }
    grpc_server_destroy(srv->server);
    for (int i = 0; i < srv->nworkers; i++) {
        grpc_completion_queue_destroy(srv->workers[i].cq);
        free(srv->workers[i].slots);
    }
    free(srv->workers);
    free(srv->registered);
    if (srv->tls != NULL) {
        hf__grpc_tls_watch_log(NULL, NULL); /* its argument is about to go */
    }
    hf__grpc_tls_free(srv->tls);
    pthread_mutex_destroy(&srv->shutdown_lock);
    pthread_cond_destroy(&srv->shutdown_cond);
    hf_conncap *conncap = srv->conncap;
    free(srv);
    grpc_shutdown_blocking();
    hf__conncap_free(conncap);
}
