/*
 * Rolling restarts, executed (DESIGN §5): per batch, its endpoints go DRAINING; after the drain
 * window the batch is ready to restart (an event, and the webhook when one is set, retried with
 * backoff); the orchestrator restarts the instances and says so (POST .../restarted) - or the
 * health checkers see them fail and come back; once they are healthy again they return to
 * active and the batch is done. Batches start in order, staggered by the plan's interval, at
 * most concurrent_batches at once. Pause stops every transition; abort puts every endpoint of
 * the restart back to active. Everything is stored: a restarted holdfast carries on.
 */
#ifndef HF_RESTART_H
#define HF_RESTART_H

#include "hf_err.h"
#include "model.h"
#include "restart_plan.h"
#include "store.h"
#include "webhook.h"

/* Plans and starts a restart of service/fleet. webhook_url: "" or http://IP:PORT/path. */
int restart_start(hf_store *st, const char *actor, const char *service, const char *fleet,
                  const restart_plan_input *in, const char *webhook_url, hf_restart *out,
                  hf_detail *d);

enum restart_action { RESTART_PAUSE, RESTART_RESUME, RESTART_ABORT };
int restart_action_parse(const char *name, enum restart_action *out);
int restart_act(hf_store *st, const char *actor, const char *id, enum restart_action a,
                hf_detail *d);
/* The orchestrator restarted batch n: it is then waited for to be healthy again. */
int restart_batch_restarted(hf_store *st, const char *actor, const char *id, uint32_t n,
                            hf_detail *d);
/* Whether load reports show no request in progress on any endpoint of batch b of cluster in
 * reports made at or after since_ms (and at least one report per endpoint). */
typedef bool (*restart_idle_fn)(void *arg, const char *cluster, const hf_restart_batch *b,
                                int64_t since_ms);
typedef struct restart_env {
    restart_idle_fn fn; /* may be NULL: drains always take the full window */
    void *arg;
    int64_t settle_ms; /* reports count from this long after a drain began */
    webhooks *hooks;
} restart_env;
/* Advances every running restart; called by the deploy engine's thread. A draining batch becomes
 * ready early when env->fn says so for reports made settle_ms after its drain began. */
void restart_tick(hf_store *st, const restart_env *env);

#endif
