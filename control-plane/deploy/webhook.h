/*
 * Webhook calls off the engine's thread: a JSON POST over plain HTTP/1.1 to http://IPv4:PORT/path
 * (no DNS), 2 s timeouts, on one worker thread. The engine queues a call and later asks how it
 * went.
 */
#ifndef HF_WEBHOOK_H
#define HF_WEBHOOK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct webhooks webhooks;

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
