/* The xDS listener with a connection cap; see grpc_conncap.h. */
#include "grpc_conncap.h"

#include "log.h"
#include "timeutil.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* One admitted connection: its descriptor, the socket it was (a descriptor gRPC closed may be
 * reused for another socket, with another inode), and the peer address for display. */
struct conn {
    int fd;
    dev_t dev;
    ino_t ino;
    char peer[64];
};

struct hf_conncap {
    int listen_fd;
    long max;
    grpc_server *server;
    grpc_server_credentials *creds;
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    pthread_mutex_t lock; /* conns */
    struct conn *conns;   /* believed open: n of them, room for cap */
    size_t n, cap;
    int64_t last_sweep_ms;
    int64_t last_warn_ms;
    unsigned long refused; /* closed at the cap since the last warning */
};

static int64_t mono_ms(void)
{
    return (int64_t)(hf_mono_ns() / 1000000);
}

/* ---- listening ---- */

static int open_listener(const char *address, int *port)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    if (colon == NULL) {
        return -1;
    }
    size_t hl = (size_t)(colon - address);
    const char *h = address;
    if (hl >= 2 && address[0] == '[' && colon[-1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host)) {
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
                    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

hf_conncap *hf__conncap_listen(const char *address, long max, int *port, hf_detail *d)
{
    int fd = open_listener(address, port);
    if (fd < 0) {
        hf_fail(d, HF_EIO, "xds", "cannot listen on %s (in use?)", address);
        return NULL;
    }
    struct hf_conncap *c = xcalloc(1, sizeof(*c));
    c->listen_fd = fd;
    c->max = max;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* ---- counting ---- */

/* Forgets connections whose descriptor was closed (or names another socket now). Lock held. */
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

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "ipv6:[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "ipv4:%s:%u", ip, ntohs(a->sin_port));
    }
}

/* Counts fd in when there is room (true); the caller closes it otherwise. */
static bool admit(struct hf_conncap *c, int fd, const struct sockaddr_storage *peer)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return false;
    }
    int64_t now = mono_ms();
    pthread_mutex_lock(&c->lock);
    if ((long)c->n >= c->max && now - c->last_sweep_ms >= 50) {
        sweep(c); /* at the cap only, at most twenty times a second */
        c->last_sweep_ms = now;
    }
    bool room = (long)c->n < c->max;
    if (room) {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->conns = xrealloc(c->conns, c->cap * sizeof(*c->conns));
        }
        struct conn *k = &c->conns[c->n++];
        *k = (struct conn){.fd = fd, .dev = st.st_dev, .ino = st.st_ino};
        format_peer(peer, k->peer, sizeof(k->peer));
    } else {
        c->refused++;
        if (now - c->last_warn_ms >= 1000) {
            hf_warn("grpc",
                    "xDS connection limit (%ld) reached: %lu connection(s) closed at accept",
                    c->max, c->refused);
            c->last_warn_ms = now;
            c->refused = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return room;
}

void hf__conncap_peer(hf_conncap *c, const char *peer, char *out, size_t cap)
{
    snprintf(out, cap, "%s", peer);
    if (c == NULL || strncmp(peer, "fd:", 3) != 0) {
        return;
    }
    int fd = atoi(peer + 3);
    pthread_mutex_lock(&c->lock);
    for (size_t i = c->n; i-- > 0;) {
        if (c->conns[i].fd == fd) {
            snprintf(out, cap, "%s", c->conns[i].peer);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- the accept thread ---- */

static void accept_one(struct hf_conncap *c)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd = accept4(c->listen_fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            int64_t now = mono_ms();
            if (now - c->last_warn_ms >= 1000) {
                hf_warn("grpc", "cannot accept an xDS connection: %s; retrying", strerror(errno));
                c->last_warn_ms = now;
            }
            usleep(50 * 1000); /* the listener stays: accept again once descriptors free up */
        }
        return;
    }
    if (!admit(c, fd, &peer)) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    grpc_server_add_channel_from_fd(c->server, fd, c->creds);
}

static void *accept_main(void *arg)
{
    struct hf_conncap *c = arg;
    while (!atomic_load(&c->stopping)) {
        struct pollfd p = {.fd = c->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            accept_one(c);
        }
    }
    return NULL;
}

void hf__conncap_start(hf_conncap *c, grpc_server *server)
{
    c->server = server;
    c->creds = grpc_insecure_server_credentials_create();
    c->started = pthread_create(&c->thread, NULL, accept_main, c) == 0;
}

void hf__conncap_stop(hf_conncap *c)
{
    if (c == NULL || c->listen_fd < 0) {
        return;
    }
    atomic_store(&c->stopping, true);
    if (c->started) {
        pthread_join(c->thread, NULL);
    }
    close(c->listen_fd);
    c->listen_fd = -1;
    if (c->creds != NULL) {
        grpc_server_credentials_release(c->creds);
        c->creds = NULL;
    }
}

void hf__conncap_free(hf_conncap *c)
{
    if (c == NULL) {
        return;
    }
    hf__conncap_stop(c);
    pthread_mutex_destroy(&c->lock);
    free(c->conns);
    free(c);
}
