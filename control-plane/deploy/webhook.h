/*
 * Webhook calls off the engine's thread: a JSON POST with libcurl to an http:// or https:// URL
 * (host names resolved, certificates and host names checked, no proxy from the environment,
 * redirects not followed), 2 s to connect and 3 s in all, on one worker thread. The engine queues
 * a call and later asks how it went. Link-local, unspecified and multicast targets are refused
 * both in the URL and, for a name, on the address it resolves to when the call is made.
 */
#ifndef HF_WEBHOOK_H
#define HF_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct webhooks webhooks;

/* Checks a webhook URL strictly (curl's URL parser; no spaces, control or non-ASCII characters;
 * http or https; a host that is not a forbidden IP literal). Returns 0, or -1 with why (n bytes)
 * saying what is wrong. Thread-safe. */
int webhook_url_check(const char *url, char *why, size_t n);
/* webhook_url_check(url, ...) == 0. */
bool webhook_url_valid(const char *url);

webhooks *webhooks_start(void);
/* Drops what is queued, waits for the call in progress (at most a few seconds) and frees. */
void webhooks_stop(webhooks *w);

/* Queues POST body to url, keyed (key, attempt). Copies its arguments. */
void webhooks_send(webhooks *w, const char *key, uint32_t attempt, const char *url,
                   const char *body);

enum webhook_result { WEBHOOK_FAILED, WEBHOOK_OK, WEBHOOK_PENDING, WEBHOOK_UNKNOWN };
/* How call (key, attempt) went; a finished call is forgotten once asked about (then, like a call
 * lost with a restart, it is WEBHOOK_UNKNOWN). */
enum webhook_result webhooks_result(webhooks *w, const char *key, uint32_t attempt);

#endif
