/*
 * The epoll health-check loop; see checker.h.
 *
 * Every target has exactly one timer at a time in a min-heap: its next check, or the deadline
 * of the check in progress. A check is a small state machine on one non-blocking socket:
 * CONNECTING -> WRITING -> READING -> done (the socket kept for the next check when the
 * response was delimited and reuse is on). A kept socket that fails before any response byte
 * is replaced once by a fresh connection, within the same check (servers close idle
 * connections; that is not the endpoint failing).
 */
#include "checker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

enum phase { IDLE, CONNECTING, WRITING, READING };

typedef struct target {
    sh_target_spec spec;
    enum sh_health health;
    uint32_t ok_run, fail_run;
    enum phase phase;
    int fd;       /* the socket (kept between checks when reused), -1 if none */
    bool reused;  /* this check runs on a kept socket */
    int64_t when; /* heap key: next check start, or the running check's deadline (ms) */
    size_t heap_pos;
    char *buf; /* response bytes while reading */
    size_t len;
    size_t sent;
    bool live; /* still in the current target set */
} target;

struct sh_checker {
    char node_id[128];
    sh_report_fn fn;
    void *arg;
    int ep;
    int wake_fd;
    target **t; /* targets, owned */
    size_t n;
    target **heap;
    size_t heap_n;
    uint32_t report_ms;
    int64_t next_report;
    sh_stats stats;
    unsigned rng;
    pthread_mutex_t lock; /* pending, stats */
    sh_target_spec *pending;
    size_t n_pending;
    bool has_pending;
    uint32_t pending_report_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the timer heap ---- */

static void heap_swap(sh_checker *c, size_t a, size_t b)
{
    target *x = c->heap[a];
    c->heap[a] = c->heap[b];
    c->heap[b] = x;
    c->heap[a]->heap_pos = a;
    c->heap[b]->heap_pos = b;
}

static void heap_fix(sh_checker *c, size_t i)
{
    while (i > 0 && c->heap[(i - 1) / 2]->when > c->heap[i]->when) {
        heap_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->heap_n && c->heap[l]->when < c->heap[m]->when) {
            m = l;
        }
        if (r < c->heap_n && c->heap[r]->when < c->heap[m]->when) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(c, i, m);
        i = m;
    }
}

static void set_timer(sh_checker *c, target *t, int64_t when)
{
    t->when = when;
    heap_fix(c, t->heap_pos);
}

static void heap_rebuild(sh_checker *c)
{
    c->heap = realloc(c->heap, (c->n + 1) * sizeof(*c->heap));
    c->heap_n = c->n;
    for (size_t i = 0; i < c->n; i++) {
        c->heap[i] = c->t[i];
        c->t[i]->heap_pos = i;
    }
    for (size_t i = c->n; i-- > 0;) {
        heap_fix(c, i);
    }
}

/* ---- results ---- */

static void result_of(const target *t, sh_result *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->cluster, t->spec.cluster, sizeof(r->cluster));
    memcpy(r->address, t->spec.address, sizeof(r->address));
    r->port = t->spec.port;
    memcpy(r->zone, t->spec.zone, sizeof(r->zone));
    memcpy(r->fleet, t->spec.fleet, sizeof(r->fleet));
    r->health = t->health;
}

static void close_fd(sh_checker *c, target *t)
{
    if (t->fd >= 0) {
        epoll_ctl(c->ep, EPOLL_CTL_DEL, t->fd, NULL);
        close(t->fd);
        t->fd = -1;
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

/* A check ended: thresholds, transitions, the next check. */
static void finish(sh_checker *c, target *t, bool ok, bool keep)
{
    free(t->buf);
    t->buf = NULL;
    t->len = t->sent = 0;
    t->phase = IDLE;
    if (!keep || !t->spec.reuse_connection) {
        close_fd(c, t);
    } else {
        struct epoll_event ev = {.events = 0, .data.ptr = t};
        epoll_ctl(c->ep, EPOLL_CTL_MOD, t->fd, &ev);
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

static int open_socket(sh_checker *c, target *t)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, t->spec.address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(t->spec.port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, t->spec.address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(t->spec.port);
        len = sizeof(*a6);
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->stats.connects++;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    t->fd = fd;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = t};
    epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static void want(sh_checker *c, target *t, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = t};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, t->fd, &ev);
}

static void start_check(sh_checker *c, target *t)
{
    t->buf = NULL;
    t->len = t->sent = 0;
    set_timer(c, t, now_ms() + t->spec.timeout_ms);
    if (t->fd >= 0 && t->spec.protocol == SH_HTTP && t->spec.reuse_connection) {
        t->reused = true;
        t->phase = WRITING;
        want(c, t, EPOLLOUT);
        return;
    }
    close_fd(c, t);
    t->reused = false;
    if (open_socket(c, t) != 0) {
        finish(c, t, false, false);
        return;
    }
    t->phase = CONNECTING;
}

/* ---- HTTP ---- */

static size_t request_text(sh_checker *c, const target *t, char *buf, size_t len)
{
    bool v6 = strchr(t->spec.address, ':') != NULL;
    int n = snprintf(buf, len,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: holdfast-shim/%s\r\n"
                     "Connection: %s\r\n\r\n",
                     t->spec.path[0] ? t->spec.path : "/", v6 ? "[" : "", t->spec.address,
                     v6 ? "]" : "", t->spec.port, c->node_id,
                     t->spec.reuse_connection ? "keep-alive" : "close");
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/* Parses a complete response: 1 done (status in *status, *keep says the socket is reusable),
 * 0 needs more bytes, -1 malformed. eof: the peer closed. */
static int parse_response(const char *b, size_t len, bool eof, int *status, bool *keep)
{
    const char *end = NULL;
    for (size_t i = 3; i < len && end == NULL; i++) {
        if (b[i - 3] == '\r' && b[i - 2] == '\n' && b[i - 1] == '\r' && b[i] == '\n') {
            end = b + i + 1;
        }
    }
    if (end == NULL) {
        return eof || len >= RESPONSE_MAX ? -1 : 0;
    }
    if (len < 12 || strncmp(b, "HTTP/1.", 7) != 0) {
        return -1;
    }
    *status = atoi(b + 9);
    size_t head = (size_t)(end - b);
    bool close_hdr = false, chunked = false;
    long clen = -1;
    for (const char *p = strstr(b, "\r\n"); p && p + 2 < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, "content-length:", 15) == 0) {
            clen = strtol(h + 15, NULL, 10);
        } else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strstr(h, "chunked") &&
                   strstr(h, "chunked") < strstr(h, "\r\n")) {
            chunked = true;
        } else if (strncasecmp(h, "connection:", 11) == 0) {
            const char *eol = strstr(h, "\r\n");
            const char *v = h + 11;
            while (*v == ' ') {
                v++;
            }
            close_hdr = eol && (size_t)(eol - v) >= 5 && strncasecmp(v, "close", 5) == 0;
        }
    }
    bool http10 = b[7] == '0';
    if (clen >= 0) {
        if (len < head + (size_t)clen) {
            return eof ? -1 : 0;
        }
        *keep = !close_hdr && !http10;
        return 1;
    }
    if (chunked) {
        if (len >= head + 5 && memcmp(b + len - 5, "0\r\n\r\n", 5) == 0) {
            *keep = !close_hdr && !http10;
            return 1;
        }
        return eof ? -1 : 0;
    }
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) {
        *keep = !close_hdr && !http10;
        return 1;
    }
    *keep = false; /* delimited by the end of the connection */
    return eof ? 1 : 0;
}

/* A kept socket failed before any response byte: reconnect once, same check. */
static bool retry_fresh(sh_checker *c, target *t)
{
    if (!t->reused || t->len > 0) {
        return false;
    }
    close_fd(c, t);
    t->reused = false;
    t->sent = 0;
    if (open_socket(c, t) != 0) {
        return false;
    }
    t->phase = CONNECTING;
    return true;
}

static void on_http_event(sh_checker *c, target *t, uint32_t events)
{
    if (t->phase == CONNECTING || t->phase == WRITING) {
        if (t->phase == CONNECTING) {
            int err = 0;
            socklen_t el = sizeof(err);
            getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
                finish(c, t, false, false);
                return;
            }
            t->phase = WRITING;
        }
        char req[512];
        size_t len = request_text(c, t, req, sizeof(req));
        ssize_t w = send(t->fd, req + t->sent, len - t->sent, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (w <= 0) {
            if (!retry_fresh(c, t)) {
                finish(c, t, false, false);
            }
            return;
        }
        t->sent += (size_t)w;
        if (t->sent == len) {
            t->phase = READING;
            if (t->buf == NULL) { /* kept over a retry on a fresh connection */
                t->buf = malloc(RESPONSE_MAX + 1);
            }
            if (t->buf == NULL) {
                finish(c, t, false, false);
                return;
            }
            want(c, t, EPOLLIN);
        }
        return;
    }
    if (t->phase != READING) {
        return;
    }
    ssize_t r = recv(t->fd, t->buf + t->len, RESPONSE_MAX - t->len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    bool eof = r <= 0;
    if (eof && t->len == 0 && retry_fresh(c, t)) {
        return;
    }
    if (r > 0) {
        t->len += (size_t)r;
    }
    t->buf[t->len] = '\0';
    int status = 0;
    bool keep = false;
    int done = parse_response(t->buf, t->len, eof, &status, &keep);
    if (done == 0 && t->len < RESPONSE_MAX) {
        return;
    }
    bool ok = done == 1 && status >= 200 && status < 400;
    finish(c, t, ok, done == 1 && keep && !eof);
}

static void on_tcp_event(sh_checker *c, target *t, uint32_t events)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    finish(c, t, err == 0 && !(events & EPOLLERR), false);
}

static void on_timer(sh_checker *c, target *t)
{
    if (t->phase == IDLE) {
        start_check(c, t);
    } else {
        finish(c, t, false, false); /* timed out */
    }
}

/* ---- targets ---- */

static bool same_policy(const sh_target_spec *a, const sh_target_spec *b)
{
    return a->protocol == b->protocol && strcmp(a->path, b->path) == 0 &&
           a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
           a->unhealthy_threshold == b->unhealthy_threshold &&
           a->healthy_threshold == b->healthy_threshold &&
           a->reuse_connection == b->reuse_connection;
}

static void free_target(sh_checker *c, target *t)
{
    close_fd(c, t);
    free(t->buf);
    free(t);
}

/* Installs the pending target set; endpoints already checked keep their state. */
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

    target **next = calloc(n + 1, sizeof(*next));
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        target *keep = NULL;
        for (size_t j = 0; j < c->n && keep == NULL; j++) {
            target *o = c->t[j];
            if (o != NULL && o->spec.port == specs[i].port &&
                strcmp(o->spec.address, specs[i].address) == 0 &&
                strcmp(o->spec.cluster, specs[i].cluster) == 0 &&
                same_policy(&o->spec, &specs[i])) {
                keep = o;
                c->t[j] = NULL;
            }
        }
        if (keep == NULL) {
            keep = calloc(1, sizeof(*keep));
            keep->fd = -1;
            keep->spec = specs[i];
            /* the first check at a random point of the interval: no thundering herd */
            keep->when = now + (specs[i].interval_ms ? rand_r(&c->rng) % specs[i].interval_ms : 0);
        }
        keep->spec = specs[i];
        next[i] = keep;
    }
    for (size_t j = 0; j < c->n; j++) {
        if (c->t[j] != NULL) {
            free_target(c, c->t[j]);
        }
    }
    free(c->t);
    free(specs);
    c->t = next;
    c->n = n;
    heap_rebuild(c);
    if (c->next_report == 0) {
        c->next_report = now + c->report_ms;
    }
}

static void full_report(sh_checker *c)
{
    sh_result *r = calloc(c->n + 1, sizeof(*r));
    for (size_t i = 0; i < c->n; i++) {
        result_of(c->t[i], &r[i]);
    }
    c->fn(c->arg, r, c->n, true);
    free(r);
}

/* ---- public ---- */

sh_checker *sh_checker_new(const char *node_id, sh_report_fn fn, void *arg)
{
    sh_checker *c = calloc(1, sizeof(*c));
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
    free(c->t);
    free(c->heap);
    free(c->pending);
    close(c->wake_fd);
    close(c->ep);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void sh_checker_apply(sh_checker *c, const sh_target_spec *t, size_t n, uint32_t report_ms)
{
    sh_target_spec *copy = calloc(n + 1, sizeof(*copy));
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
    struct epoll_event evs[256];
    while (!*stop) {
        int64_t now = now_ms();
        int64_t next = c->next_report ? c->next_report : now + 1000;
        if (c->heap_n > 0 && c->heap[0]->when < next) {
            next = c->heap[0]->when;
        }
        int timeout = next > now ? (int)(next - now) : 0;
        if (timeout > 200) {
            timeout = 200; /* notice *stop promptly */
        }
        int n = epoll_wait(c->ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            return -1;
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
            if (t->phase == IDLE) {
                continue; /* a kept socket with nothing asked of it */
            }
            if (t->spec.protocol == SH_TCP) {
                on_tcp_event(c, t, evs[i].events);
            } else {
                on_http_event(c, t, evs[i].events);
            }
        }
        bool apply = c->has_pending;
        pthread_mutex_unlock(&c->lock);
        if (apply) {
            apply_pending(c);
        }
        pthread_mutex_lock(&c->lock);
        now = now_ms();
        while (c->heap_n > 0 && c->heap[0]->when <= now) {
            on_timer(c, c->heap[0]);
        }
        pthread_mutex_unlock(&c->lock);
        if (c->next_report && now >= c->next_report) {
            c->next_report = now + c->report_ms;
            full_report(c);
        }
    }
    return 0;
}
