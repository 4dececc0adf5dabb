/*
 * http_many: a benchmark backend (not a test) answering HTTP/1.1 "200 ok" on COUNT ports of
 * 127.0.0.1 from BASE, keep-alive, one epoll loop. It records when each port was last checked
 * and, on SIGTERM, prints the spread of the intervals between consecutive checks of the same
 * port (what a health checker's jitter and load look like from the backends' side).
 * With ADDR, it listens on COUNT addresses from ADDR (e.g. 127.1.0.1, 127.1.0.2, ...) all on
 * port BASE: the shape of a real fleet (many addresses, one port).
 *
 *   http_many BASE COUNT [ADDR]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int s)
{
    (void)s;
    stop = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

#define MAX_SAMPLES 2000000

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: http_many BASE COUNT [ADDR]\n");
        return 2;
    }
    int base = atoi(argv[1]), count = atoi(argv[2]);
    struct in_addr first;
    inet_pton(AF_INET, argc == 4 ? argv[3] : "127.0.0.1", &first);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    int ep = epoll_create1(0);
    int64_t *last = calloc((size_t)count, sizeof(int64_t));
    int64_t *intervals = malloc(MAX_SAMPLES * sizeof(int64_t));
    size_t n_int = 0;
    uint64_t requests = 0;
    /* fd -> port index; listeners are marked by a negative index - 1 */
    int *port_of = calloc(1 << 20, sizeof(int));
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = {.sin_family = AF_INET};
        if (argc == 4) {
            sa.sin_port = htons((uint16_t)base);
            sa.sin_addr.s_addr = htonl(ntohl(first.s_addr) + (uint32_t)i);
        } else {
            sa.sin_port = htons((uint16_t)(base + i));
            sa.sin_addr = first;
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0) {
            fprintf(stderr, "cannot listen on endpoint %d: %s\n", i, strerror(errno));
            return 1;
        }
        port_of[fd] = -(i + 1);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    fprintf(stderr, "http_many: listening on %d ports from %d\n", count, base);
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    struct epoll_event evs[512];
    char buf[4096];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (port_of[fd] < 0) {
                int c;
                while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c < (1 << 20)) {
                        port_of[c] = -port_of[fd] - 1 + 1; /* index + 1 */
                        struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                        epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                    } else {
                        close(c);
                    }
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                continue;
            }
            int idx = port_of[fd] - 1;
            int64_t t = now_ms();
            if (last[idx] != 0 && n_int < MAX_SAMPLES) {
                intervals[n_int++] = t - last[idx];
            }
            last[idx] = t;
            requests++;
            ssize_t w = write(fd, resp, sizeof(resp) - 1);
            (void)w;
        }
    }
    if (n_int > 0) {
        qsort(intervals, n_int, sizeof(int64_t), cmp);
        double sum = 0;
        for (size_t i = 0; i < n_int; i++) {
            sum += (double)intervals[i];
        }
        printf("requests=%llu intervals=%zu interval_mean_ms=%.1f p1_ms=%lld p50_ms=%lld "
               "p99_ms=%lld max_ms=%lld\n",
               (unsigned long long)requests, n_int, sum / (double)n_int,
               (long long)intervals[n_int / 100], (long long)intervals[n_int / 2],
               (long long)intervals[n_int * 99 / 100], (long long)intervals[n_int - 1]);
    } else {
        printf("requests=%llu intervals=0\n", (unsigned long long)requests);
    }
    return 0;
}
