/*
 * The epoll health-check loop; see checker.h.
 *
 * Every target has exactly one timer at a time: its next check, or the deadline of the check in
 * progress, kept in a min-heap of (when, target) entries (a timer set again leaves its old entry
 * behind, stale, dropped when it surfaces). A check is a small state machine on one non-blocking
 * socket: CONNECTING -> WRITING -> READING -> done (the socket kept for the next check when the
 * response was delimited and reuse is on). A kept socket that fails before any response byte
 * is replaced once by a fresh connection, within the same check (servers close idle
 * connections; that is not the endpoint failing).
 *
 * HTTP answers of any size: the status line and headers are read (at most RESPONSE_MAX bytes);
 * a body that fits is read so the connection can be kept, a longer or unframed one is not read
 * at all: the check is judged on the status and the connection closed. Connections not kept are
 * closed with an RST (SO_LINGER 0), as HAProxy does, so the backend keeps no TIME_WAIT.
 *
 * Sockets are registered once, edge-triggered for both directions, so a check costs no
 * epoll_ctl beyond the registration of a new connection; a kept socket gets its request at
 * once. A response that arrives whole is parsed in a buffer shared by the loop (no allocation);
 * only a partial one is copied to the target.
 *
 * The loop's own lateness is not the backend's: when a check's deadline fires, the socket is
 * polled first (an answer that arrived while the loop was busy counts), and a deadline that
 * fired late (the loop starved of CPU) is extended once instead of judged.
 */
#include "checker.h"

#include "grpc_check.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX 8192
#define SEND_BATCH 128 /* connects at most before their requests go (see open_socket) */

enum phase { IDLE, CONNECTING, WRITING, READING };

/* The fields a check touches come first, the spec's rarely read text last: at 10,000 targets
 * most of a check's cost outside the kernel is cache misses on its target. */
typedef struct target {
    enum phase phase;
    int fd;          /* the socket (kept between checks when reused), -1 if none */
    int64_t when;    /* the timer: next check start, or the running check's deadline (ms) */
    int64_t started; /* when the running check started (ms) */
    uint32_t idx;    /* its index in the checker's target array (and timer generations) */
    enum sh_health health;
    uint32_t ok_run, fail_run;
    int status;     /* HTTP status once the headers are read; 0 before */
    bool reused;    /* this check runs on a kept socket */
    bool extended;  /* the running check's deadline was extended once (late loop) */
    bool ev_out;    /* registered for EPOLLOUT too (a connect or a send still to finish) */
    bool unread;    /* the answer was peeked, not read: closing sends an RST by itself */
    bool live;      /* still in the current target set */
    bool inflight;  /* gRPC: a Check is in flight (its result names this target) */
    char *req;      /* HTTP: the request, made on first use */
    size_t req_len; /* its length */
    char *buf;      /* response bytes while reading */
    size_t len;
    size_t sent;
    char reason[SH_REASON_MAX];
    struct sockaddr_storage addr; /* the endpoint's socket address */
    socklen_t addr_len;           /* 0: the address does not parse */
    sh_grpc_channel *gch;         /* gRPC: the endpoint's channel, reused */
    struct target *next_orphan;
    sh_target_spec spec;
} target;

struct sh_checker {
    char node_id[128];
    sh_report_fn fn;
    void *arg;
    int ep;
    int wake_fd;
    target **t; /* targets, owned */
    size_t n;
    struct timer_entry *heap; /* a min-heap of timers by when; see set_timer */
    size_t heap_n, heap_cap;
    uint32_t *gen;  /* per target (by idx): its timer's generation (older entries are stale) */
    target **sends; /* checks connected at this wake-up, their request not sent yet */
    size_t n_sends, sends_cap;
    uint32_t report_ms;
    int64_t next_report;
    sh_stats stats;
    unsigned rng;
    pthread_mutex_t lock; /* pending, stats */
    sh_target_spec *pending;
    size_t n_pending;
    bool has_pending;
    uint32_t pending_report_ms;
    char scratch[RESPONSE_MAX + 1]; /* answers read whole are parsed here */
    sh_grpc *grpc;                  /* started with the first gRPC target */
    target *orphans;                /* removed targets whose gRPC call is still in flight */
};

static char grpc_marker; /* the epoll tag of the gRPC results descriptor */

static void on_http_write(sh_checker *c, target *t, uint32_t events);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the timer heap ---- */

/* A timer as set: its key inline, so that sifting touches no target. Setting a target's timer
 * again leaves its older entry in place, stale (its generation no longer matches), to be dropped
 * when it reaches the top: no entry is ever looked for, moved up or removed from the middle. */
typedef struct timer_entry {
    int64_t when;
    uint32_t idx; /* the target's */
    uint32_t gen;
} timer_entry;

/* Moves e down from position i to its place in heap[0..n). */
static void heap_sift_down(timer_entry *heap, size_t n, size_t i, timer_entry e)
{
    for (;;) {
        size_t m = 2 * i + 1;
        if (m >= n) {
            break;
        }
        if (m + 1 < n && heap[m + 1].when < heap[m].when) {
            m++;
        }
        if (heap[m].when >= e.when) {
            break;
        }
        heap[i] = heap[m];
        i = m;
    }
    heap[i] = e;
}

static void heap_push(sh_checker *c, timer_entry e)
{
    if (c->heap_n == c->heap_cap) {
        c->heap_cap = c->heap_cap ? 2 * c->heap_cap : 64;
        c->heap = xrealloc(c->heap, c->heap_cap * sizeof(*c->heap));
    }
    size_t i = c->heap_n++;
    while (i > 0 && c->heap[(i - 1) / 2].when > e.when) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = e;
}

static void heap_pop(sh_checker *c)
{
    c->heap_n--;
    if (c->heap_n > 0) {
        heap_sift_down(c->heap, c->heap_n, 0, c->heap[c->heap_n]);
    }
}

/* The target whose timer is due first (stale entries on top dropped), or NULL. Staleness is
 * told from the compact generation array: a stale entry costs no miss on its target. */
static target *heap_top(sh_checker *c)
{
    while (c->heap_n > 0) {
        if (c->heap[0].gen == c->gen[c->heap[0].idx]) {
            return c->t[c->heap[0].idx];
        }
        heap_pop(c);
    }
    return NULL;
}

/* Sets t's one timer (any earlier one of t's is void). */
static void set_timer(sh_checker *c, target *t, int64_t when)
{
    t->when = when;
    uint32_t gen = ++c->gen[t->idx];
    heap_push(c, (timer_entry){.when = when, .idx = t->idx, .gen = gen});
}

/* One entry per target, after a change of the target set (indexes change, entries go). */
static void heap_rebuild(sh_checker *c)
{
    if (c->heap_cap < c->n + 1) {
        c->heap_cap = c->n + 1;
        c->heap = xrealloc(c->heap, c->heap_cap * sizeof(*c->heap));
    }
    free(c->gen);
    c->gen = xcalloc(c->n + 1, sizeof(*c->gen));
    c->heap_n = c->n;
    for (size_t i = 0; i < c->n; i++) {
        target *t = c->t[i];
        t->idx = (uint32_t)i;
        c->heap[i] = (timer_entry){.when = t->when, .idx = t->idx, .gen = 0};
    }
    for (size_t i = c->n / 2; i-- > 0;) {
        heap_sift_down(c->heap, c->heap_n, i, c->heap[i]);
    }
}

/* ---- results ---- */

static void result_of(const target *t, sh_result *r)
{
    memset(r, 0, sizeof(*r));
    r->key = t->spec.key;
    memcpy(r->reason, t->reason, sizeof(r->reason));
    memcpy(r->zone, t->spec.zone, sizeof(r->zone));
    memcpy(r->fleet, t->spec.fleet, sizeof(r->fleet));
    r->health = t->health;
}

/* Closes the check's socket with an RST: no TIME_WAIT left on the backend (HAProxy does the
 * same). A health check has nothing left to deliver when it closes. */
static void close_fd(target *t)
{
    if (t->fd >= 0) {
        if (!t->unread) { /* closing with unread bytes resets by itself (RFC 2525 2.17) */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(t->fd); /* leaves the epoll set with it */
        t->fd = -1;
        t->unread = false;
    }
}

static uint32_t jittered(sh_checker *c, const target *t)
{
    uint32_t iv = t->spec.interval_ms;
    uint32_t span = iv * t->spec.jitter_pct / 100;
    if (span == 0) {
        return iv;
    }
    return iv - span / 2 + (uint32_t)(rand_r(&c->rng) % (span + 1));
}

/* A check ended, for the reason given: thresholds, transitions, the next check. */
static void finish(sh_checker *c, target *t, bool ok, bool keep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
    va_end(ap);
    t->extended = false;
    t->status = 0;
    free(t->buf);
    t->buf = NULL;
    t->len = t->sent = 0;
    t->phase = IDLE;
    if (!keep || !t->spec.reuse_connection) {
        close_fd(t);
    }
    c->stats.checks++;
    c->stats.failures += !ok;
    enum sh_health before = t->health;
    if (ok) {
        t->fail_run = 0;
        if (++t->ok_run >= t->spec.healthy_threshold) {
            t->health = SH_HEALTHY;
        }
    } else {
        t->ok_run = 0;
        if (++t->fail_run >= t->spec.unhealthy_threshold) {
            t->health = SH_UNHEALTHY;
        }
    }
    if (t->health != before) {
        sh_result r;
        result_of(t, &r);
        c->fn(c->arg, &r, 1, false); /* transitions are reported at once */
    }
    set_timer(c, t, now_ms() + jittered(c, t));
}

/* The endpoint's socket address, parsed once (addr_len 0 when it does not parse). */
static void parse_address(target *t)
{
    memset(&t->addr, 0, sizeof(t->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&t->addr;
    t->addr_len = 0;
    if (inet_pton(AF_INET, t->spec.key.address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)t->spec.key.port);
        t->addr_len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, t->spec.key.address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)t->spec.key.port);
        t->addr_len = sizeof(*a6);
    }
}

static void watch(sh_checker *c, target *t, int op, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (out ? EPOLLOUT : 0),
                             .data.ptr = t};
    epoll_ctl(c->ep, op, t->fd, &ev);
    t->ev_out = out;
}

/* Sends what is left of the request: the bytes sent, or -1 with errno. */
static ssize_t send_request(target *t)
{
    return send(t->fd, t->req + t->sent, t->req_len - t->sent, MSG_NOSIGNAL);
}

/* Sends a fresh connection's request if it can go at once (HTTP; see open_socket) and registers
 * the socket: 0, or the errno that failed it (the socket closed). */
static int first_send(sh_checker *c, target *t)
{
    if (t->spec.protocol == SH_HTTP) {
        ssize_t w = send_request(t);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            int err = errno == EPIPE ? ECONNREFUSED : errno; /* refused at once on loopback */
            close(t->fd);
            t->fd = -1;
            return err;
        }
        if (w > 0) {
            t->sent = (size_t)w;
            t->phase = t->sent == t->req_len ? READING : WRITING;
        }
    }
    watch(c, t, EPOLL_CTL_ADD, t->phase != READING);
    return 0;
}

/* Starts a non-blocking connect and sets the phase: 0, or the errno that failed it.
 *
 * HTTP sends its request at once: on loopback (and whenever the handshake is done by the time
 * connect returns) that saves waiting for writability, and with the handshake's last ACK
 * delayed (TCP_QUICKACK off, as HAProxy does) the request carries it: one packet and one wake-up
 * of the backend fewer per check. Then only readability is watched. With defer, the request
 * waits for flush_sends, after the connects of every check the loop starts at this wake-up:
 * the requests then reach the backends together rather than spread between connects. */
static int open_socket(sh_checker *c, target *t, bool defer)
{
    if (t->addr_len == 0) {
        return EINVAL;
    }
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    bool http = t->spec.protocol == SH_HTTP;
    if (http && t->spec.reuse_connection) {
        int one = 1; /* later requests on a kept connection must not wait for an ACK */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (http) {
        int zero = 0;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero));
    }
    c->stats.connects++;
    if (connect(fd, (struct sockaddr *)&t->addr, t->addr_len) != 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return err;
    }
    t->fd = fd;
    t->phase = CONNECTING;
    if (defer && http) {
        if (c->n_sends == c->sends_cap) {
            c->sends_cap = c->sends_cap ? 2 * c->sends_cap : 64;
            c->sends = xrealloc(c->sends, c->sends_cap * sizeof(*c->sends));
        }
        c->sends[c->n_sends++] = t;
        return 0;
    }
    return first_send(c, t);
}

/* The pending error of a socket whose connect failed (ECONNREFUSED when none is left). */
static int socket_error(int fd)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    return err ? err : ECONNREFUSED;
}

static const char *connect_error(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connect refused";
    case ECONNRESET:
        return "connection reset";
    case ETIMEDOUT:
        return "connect timed out";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable";
    default:
        return strerror(err);
    }
}

static void finish(sh_checker *c, target *t, bool ok, bool keep, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static size_t request_text(sh_checker *c, const target *t, char *buf, size_t len);

/* Starts a gRPC Check on the endpoint's channel (made on first use). */
static void start_grpc(sh_checker *c, target *t)
{
    if (c->grpc == NULL) {
        c->grpc = sh_grpc_new();
        if (c->grpc != NULL) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &grpc_marker};
            epoll_ctl(c->ep, EPOLL_CTL_ADD, sh_grpc_fd(c->grpc), &ev);
        }
    }
    if (c->grpc == NULL) {
        finish(c, t, false, true, "gRPC client unavailable");
        return;
    }
    if (t->gch == NULL) {
        t->gch = sh_grpc_channel_new(c->grpc, t->spec.key.address, t->spec.key.port);
    }
    t->phase = READING;
    t->inflight = true;
    sh_grpc_check(c->grpc, t->gch, t->spec.service_name, t->spec.timeout_ms, t);
}

static void start_check(sh_checker *c, target *t)
{
    t->buf = NULL;
    t->len = t->sent = 0;
    t->started = now_ms();
    set_timer(c, t, t->started + t->spec.timeout_ms);
    if (t->spec.protocol == SH_GRPC) {
        start_grpc(c, t);
        return;
    }
    if (t->spec.protocol == SH_HTTP && t->req == NULL) {
        char req[768];
        t->req_len = request_text(c, t, req, sizeof(req));
        t->req = xmalloc(t->req_len + 1);
        memcpy(t->req, req, t->req_len);
        t->req[t->req_len] = '\0';
    }
    if (t->fd >= 0 && t->spec.protocol == SH_HTTP && t->spec.reuse_connection) {
        t->reused = true;
        t->phase = WRITING;
        on_http_write(c, t, 0); /* a kept socket is writable: no need to wait for epoll */
        return;
    }
    close_fd(t);
    t->reused = false;
    int err = open_socket(c, t, true);
    if (err != 0) {
        finish(c, t, false, false, "%s", connect_error(err));
    }
}

/* ---- HTTP ---- */

static size_t request_text(sh_checker *c, const target *t, char *buf, size_t len)
{
    char host[HF_ADDR_PORT_MAX];
    hf_addr_port_format(t->spec.key.address, t->spec.key.port, host, sizeof(host));
    int n = snprintf(buf, len,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: holdfast-shim/%s\r\n"
                     "Connection: %s\r\n\r\n",
                     t->spec.path[0] ? t->spec.path : "/", host, c->node_id,
                     t->spec.reuse_connection ? "keep-alive" : "close");
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/* What the bytes read so far say. */
enum answer {
    ANSWER_MORE = 0,  /* wait for more bytes */
    ANSWER_DONE,      /* complete: judge on status; keep says the socket is reusable */
    ANSWER_HEADERS,   /* headers complete, body not (yet): judge on status if it never comes */
    ANSWER_LONG,      /* headers complete, body longer than we read: judge on status, close */
    ANSWER_NOT_HTTP,  /* not an HTTP/1.x status line */
    ANSWER_HEAD_LONG, /* no end of headers within RESPONSE_MAX bytes */
};

/* The framing of the headers in b[0..head): sets *clen (-1 none), *chunked, *keep. */
static void framing(const char *b, const char *end, long *clen, bool *chunked, bool *keep)
{
    bool close_hdr = false;
    *clen = -1;
    *chunked = false;
    for (const char *p = strstr(b, "\r\n"); p && p + 2 < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        const char *eol = strstr(h, "\r\n");
        if (strncasecmp(h, "content-length:", 15) == 0) {
            char *stop;
            long v = strtol(h + 15, &stop, 10);
            *clen = v >= 0 && stop <= eol ? v : -1;
        } else if (strncasecmp(h, "transfer-encoding:", 18) == 0) {
            const char *ch = strstr(h, "chunked");
            *chunked = ch != NULL && ch < eol;
        } else if (strncasecmp(h, "connection:", 11) == 0) {
            const char *v = h + 11;
            while (*v == ' ') {
                v++;
            }
            close_hdr = eol && (size_t)(eol - v) >= 5 && strncasecmp(v, "close", 5) == 0;
        }
    }
    *keep = !close_hdr && b[7] != '0'; /* HTTP/1.0 closes unless told otherwise: no reuse */
}

/* Reads the response in b[0..len) (NUL-terminated). *status is set once the headers are in. */
static enum answer parse_response(const char *b, size_t len, int *status, bool *keep)
{
    size_t cmp = len < 7 ? len : 7;
    if (strncmp(b, "HTTP/1.", cmp) != 0) {
        return ANSWER_NOT_HTTP;
    }
    const char *end = strstr(b, "\r\n\r\n");
    if (end == NULL) {
        return len >= RESPONSE_MAX ? ANSWER_HEAD_LONG : ANSWER_MORE;
    }
    end += 4;
    if (len < 12 || b[8] != ' ' || b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' ||
        b[11] < '0' || b[11] > '9') {
        return ANSWER_NOT_HTTP;
    }
    *status = atoi(b + 9);
    size_t head = (size_t)(end - b);
    long clen;
    bool chunked;
    framing(b, end, &clen, &chunked, keep);
    if (*status == 204 || *status == 304 || *status < 200) {
        return ANSWER_DONE;
    }
    if (chunked) {
        if (len >= head + 5 && memcmp(b + len - 5, "0\r\n\r\n", 5) == 0) {
            return ANSWER_DONE;
        }
        return len >= RESPONSE_MAX ? ANSWER_LONG : ANSWER_HEADERS;
    }
    if (clen >= 0) {
        if (head + (size_t)clen > RESPONSE_MAX) {
            return ANSWER_LONG;
        }
        return len >= head + (size_t)clen ? ANSWER_DONE : ANSWER_HEADERS;
    }
    *keep = false; /* delimited by the end of the connection: do not wait for it */
    return ANSWER_LONG;
}

/* A kept socket failed before any response byte: reconnect once, same check. */
static bool retry_fresh(sh_checker *c, target *t)
{
    if (!t->reused || t->len > 0) {
        return false;
    }
    close_fd(t);
    t->reused = false;
    t->sent = 0;
    return open_socket(c, t, false) == 0;
}

static int64_t took(const target *t)
{
    return now_ms() - t->started;
}

/* Judges on the status read (the body, if any, is not waited for); closes the connection. */
static void judge_status(sh_checker *c, target *t, const char *note)
{
    bool ok = t->status >= 200 && t->status < 400;
    finish(c, t, ok, false, "HTTP %d in %lld ms%s", t->status, (long long)took(t), note);
}

/* Keeps the bytes of a partial answer read into the shared buffer. */
static void keep_partial(sh_checker *c, target *t)
{
    if (t->buf == NULL && t->len > 0) {
        t->buf = xmalloc(RESPONSE_MAX + 1);
        memcpy(t->buf, c->scratch, t->len);
    }
}

/* Whether the answer so far still needs more bytes to be judged. */
static bool needs_more(enum answer a, bool eof)
{
    return !eof && (a == ANSWER_MORE || a == ANSWER_HEADERS);
}

/* Reads until the answer is judged or the socket has nothing more (edge-triggered).
 *
 * A connection that will not be kept has its first bytes peeked rather than read: an answer
 * judged on them is left in the socket, and closing a socket with unread bytes resets it by
 * itself (no SO_LINGER call per check). Peeked bytes that are not enough are read for real. */
static void on_http_read(sh_checker *c, target *t)
{
    for (;;) {
        char *buf = t->buf ? t->buf : c->scratch;
        bool peek = !t->spec.reuse_connection && t->len == 0;
        ssize_t r = recv(t->fd, buf + t->len, RESPONSE_MAX - t->len, peek ? MSG_PEEK : 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            keep_partial(c, t);
            return;
        }
        bool eof = r <= 0;
        if (eof && t->len == 0 && retry_fresh(c, t)) {
            return;
        }
        if (r > 0) {
            t->len += (size_t)r;
        }
        buf[t->len] = '\0';
        bool keep = false;
        enum answer a = parse_response(buf, t->len, &t->status, &keep);
        if (peek && r > 0) {
            if (needs_more(a, eof)) {
                ssize_t taken = recv(t->fd, buf, (size_t)r, 0); /* what was peeked is there */
                if (taken != r) {
                    finish(c, t, false, false, "connection reset while reading");
                    return;
                }
            } else {
                t->unread = true;
            }
        }
        switch (a) {
        case ANSWER_MORE:
            if (eof) {
                finish(c, t, false, false, "%s",
                       t->len ? "connection closed mid-answer"
                              : "connection closed before answering");
                return;
            }
            continue;
        case ANSWER_NOT_HTTP:
            finish(c, t, false, false, "protocol error: not an HTTP response");
            return;
        case ANSWER_HEAD_LONG:
            finish(c, t, false, false, "protocol error: headers over %d bytes", RESPONSE_MAX);
            return;
        case ANSWER_HEADERS:
            if (eof) {
                judge_status(c, t, ", body cut short");
                return;
            }
            continue;
        case ANSWER_LONG:
            judge_status(c, t, "");
            return;
        case ANSWER_DONE: {
            bool ok = t->status >= 200 && t->status < 400;
            finish(c, t, ok, keep && !eof, "HTTP %d in %lld ms", t->status, (long long)took(t));
            return;
        }
        }
    }
}

static void on_http_write(sh_checker *c, target *t, uint32_t events)
{
    if (t->phase == CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP)) {
            finish(c, t, false, false, "%s", connect_error(socket_error(t->fd)));
            return;
        }
        t->phase = WRITING; /* writable without an error: connected */
    }
    ssize_t w = send_request(t);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!t->ev_out) {
            watch(c, t, EPOLL_CTL_MOD, true); /* a kept socket that is full: wait for room */
        }
        return;
    }
    if (w <= 0) {
        if (!retry_fresh(c, t)) {
            finish(c, t, false, false, "connection reset while sending");
        }
        return;
    }
    t->sent += (size_t)w;
    if (t->sent == t->req_len) {
        t->phase = READING;
        if (t->reused) {
            /* edge-triggered: an end of stream that came while the socket was idle gives no new
             * edge; a fresh connection has had nothing to read yet */
            on_http_read(c, t);
        }
    }
}

static void on_http_event(sh_checker *c, target *t, uint32_t events)
{
    if (t->phase == CONNECTING || t->phase == WRITING) {
        on_http_write(c, t, events);
    } else if (t->phase == READING) {
        on_http_read(c, t);
    }
}

static void on_tcp_event(sh_checker *c, target *t, uint32_t events)
{
    if (!(events & (EPOLLERR | EPOLLHUP))) {
        finish(c, t, true, false, "TCP connect in %lld ms", (long long)took(t));
    } else {
        finish(c, t, false, false, "%s", connect_error(socket_error(t->fd)));
    }
}

static void on_event(sh_checker *c, target *t, uint32_t events)
{
    if (t->spec.protocol == SH_TCP) {
        on_tcp_event(c, t, events);
    } else {
        on_http_event(c, t, events);
    }
}

static const char *phase_name(enum phase p)
{
    return p == CONNECTING ? "connecting" : p == WRITING ? "sending" : "waiting for the answer";
}

/* A check's deadline: what the socket has is taken first; a deadline the loop reached late
 * (starved of CPU) is extended once; otherwise the check timed out. */
static void on_deadline(sh_checker *c, target *t, int64_t now)
{
    int64_t lag = now - t->when;
    if (t->spec.protocol == SH_GRPC) {
        set_timer(c, t, now + t->spec.timeout_ms); /* the call has its own deadline: wait */
        return;
    }
    if (t->fd >= 0) {
        struct pollfd p = {.fd = t->fd, .events = t->phase == READING ? POLLIN : POLLOUT};
        if (poll(&p, 1, 0) == 1 && p.revents != 0) {
            uint32_t ev =
                (p.revents & POLLIN ? EPOLLIN : 0) | (p.revents & POLLOUT ? EPOLLOUT : 0) |
                (p.revents & POLLERR ? EPOLLERR : 0) | (p.revents & POLLHUP ? EPOLLHUP : 0);
            on_event(c, t, ev);
            if (t->phase == IDLE) {
                return; /* it answered in time; the loop was late to look */
            }
        }
    }
    if (!t->extended && lag * 4 > (int64_t)t->spec.timeout_ms) {
        t->extended = true;
        c->stats.late_extended++;
        set_timer(c, t, now + t->spec.timeout_ms);
        return;
    }
    if (t->phase == READING && t->status != 0) {
        judge_status(c, t, ", body unfinished");
        return;
    }
    c->stats.timeouts++;
    finish(c, t, false, false, "timeout after %u ms %s", t->spec.timeout_ms, phase_name(t->phase));
}

/* How early a check may start, so that one wake-up starts the checks due within a few ms of
 * each other (1 % of the interval, at most 10 ms; well inside the ±5 % jitter). Deadlines are
 * never judged early. */
static int64_t slack_of(const target *t)
{
    if (t->phase != IDLE) {
        return 0;
    }
    uint32_t s = t->spec.interval_ms / 100;
    return s > 10 ? 10 : s;
}

/* The requests of the checks started at this wake-up (open_socket with defer). */
static void flush_sends(sh_checker *c)
{
    for (size_t i = 0; i < c->n_sends; i++) {
        target *t = c->sends[i];
        int err = first_send(c, t);
        if (err != 0) {
            finish(c, t, false, false, "%s", connect_error(err));
        }
    }
    c->n_sends = 0;
}

static void on_timer(sh_checker *c, target *t, int64_t now)
{
    if (t->phase == IDLE) {
        start_check(c, t);
    } else {
        on_deadline(c, t, now);
    }
}

/* ---- targets ---- */

static uint32_t full_report_ms(const sh_checker *c)
{
    return c->report_ms > SH_FULL_REPORT_MS ? c->report_ms : SH_FULL_REPORT_MS;
}

static bool same_policy(const sh_target_spec *a, const sh_target_spec *b)
{
    return a->protocol == b->protocol && strcmp(a->path, b->path) == 0 &&
           a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->unhealthy_threshold == b->unhealthy_threshold &&
           a->healthy_threshold == b->healthy_threshold &&
           strcmp(a->service_name, b->service_name) == 0 &&
           a->reuse_connection == b->reuse_connection;
}

static void destroy_target(target *t)
{
    free(t->buf);
    free(t->req);
    free(t);
}

static void free_target(sh_checker *c, target *t)
{
    close_fd(t);
    sh_grpc_channel_free(t->gch);
    t->gch = NULL;
    if (t->inflight) { /* its result will name it: freed then */
        t->next_orphan = c->orphans;
        c->orphans = t;
        return;
    }
    destroy_target(t);
}

static void unorphan(sh_checker *c, target *t)
{
    for (target **p = &c->orphans; *p; p = &(*p)->next_orphan) {
        if (*p == t) {
            *p = t->next_orphan;
            destroy_target(t);
            return;
        }
    }
}

/* Finished gRPC checks: verdicts (SERVING is healthy) with their reason. Lock held. */
static void on_grpc_results(sh_checker *c)
{
    sh_grpc_result r[256];
    size_t n = sh_grpc_take(c->grpc, r, 256);
    for (size_t i = 0; i < n; i++) {
        target *t = r[i].token;
        t->inflight = false;
        if (t->gch == NULL) {
            unorphan(c, t);
            continue;
        }
        if (t->phase == IDLE) {
            continue;
        }
        if (r[i].code != 0) {
            finish(c, t, false, true, "gRPC %s%s%s", sh_grpc_code_name(r[i].code),
                   r[i].detail[0] ? ": " : "", r[i].detail);
        } else {
            finish(c, t, r[i].serving == 1, true, "gRPC %s in %lld ms",
                   sh_grpc_serving_name(r[i].serving), (long long)took(t));
        }
    }
}

/* An index of targets by key: open addressing over a power-of-two table of size 2n or more. */
typedef struct target_index {
    target **slot;
    size_t mask;
} target_index;

static void index_build(target_index *x, target **t, size_t n)
{
    size_t size = 16;
    while (size < 2 * n) {
        size *= 2;
    }
    x->slot = xcalloc(size, sizeof(*x->slot));
    x->mask = size - 1;
    for (size_t i = 0; i < n; i++) {
        size_t pos = hf_endpoint_key_hash(&t[i]->spec.key) & x->mask;
        while (x->slot[pos] != NULL) {
            pos = (pos + 1) & x->mask;
        }
        x->slot[pos] = t[i];
    }
}

/* Takes the target with key k out of the index (NULL when there is none). */
static target *index_take(target_index *x, const hf_endpoint_key *k)
{
    size_t pos = hf_endpoint_key_hash(k) & x->mask;
    for (; x->slot[pos] != NULL; pos = (pos + 1) & x->mask) {
        target *t = x->slot[pos];
        if (!t->live && hf_endpoint_key_eq(&t->spec.key, k)) {
            t->live = true; /* taken: left in place so that probing stays intact */
            return t;
        }
    }
    return NULL;
}

/* Installs the pending target set; endpoints already checked with the same policy keep their
 * state and connection. */
static void apply_pending(sh_checker *c)
{
    pthread_mutex_lock(&c->lock);
    sh_target_spec *specs = c->pending;
    size_t n = c->n_pending;
    c->pending = NULL;
    c->n_pending = 0;
    c->has_pending = false;
    c->report_ms = c->pending_report_ms;
    pthread_mutex_unlock(&c->lock);

    for (size_t j = 0; j < c->n; j++) {
        c->t[j]->live = false;
    }
    target_index old;
    index_build(&old, c->t, c->n);
    target **next = xcalloc(n + 1, sizeof(*next));
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        target *keep = index_take(&old, &specs[i].key);
        if (keep != NULL && !same_policy(&keep->spec, &specs[i])) {
            keep->live = false; /* a new policy: start afresh */
            keep = NULL;
        }
        if (keep == NULL) {
            keep = xcalloc(1, sizeof(*keep));
            keep->fd = -1;
            keep->live = true;
            /* the first check at a random point of the interval: no thundering herd */
            keep->when = now + (specs[i].interval_ms ? rand_r(&c->rng) % specs[i].interval_ms : 0);
        }
        keep->spec = specs[i];
        if (keep->addr_len == 0) {
            parse_address(keep);
        }
        next[i] = keep;
    }
    for (size_t j = 0; j < c->n; j++) {
        if (!c->t[j]->live) {
            free_target(c, c->t[j]);
        }
    }
    free(old.slot);
    free(c->t);
    free(specs);
    c->t = next;
    c->n = n;
    heap_rebuild(c);
    if (c->next_report == 0) {
        c->next_report = now + full_report_ms(c);
    }
}

static void full_report(sh_checker *c)
{
    sh_result *r = xcalloc(c->n + 1, sizeof(*r));
    for (size_t i = 0; i < c->n; i++) {
        result_of(c->t[i], &r[i]);
    }
    c->fn(c->arg, r, c->n, true);
    free(r);
}

/* ---- public ---- */

sh_checker *sh_checker_new(const char *node_id, sh_report_fn fn, void *arg)
{
    sh_checker *c = xcalloc(1, sizeof(*c));
    snprintf(c->node_id, sizeof(c->node_id), "%s", node_id);
    c->fn = fn;
    c->arg = arg;
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->rng = (unsigned)now_ms() ^ (unsigned)getpid();
    c->report_ms = 5000;
    pthread_mutex_init(&c->lock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(c->ep, EPOLL_CTL_ADD, c->wake_fd, &ev);
    return c;
}

void sh_checker_free(sh_checker *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free_target(c, c->t[i]);
    }
    sh_grpc_free(c->grpc); /* waits for calls in flight */
    while (c->orphans != NULL) {
        target *t = c->orphans;
        c->orphans = t->next_orphan;
        destroy_target(t);
    }
    free(c->t);
    free(c->heap);
    free(c->gen);
    free(c->sends);
    free(c->pending);
    close(c->wake_fd);
    close(c->ep);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void sh_checker_apply(sh_checker *c, const sh_target_spec *t, size_t n, uint32_t report_ms)
{
    sh_target_spec *copy = xcalloc(n + 1, sizeof(*copy));
    if (n > 0) {
        memcpy(copy, t, n * sizeof(*t));
    }
    pthread_mutex_lock(&c->lock);
    free(c->pending);
    c->pending = copy;
    c->n_pending = n;
    c->has_pending = true;
    c->pending_report_ms = report_ms ? report_ms : 5000;
    pthread_mutex_unlock(&c->lock);
    uint64_t one = 1;
    ssize_t w = write(c->wake_fd, &one, sizeof(one));
    (void)w;
}

void sh_checker_stats(sh_checker *c, sh_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

int sh_checker_run(sh_checker *c, atomic_int *stop)
{
    struct epoll_event evs[1024];
    while (!*stop) {
        int64_t now = now_ms();
        int64_t next = c->next_report ? c->next_report : now + 1000;
        target *first = heap_top(c);
        if (first != NULL && first->when < next) {
            next = first->when;
        }
        int timeout = next > now ? (int)(next - now) : 0;
        if (timeout > 200) {
            timeout = 200; /* notice *stop promptly */
        }
        int n = epoll_wait(c->ep, evs, 1024, timeout);
        if (n < 0 && errno != EINTR) {
            return -1;
        }
        for (int i = 0; i < n; i++) { /* the targets are cold: fetch them all at once */
            __builtin_prefetch(evs[i].data.ptr);
        }
        pthread_mutex_lock(&c->lock);
        for (int i = 0; i < n; i++) {
            target *t = evs[i].data.ptr;
            if (t == NULL) {
                uint64_t v;
                ssize_t r = read(c->wake_fd, &v, sizeof(v));
                (void)r;
                continue;
            }
            if ((void *)t == (void *)&grpc_marker) {
                on_grpc_results(c);
                continue;
            }
            if (t->phase == IDLE) {
                continue; /* a kept socket with nothing asked of it */
            }
            on_event(c, t, evs[i].events);
        }
        bool apply = c->has_pending;
        pthread_mutex_unlock(&c->lock);
        if (apply) {
            apply_pending(c);
        }
        pthread_mutex_lock(&c->lock);
        now = now_ms();
        for (target *t; (t = heap_top(c)) != NULL && t->when <= now + slack_of(t);) {
            heap_pop(c);
            on_timer(c, t, now); /* sets t's next timer */
            if (c->n_sends >= SEND_BATCH) {
                flush_sends(c); /* a long run of due checks: no request waits long */
            }
        }
        flush_sends(c);
        pthread_mutex_unlock(&c->lock);
        if (c->next_report && now >= c->next_report) {
            c->next_report = now + full_report_ms(c);
            full_report(c);
        }
    }
    return 0;
}
