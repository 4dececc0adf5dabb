/*
 * Health checking's decisions, apart from any protocol: which checkers check which endpoint
 * (assignment), and what a quorum of their verdicts says (evict / restore). Pure functions over
 * one table indexed by a hash of the endpoint key (service, address, port): no I/O, no locks, no
 * clock (callers pass the time), so that every rule is unit-tested and the HDS adapter
 * (xds/hds.c) only translates messages.
 *
 * Rules (DESIGN §6):
 * - every endpoint gets min(k, checkers) distinct checkers, in distinct zones when there are
 *   enough zones, the least loaded first, ties broken by a hash of (endpoint, checker);
 * - assignments are stable: a checker that joins takes over only what balances the load (and
 *   spreads zones), a checker that leaves hands over only its own endpoints;
 * - a checker's verdict counts only while it is assigned; a newly assigned checker has no
 *   verdict until it reports;
 * - the quorum is a majority of the assigned checkers: that many "unhealthy" evicts, that many
 *   "healthy" restores, anything else keeps the current health (fail static);
 * - every change of an endpoint's checkers (a checker leaving, joining, rebalancing) and every
 *   verdict change re-runs the endpoint's decision;
 * - verdicts for endpoints that are not in the table, or from checkers not assigned to them, are
 *   dropped (a peer cannot grow the table).
 * One thread owns a table (the xDS thread in holdfast).
 */
#ifndef HF_HEALTH_H
#define HF_HEALTH_H

#include "endpoint_key.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HF_HC_MAX_K 5           /* checkers per endpoint at most */
#define HF_HC_MAX_CHECKERS 1024 /* connected checkers at most */
#define HF_CHECKER_ID_MAX 128
#define HF_HC_REASON_MAX 64 /* "HTTP 503 in 12 ms", "timeout after 1000 ms", ... */

/* One endpoint to be checked (the input: from the store today, from the in-memory
 * configuration later). */
typedef struct hf_hc_endpoint {
    hf_endpoint_key key;
    char zone[HF_SHORT_MAX];
    char fleet[HF_NAME_MAX];
    uint64_t policy;       /* a hash of its service's check policy: a change re-sends specifiers */
    enum hf_health health; /* as stored */
} hf_hc_endpoint;

/* A connected checker. */
typedef struct hf_hc_checker {
    char id[HF_CHECKER_ID_MAX]; /* node id; unique */
    char zone[HF_SHORT_MAX];
} hf_hc_checker;

/* One assigned checker's latest verdict on an endpoint. */
typedef struct hf_hc_slot {
    int checker;            /* index (hf_health_checker_index) */
    enum hf_health verdict; /* HF_HEALTH_UNKNOWN until it reports */
    int64_t at;             /* wall-clock ms of the verdict */
    char reason[HF_HC_REASON_MAX];
} hf_hc_slot;

/* A quorum decision: the endpoint's health becomes health. */
typedef struct hf_hc_decision {
    hf_endpoint_key key;
    enum hf_health health;
    int votes;            /* checkers that said so */
    int assigned;         /* checkers assigned */
    int64_t detection_ms; /* eviction: first unhealthy verdict to decision; -1 when unknown */
} hf_hc_decision;

/* A growable list of decisions the caller owns (zero-initialise; hf_hc_decisions_free). */
typedef struct hf_hc_decisions {
    hf_hc_decision *v;
    size_t n, cap;
} hf_hc_decisions;

void hf_hc_decisions_free(hf_hc_decisions *d);

typedef struct hf_health_table hf_health_table;

/* A new empty table assigning k checkers per endpoint (clamped to 1..HF_HC_MAX_K). */
hf_health_table *hf_health_new(int k);
void hf_health_free(hf_health_table *t);

/* Replaces the set of connected checkers (ids unique; at most HF_HC_MAX_CHECKERS, the rest
 * ignored). Endpoints of checkers that left are handed to others, a joining checker takes its
 * share; every endpoint whose checkers changed is re-decided (decisions appended to out).
 * Returns the number of (endpoint, checker) assignments that changed. */
size_t hf_health_set_checkers(hf_health_table *t, const hf_hc_checker *c, size_t n, int64_t mono,
                              hf_hc_decisions *out);

/* Adds an endpoint or updates it in place (zone, fleet, policy, stored health); a new one is
 * assigned at once. Returns true when its checkers' specifiers must be re-sent. */
bool hf_health_upsert(hf_health_table *t, const hf_hc_endpoint *e, int64_t mono,
                      hf_hc_decisions *out);
/* Removes an endpoint (its checkers' specifiers change). Returns false when it was unknown. */
bool hf_health_remove(hf_health_table *t, const hf_endpoint_key *k);
/* Makes the table hold exactly eps[0..n): upserts each and removes the others; only what
 * differs is touched. Returns the number of endpoints added, changed or removed. */
size_t hf_health_sync(hf_health_table *t, const hf_hc_endpoint *eps, size_t n, int64_t mono,
                      hf_hc_decisions *out);

/* As hf_health_sync for some services only: the table's endpoints of services[0..ns) (sorted
 * by strcmp) become exactly eps[0..n) (each of one of those services); the other services'
 * endpoints are not touched (nor visited, but for one name comparison each). What a change of
 * a few services costs at fleet scale. Returns the number of endpoints added, changed or
 * removed. */
size_t hf_health_sync_services(hf_health_table *t, const char *const *services, size_t ns,
                               const hf_hc_endpoint *eps, size_t n, int64_t mono,
                               hf_hc_decisions *out);

/* The index of a connected checker by node id, or -1. */
int hf_health_checker_index(const hf_health_table *t, const char *id);
/* Takes one checker's verdict on an endpoint at wall-clock at_ms (monotonic mono).
 * Returns 1 when the verdict changed (decisions appended to out), 0 when it is the same (the
 * reason and time are still updated), HF_ENOTFOUND when the endpoint is unknown or the checker
 * is not assigned to it (the verdict is dropped). */
int hf_health_verdict(hf_health_table *t, const hf_endpoint_key *k, int checker,
                      enum hf_health verdict, const char *reason, int64_t at_ms, int64_t mono,
                      hf_hc_decisions *out);

/* Reading the table (borrowed pointers, valid until the next change). */
size_t hf_health_size(const hf_health_table *t);
const hf_hc_endpoint *hf_health_endpoint(const hf_health_table *t, size_t i);
/* The slots (assigned checkers with their verdicts) of endpoint i; returns how many. */
int hf_health_slots(const hf_health_table *t, size_t i, const hf_hc_slot **slots);
/* The index of an endpoint, or -1. */
long hf_health_find(const hf_health_table *t, const hf_endpoint_key *k);
/* The node id of checker index c (or "" when it is not connected). */
const char *hf_health_checker_id(const hf_health_table *t, int c);
/* How many endpoints checker c is assigned. */
size_t hf_health_checker_load(const hf_health_table *t, int c);
/* True (once) when checker c's set of endpoints or their policies changed since the last call:
 * its specifier must be re-encoded. */
bool hf_health_take_dirty(hf_health_table *t, int c);

#endif
