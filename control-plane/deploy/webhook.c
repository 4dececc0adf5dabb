/* The webhook worker; see webhook.h. */
#include "webhook.h"

#include "list.h"
#include "thread.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- one call ---- */

static int parse_url(const char *url, struct sockaddr_in *sa, char *path, size_t plen)
{
    char host[64];
    unsigned port = 80;
    if (strncmp(url, "http://", 7) != 0) {
        return -1;
    }
    const char *p = url + 7;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof(host)) {
        return -1;
    }
    memcpy(host, p, hl);
    host[hl] = '\0';
    p += hl;
    if (*p == ':') {
        char *end;
        port = (unsigned)strtoul(p + 1, &end, 10);
        p = end;
    }
    snprintf(path, plen, "%s", *p ? p : "/");
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return port > 0 && port < 65536 && inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* POSTs body; true on a 2xx answer within 2 s. */
static bool webhook_post(const char *url, const char *body)
{
    struct sockaddr_in sa;
    char path[256];
    if (parse_url(url, &sa, path, sizeof(path)) != 0) {
        return false;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         path, inet_ntoa(sa.sin_addr), strlen(body));
        char resp[64];
        ssize_t r;
        if (write(fd, head, (size_t)n) == n &&
            write(fd, body, strlen(body)) == (ssize_t)strlen(body) &&
            (r = read(fd, resp, sizeof(resp) - 1)) > 12) {
            resp[r] = '\0';
            ok = strncmp(resp, "HTTP/1.", 7) == 0 && resp[9] == '2';
        }
    }
    close(fd);
    return ok;
}

bool webhook_url_valid(const char *url)
{
    struct sockaddr_in sa;
    char path[256];
    return parse_url(url, &sa, path, sizeof(path)) == 0;
}

/* ---- the worker ---- */

struct call {
    hf_list link; /* on queue or done */
    char key[64];
    uint32_t attempt;
    enum webhook_result result;
    char *url;
    char *body;
};

struct webhooks {
    pthread_t thread;
    pthread_mutex_t lock; /* a leaf: never held while posting or calling the store */
    pthread_cond_t cond;
    bool stopping;
    hf_list queue; /* struct call: to send, oldest first */
    hf_list done;  /* sent or being sent (WEBHOOK_PENDING), not yet asked about */
};

static void call_free(struct call *c)
{
    free(c->url);
    free(c->body);
    free(c);
}

static void *worker(void *arg)
{
    webhooks *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stopping && hf_list_empty(&w->queue)) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->stopping) {
            break;
        }
        struct call *c = hf_list_entry(hf_list_first(&w->queue), struct call, link);
        hf_list_remove(&c->link);
        hf_list_insert_tail(&w->done, &c->link);
        pthread_mutex_unlock(&w->lock);
        bool ok = webhook_post(c->url, c->body);
        pthread_mutex_lock(&w->lock);
        c->result = ok ? WEBHOOK_OK : WEBHOOK_FAILED;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

webhooks *webhooks_start(void)
{
    webhooks *w = xcalloc(1, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    hf_list_init(&w->queue);
    hf_list_init(&w->done);
    hf_thread_start(&w->thread, worker, w, "webhooks");
    return w;
}

void webhooks_stop(webhooks *w)
{
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    hf_list *lists[] = {&w->queue, &w->done};
    for (size_t i = 0; i < 2; i++) {
        hf_list *it, *tmp;
        hf_list_foreach_safe(it, tmp, lists[i])
        {
            call_free(hf_list_entry(it, struct call, link));
        }
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void webhooks_send(webhooks *w, const char *key, uint32_t attempt, const char *url,
                   const char *body)
{
    struct call *c = xcalloc(1, sizeof(*c));
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->attempt = attempt;
    c->result = WEBHOOK_PENDING;
    c->url = xstrdup(url);
    c->body = xstrdup(body);
    pthread_mutex_lock(&w->lock);
    hf_list_insert_tail(&w->queue, &c->link);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

enum webhook_result webhooks_result(webhooks *w, const char *key, uint32_t attempt)
{
    enum webhook_result r = WEBHOOK_UNKNOWN;
    pthread_mutex_lock(&w->lock);
    hf_list *lists[] = {&w->queue, &w->done};
    for (size_t i = 0; i < 2; i++) {
        hf_list *it;
        hf_list_foreach(it, lists[i])
        {
            struct call *c = hf_list_entry(it, struct call, link);
            if (c->attempt != attempt || strcmp(c->key, key) != 0) {
                continue;
            }
            r = c->result;
            if (r != WEBHOOK_PENDING) {
                hf_list_remove(&c->link); /* asked about: forgotten */
                call_free(c);
            }
            pthread_mutex_unlock(&w->lock);
            return r;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return r;
}
