/* The webhook worker; see webhook.h. libcurl is included here only. */
#include "webhook.h"

#include "log.h"
#include "list.h"
#include "thread.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 2000
#define CALL_TIMEOUT_MS 3000
#define MAX_ANSWER 65536 /* bytes of an answer read before the call is cut */

/* ---- targets ---- */

/* Link-local, unspecified ("this host"), multicast and broadcast addresses: never a webhook
 * (169.254.169.254 is the cloud metadata service; 0.0.0.0 reaches this host). */
static bool v4_forbidden(uint32_t a)
{
    return (a >> 24) == 0 || (a >> 16) == 0xa9fe || (a >> 28) == 0xe || a == 0xffffffffu;
}

static bool addr_forbidden(int family, const void *addr)
{
    if (family == AF_INET) {
        return v4_forbidden(ntohl(((const struct in_addr *)addr)->s_addr));
    }
    const struct in6_addr *a6 = addr;
    if (IN6_IS_ADDR_V4MAPPED(a6) || IN6_IS_ADDR_V4COMPAT(a6)) {
        uint32_t v4;
        memcpy(&v4, &a6->s6_addr[12], 4);
        return v4_forbidden(ntohl(v4));
    }
    return IN6_IS_ADDR_UNSPECIFIED(a6) || IN6_IS_ADDR_LINKLOCAL(a6) || IN6_IS_ADDR_MULTICAST(a6);
}

/* True when host (as in a URL: "[v6]" bracketed, maybe with a zone) is an IP literal that is
 * forbidden; names are checked when they are resolved, at call time. */
static bool host_forbidden(const char *host)
{
    char lit[64];
    const char *h = host;
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= sizeof(lit)) {
        return false;
    }
    memcpy(lit, h, n);
    lit[n] = '\0';
    lit[strcspn(lit, "%")] = '\0'; /* an IPv6 zone */
    unsigned char buf[16];
    if (inet_pton(AF_INET, lit, buf) == 1) {
        return addr_forbidden(AF_INET, buf);
    }
    return inet_pton(AF_INET6, lit, buf) == 1 && addr_forbidden(AF_INET6, buf);
}

static void curl_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int webhook_url_check(const char *url, char *why, size_t n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_once);
    for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            snprintf(why, n, "webhook_url may not contain spaces, control or non-ASCII characters");
            return -1;
        }
    }
    const char *sep = strstr(url, "://");
    if (sep == NULL || sep[3] == '/' || sep[3] == '\0') {
        snprintf(why, n, "webhook_url must be an http:// or https:// URL with a host");
        return -1;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, n, "webhook_url must be an http:// or https:// URL with a host");
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, n, "webhook_url must be an http:// or https:// URL, not %s://", scheme);
    } else if (host_forbidden(host)) {
        snprintf(why, n,
                 "webhook_url may not name a link-local, unspecified or multicast "
                 "address (%s)",
                 host);
    } else {
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

bool webhook_url_valid(const char *url)
{
    char why[160];
    return webhook_url_check(url, why, sizeof(why)) == 0;
}

/* ---- one call ---- */

/* Opens the socket for an address curl resolved, unless it is forbidden: a name may resolve to
 * one (checked again here, at call time, whatever the URL said). */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)clientp;
    (void)purpose;
    const void *addr = NULL;
    if (a->family == AF_INET) {
        addr = &((const struct sockaddr_in *)&a->addr)->sin_addr;
    } else if (a->family == AF_INET6) {
        addr = &((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
    }
    if (addr == NULL || addr_forbidden(a->family, addr)) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (addr != NULL) {
            inet_ntop(a->family, addr, text, sizeof(text));
        }
        hf_warn("restart",
                "webhook target resolves to %s (link-local, unspecified or "
                "multicast): not called",
                text);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Counts the answer's bytes and drops them; past MAX_ANSWER the call is cut. */
static size_t drop_answer(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    size_t *total = userp;
    *total += size * nmemb;
    return *total > MAX_ANSWER ? 0 : size * nmemb;
}

/* POSTs body as JSON; true on a 2xx answer. Blocks for at most CALL_TIMEOUT_MS. */
static bool webhook_post(const char *url, const char *body)
{
    char why[160];
    if (webhook_url_check(url, why, sizeof(why)) != 0) {
        hf_warn("restart", "webhook not called: %s", why);
        return false;
    }
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return false;
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    size_t answer = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* no proxy from the environment: we check targets */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)CALL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, drop_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "holdfast/" HOLDFAST_VERSION);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        hf_debug("restart", "webhook call failed: %s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc == CURLE_OK && status >= 200 && status < 300;
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
