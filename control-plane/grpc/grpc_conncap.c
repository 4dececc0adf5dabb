/* The xDS connection cap as a gRPC socket mutator; see grpc_conncap.h. */
#include "grpc_conncap.h"

#include "log.h"
#include "timeutil.h"
#include "xalloc.h"

#include <grpc/support/sync.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* Core's mutator ABI (see the header). info is {int fd; grpc_fd_usage usage;}: we read the fd
 * only and tell connections from listeners by whether the socket has a peer. */
struct mutate_info {
    int fd;
};
struct mutator_vtable {
    bool (*mutate_fd)(int fd, grpc_socket_mutator *m);
    int (*compare)(grpc_socket_mutator *a, grpc_socket_mutator *b);
    void (*destroy)(grpc_socket_mutator *m);
    bool (*mutate_fd_2)(const struct mutate_info *info, grpc_socket_mutator *m);
};
struct mutator_base {
    const struct mutator_vtable *vtable;
    gpr_refcount refcount;
};

extern void hf_grpc_mutator_init(grpc_socket_mutator *m, const struct mutator_vtable *vt) __asm__(
    "_Z24grpc_socket_mutator_initP19grpc_socket_mutatorPK26grpc_socket_mutator_vtable")
    __attribute__((weak));
extern grpc_arg hf_grpc_mutator_to_arg(grpc_socket_mutator *m) __asm__(
    "_Z26grpc_socket_mutator_to_argP19grpc_socket_mutator") __attribute__((weak));

/* One accepted connection: the descriptor and the socket it was (a closed descriptor may be
 * reused for another socket, which has another inode). */
struct conn {
    int fd;
    dev_t dev;
    ino_t ino;
};

struct hf_conncap {
    struct mutator_base base; /* first: gRPC sees a grpc_socket_mutator */
    pthread_mutex_t lock;
    long max;
    struct conn *conns; /* connections believed open, n of them (capacity cap) */
    size_t n, cap;
    int64_t last_sweep_ms;
    int64_t last_warn_ms;
    unsigned long refused; /* since the last warning */
};

/* Forgets connections whose descriptor was closed (or now names another socket). Lock held. */
static void sweep(struct hf_conncap *c)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct stat st;
        if (fstat(c->conns[i].fd, &st) == 0 && st.st_dev == c->conns[i].dev &&
            st.st_ino == c->conns[i].ino) {
            c->conns[kept++] = c->conns[i];
        }
    }
    c->n = kept;
}

/* Counts fd in when there is room; otherwise shuts it down so that gRPC closes it at once. */
static void admit(struct hf_conncap *c, int fd, const struct stat *st)
{
    int64_t now = (int64_t)(hf_mono_ns() / 1000000);
    pthread_mutex_lock(&c->lock);
    if ((long)c->n >= c->max && now - c->last_sweep_ms >= 100) {
        sweep(c); /* at the cap only, and at most ten times a second */
        c->last_sweep_ms = now;
    }
    bool room = (long)c->n < c->max;
    if (room) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->conns = xrealloc(c->conns, c->cap * sizeof(*c->conns));
        }
        c->conns[c->n++] = (struct conn){fd, st->st_dev, st->st_ino};
    } else {
        c->refused++;
    }
    unsigned long refused = c->refused;
    bool warn = !room && now - c->last_warn_ms >= 1000;
    if (warn) {
        c->last_warn_ms = now;
        c->refused = 0;
    }
    pthread_mutex_unlock(&c->lock);
    if (!room) {
        shutdown(fd, SHUT_RDWR);
    }
    if (warn) {
        hf_warn("grpc", "xDS connection limit (%ld) reached: %lu connection(s) closed at accept",
                c->max, refused);
    }
}

static bool mutate_fd_2(const struct mutate_info *info, grpc_socket_mutator *m)
{
    struct hf_conncap *c = (struct hf_conncap *)m;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    struct stat st;
    /* Listeners (and outgoing sockets before connect) have no peer yet: leave them alone. */
    if (getpeername(info->fd, (struct sockaddr *)&peer, &len) == 0 && fstat(info->fd, &st) == 0) {
        admit(c, info->fd, &st);
    }
    return true; /* false would make gRPC 1.51 stop its listener */
}

static bool mutate_fd(int fd, grpc_socket_mutator *m)
{
    struct mutate_info info = {fd};
    return mutate_fd_2(&info, m);
}

static int compare(grpc_socket_mutator *a, grpc_socket_mutator *b)
{
    return a == b ? 0 : (a < b ? -1 : 1);
}

static void destroy(grpc_socket_mutator *m)
{
    (void)m; /* hf__conncap_free frees it, after gRPC is shut down */
}

static const struct mutator_vtable vtable = {mutate_fd, compare, destroy, mutate_fd_2};

hf_conncap *hf__conncap_new(long max)
{
    if (max <= 0) {
        return NULL;
    }
    if (hf_grpc_mutator_init == NULL || hf_grpc_mutator_to_arg == NULL) {
        hf_warn("grpc", "this gRPC core has no socket mutator: xDS connections are not capped");
        return NULL;
    }
    struct hf_conncap *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->max = max;
    hf_grpc_mutator_init((grpc_socket_mutator *)c, &vtable);
    return c;
}

grpc_arg hf__conncap_arg(hf_conncap *c)
{
    return hf_grpc_mutator_to_arg((grpc_socket_mutator *)c);
}

void hf__conncap_free(hf_conncap *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_destroy(&c->lock);
    free(c->conns);
    free(c);
}
