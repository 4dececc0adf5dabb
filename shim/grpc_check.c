/* gRPC health checks; see grpc_check.h. */
#include "grpc_check.h"

#include "endpoint_key.h"
#include "xalloc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CHECK_METHOD "/grpc.health.v1.Health/Check"

struct sh_grpc_channel {
    grpc_channel *ch;
};

/* One call in flight; freed by the completion thread. */
struct call {
    struct call *prev, *next; /* in flight, under g->lock */
    grpc_call *call;
    void *token;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_metadata_array md_initial, md_trailing;
    grpc_status_code status;
    grpc_slice details;
};

struct sh_grpc {
    grpc_completion_queue *cq;
    pthread_t thread;
    int fd;
    pthread_mutex_t lock; /* below */
    pthread_cond_t idle;
    struct call *inflight;
    size_t n_inflight;
    sh_grpc_result *done;
    size_t n_done, cap_done;
};

/* The ServingStatus of a HealthCheckResponse (field 1, a varint); 0 (UNKNOWN) when absent,
 * -1 when the bytes are not that message. */
static int serving_of(const uint8_t *p, size_t n)
{
    int serving = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t tag = p[i++];
        if ((tag & 7) != 0) {
            return -1; /* only varints are expected */
        }
        uint64_t v = 0;
        for (int shift = 0; i < n && shift < 64; shift += 7) {
            uint8_t b = p[i++];
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                break;
            }
        }
        if (tag >> 3 == 1) {
            serving = (int)(v & 0xff);
        }
    }
    return serving;
}

static void finish_call(sh_grpc *g, struct call *c)
{
    /* Unlinked first, under the lock the submitter held while linking it: that also orders the
     * submitter's writes to c before the reads below for ThreadSanitizer, which cannot see the
     * hand-off through gRPC's (uninstrumented) completion queue. n_inflight drops at the end,
     * once gRPC is done with the call (sh_grpc_free waits on it). */
    pthread_mutex_lock(&g->lock);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        g->inflight = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&g->lock);
    sh_grpc_result r = {.token = c->token, .code = (int)c->status, .serving = -1};
    if (c->status == GRPC_STATUS_OK && c->recv != NULL) {
        grpc_byte_buffer_reader rd;
        grpc_byte_buffer_reader_init(&rd, c->recv);
        grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        r.serving = serving_of(GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
        grpc_slice_unref(s);
    } else if (c->status != GRPC_STATUS_OK) {
        size_t n = GRPC_SLICE_LENGTH(c->details);
        n = n < sizeof(r.detail) - 1 ? n : sizeof(r.detail) - 1;
        for (size_t i = 0; i < n; i++) {
            char ch = (char)GRPC_SLICE_START_PTR(c->details)[i];
            r.detail[i] = ch >= ' ' && ch <= '~' ? ch : '?';
        }
    }
    grpc_byte_buffer_destroy(c->send);
    if (c->recv) {
        grpc_byte_buffer_destroy(c->recv);
    }
    grpc_metadata_array_destroy(&c->md_initial);
    grpc_metadata_array_destroy(&c->md_trailing);
    grpc_slice_unref(c->details);
    grpc_call_unref(c->call);
    pthread_mutex_lock(&g->lock);
    g->n_inflight--;
    if (g->n_done == g->cap_done) {
        g->cap_done = g->cap_done ? 2 * g->cap_done : 64;
        g->done = xrealloc(g->done, g->cap_done * sizeof(*g->done));
    }
    g->done[g->n_done++] = r;
    if (g->n_inflight == 0) {
        pthread_cond_broadcast(&g->idle);
    }
    pthread_mutex_unlock(&g->lock);
    free(c);
    uint64_t one = 1;
    ssize_t w = write(g->fd, &one, sizeof(one));
    (void)w;
}

static void *run(void *arg)
{
    sh_grpc *g = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(g->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            return NULL;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            finish_call(g, ev.tag);
        }
    }
}

sh_grpc *sh_grpc_new(void)
{
    sh_grpc *g = xcalloc(1, sizeof(*g));
    g->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (g->fd < 0) {
        free(g);
        return NULL;
    }
    grpc_init();
    g->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->idle, NULL);
    if (pthread_create(&g->thread, NULL, run, g) != 0) {
        grpc_completion_queue_shutdown(g->cq);
        grpc_completion_queue_destroy(g->cq);
        grpc_shutdown();
        close(g->fd);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->idle);
        free(g);
        return NULL;
    }
    return g;
}

void sh_grpc_free(sh_grpc *g)
{
    if (g == NULL) {
        return;
    }
    pthread_mutex_lock(&g->lock);
    for (struct call *c = g->inflight; c; c = c->next) {
        grpc_call_cancel(c->call, NULL);
    }
    while (g->n_inflight > 0) {
        pthread_cond_wait(&g->idle, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    grpc_completion_queue_shutdown(g->cq);
    pthread_join(g->thread, NULL);
    grpc_completion_queue_destroy(g->cq);
    grpc_shutdown();
    close(g->fd);
    free(g->done);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->idle);
    free(g);
}

int sh_grpc_fd(const sh_grpc *g)
{
    return g->fd;
}

sh_grpc_channel *sh_grpc_channel_new(sh_grpc *g, const char *address, uint32_t port)
{
    (void)g;
    char hp[HF_ADDR_PORT_MAX], target[HF_ADDR_PORT_MAX + 8];
    hf_addr_port_format(address, port, hp, sizeof(hp));
    snprintf(target, sizeof(target), "%s:%s", strchr(address, ':') ? "ipv6" : "ipv4", hp);
    /* Reconnect soon after a backend comes back (gRPC's default backoff grows to minutes). */
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, {.integer = 200}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, {.integer = 200}},
        {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, {.integer = 1000}},
        {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, {.integer = 0}},
    };
    grpc_channel_args chargs = {sizeof(args) / sizeof(args[0]), args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    sh_grpc_channel *ch = xcalloc(1, sizeof(*ch));
    ch->ch = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

void sh_grpc_channel_free(sh_grpc_channel *ch)
{
    if (ch != NULL) {
        grpc_channel_destroy(ch->ch);
        free(ch);
    }
}

/* A HealthCheckRequest: field 1 (service), length-delimited. */
static grpc_byte_buffer *request(const char *service)
{
    size_t n = strlen(service);
    n = n > 255 ? 255 : n;
    uint8_t buf[260];
    size_t len = 0;
    if (n > 0) {
        buf[len++] = 0x0a;
        if (n < 128) {
            buf[len++] = (uint8_t)n;
        } else {
            buf[len++] = (uint8_t)(0x80 | (n & 0x7f));
            buf[len++] = (uint8_t)(n >> 7);
        }
        memcpy(buf + len, service, n);
        len += n;
    }
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

int sh_grpc_check(sh_grpc *g, sh_grpc_channel *ch, const char *service, uint32_t timeout_ms,
                  void *token)
{
    struct call *c = xcalloc(1, sizeof(*c));
    c->token = token;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    c->call =
        grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, g->cq,
                                 grpc_slice_from_static_string(CHECK_METHOD), NULL, deadline, NULL);
    c->send = request(service);
    grpc_metadata_array_init(&c->md_initial);
    grpc_metadata_array_init(&c->md_trailing);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->md_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->md_trailing;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    pthread_mutex_lock(&g->lock);
    c->next = g->inflight;
    if (g->inflight) {
        g->inflight->prev = c;
    }
    g->inflight = c;
    g->n_inflight++;
    /* Started under the lock: the completion thread takes it before it reads or frees c. */
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
    pthread_mutex_unlock(&g->lock);
    if (e != GRPC_CALL_OK) {
        c->status = GRPC_STATUS_INTERNAL;
        finish_call(g, c); /* reported as a failed check; no completion will come */
    }
    return 0;
}

size_t sh_grpc_take(sh_grpc *g, sh_grpc_result *out, size_t max)
{
    uint64_t v;
    ssize_t r = read(g->fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&g->lock);
    size_t n = g->n_done < max ? g->n_done : max;
    if (n > 0) {
        memcpy(out, g->done, n * sizeof(*out));
        memmove(g->done, g->done + n, (g->n_done - n) * sizeof(*out));
        g->n_done -= n;
    }
    bool more = g->n_done > 0;
    pthread_mutex_unlock(&g->lock);
    if (more) {
        uint64_t one = 1;
        ssize_t w = write(g->fd, &one, sizeof(one));
        (void)w;
    }
    return n;
}

const char *sh_grpc_code_name(int code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return code >= 0 && code < (int)(sizeof(names) / sizeof(names[0])) ? names[code] : "?";
}

const char *sh_grpc_serving_name(int serving)
{
    switch (serving) {
    case 0:
        return "UNKNOWN";
    case 1:
        return "SERVING";
    case 2:
        return "NOT_SERVING";
    case 3:
        return "SERVICE_UNKNOWN";
    default:
        return "not a HealthCheckResponse";
    }
}
