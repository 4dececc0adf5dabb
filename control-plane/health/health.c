/*
 * Assignment and quorum over a verdict table indexed by endpoint key; see health.h.
 *
 * Layout: entries in one array (swap-removed), their k slots in a parallel array, and an
 * open-addressing index (linear probing, backward-shift deletion) from the key's hash to the
 * entry. Checkers are a small array; reports name a checker once (hf_health_checker_index), so
 * no per-verdict string search remains.
 */
#include "health.h"

#include "hash.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(HF_KEY_SERVICE_MAX == HF_NAME_MAX, "the key's service is a service name");
_Static_assert(HF_KEY_ADDR_MAX == HF_ADDR_MAX, "the key's address is an endpoint address");

struct entry {
    hf_hc_endpoint ep;
    uint64_t hash;
    uint64_t svc_hash; /* of the service's name: sync_services' first filter */
    int64_t first_bad; /* monotonic ms of the first unhealthy verdict since healthy; 0 none */
    uint32_t mark;     /* sync generation */
    int n;             /* slots in use */
};

struct checker {
    char id[HF_CHECKER_ID_MAX];
    char zone[HF_SHORT_MAX];
    uint64_t id_hash;
    size_t load;
    bool present;
    bool dirty;
};

struct hf_health_table {
    int k;
    struct entry *e;
    hf_hc_slot *slots; /* k per entry */
    size_t n, cap;
    uint32_t *index; /* 0 empty, else entry + 1 */
    size_t mask;     /* index size - 1 (a power of two) */
    struct checker *ck;
    size_t nck;
    size_t present;
    uint32_t gen;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void hf_hc_decisions_free(hf_hc_decisions *d)
{
    free(d->v);
    memset(d, 0, sizeof(*d));
}

hf_health_table *hf_health_new(int k)
{
    hf_health_table *t = xcalloc(1, sizeof(*t));
    t->k = k < 1 ? 1 : k > HF_HC_MAX_K ? HF_HC_MAX_K : k;
    t->mask = 63;
    t->index = xcalloc(t->mask + 1, sizeof(*t->index));
    return t;
}

void hf_health_free(hf_health_table *t)
{
    if (t == NULL) {
        return;
    }
    free(t->e);
    free(t->slots);
    free(t->index);
    free(t->ck);
    free(t);
}

static hf_hc_slot *slots_of(const hf_health_table *t, size_t i)
{
    return &t->slots[i * (size_t)t->k];
}

/* ---- the index ---- */

static size_t index_pos(const hf_health_table *t, uint64_t hash, const hf_endpoint_key *k,
                        bool *found)
{
    size_t pos = hash & t->mask;
    while (t->index[pos] != 0) {
        const struct entry *x = &t->e[t->index[pos] - 1];
        if (x->hash == hash && hf_endpoint_key_eq(&x->ep.key, k)) {
            *found = true;
            return pos;
        }
        pos = (pos + 1) & t->mask;
    }
    *found = false;
    return pos;
}

static void index_grow(hf_health_table *t)
{
    size_t size = (t->mask + 1) * 2;
    free(t->index);
    t->index = xcalloc(size, sizeof(*t->index));
    t->mask = size - 1;
    for (size_t i = 0; i < t->n; i++) {
        size_t pos = t->e[i].hash & t->mask;
        while (t->index[pos] != 0) {
            pos = (pos + 1) & t->mask;
        }
        t->index[pos] = (uint32_t)(i + 1);
    }
}

/* Empties index position pos, shifting back the entries probed past it. */
static void index_delete(hf_health_table *t, size_t pos)
{
    size_t i = pos, j = pos;
    t->index[i] = 0;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->index[j] == 0) {
            return;
        }
        size_t home = t->e[t->index[j] - 1].hash & t->mask;
        /* move j back to i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->index[i] = t->index[j];
            t->index[j] = 0;
            i = j;
        }
    }
}

static size_t index_pos_of_entry(const hf_health_table *t, size_t i)
{
    size_t pos = t->e[i].hash & t->mask;
    while (t->index[pos] != i + 1) {
        pos = (pos + 1) & t->mask;
    }
    return pos;
}

long hf_health_find(const hf_health_table *t, const hf_endpoint_key *k)
{
    bool found;
    size_t pos = index_pos(t, hf_endpoint_key_hash(k), k, &found);
    return found ? (long)t->index[pos] - 1 : -1;
}

/* ---- checkers ---- */

int hf_health_checker_index(const hf_health_table *t, const char *id)
{
    for (size_t c = 0; c < t->nck; c++) {
        if (t->ck[c].present && strcmp(t->ck[c].id, id) == 0) {
            return (int)c;
        }
    }
    return -1;
}

const char *hf_health_checker_id(const hf_health_table *t, int c)
{
    return c >= 0 && (size_t)c < t->nck && t->ck[c].present ? t->ck[c].id : "";
}

size_t hf_health_checker_load(const hf_health_table *t, int c)
{
    return c >= 0 && (size_t)c < t->nck && t->ck[c].present ? t->ck[c].load : 0;
}

bool hf_health_take_dirty(hf_health_table *t, int c)
{
    if (c < 0 || (size_t)c >= t->nck || !t->ck[c].present || !t->ck[c].dirty) {
        return false;
    }
    t->ck[c].dirty = false;
    return true;
}

/* ---- assignment ---- */

static bool zone_used(const hf_health_table *t, const hf_hc_slot *s, int n, int skip, int c)
{
    for (int j = 0; j < n; j++) {
        if (j != skip && strcmp(t->ck[s[j].checker].zone, t->ck[c].zone) == 0) {
            return true;
        }
    }
    return false;
}

static bool holds(const hf_hc_slot *s, int n, int c)
{
    for (int j = 0; j < n; j++) {
        if (s[j].checker == c) {
            return true;
        }
    }
    return false;
}

/* The best checker for a slot of entry i other than slot skip (-1 for a new slot): an unused
 * zone first, then the least loaded, then a hash of (endpoint, checker). -1 when none. */
static int best_checker(const hf_health_table *t, size_t i, int skip)
{
    const struct entry *x = &t->e[i];
    const hf_hc_slot *s = slots_of(t, i);
    int best = -1;
    bool best_zone = false;
    uint64_t best_h = 0;
    for (size_t c = 0; c < t->nck; c++) {
        if (!t->ck[c].present || holds(s, x->n, (int)c)) {
            continue;
        }
        bool z = zone_used(t, s, x->n, skip, (int)c);
        uint64_t h = mix(x->hash ^ t->ck[c].id_hash);
        if (best < 0 || z < best_zone || (z == best_zone && t->ck[c].load < t->ck[best].load) ||
            (z == best_zone && t->ck[c].load == t->ck[best].load && h < best_h)) {
            best = (int)c;
            best_zone = z;
            best_h = h;
        }
    }
    return best;
}

static void slot_set(hf_health_table *t, hf_hc_slot *s, int c)
{
    memset(s, 0, sizeof(*s));
    s->checker = c;
    s->verdict = HF_HEALTH_UNKNOWN;
    t->ck[c].load++;
    t->ck[c].dirty = true;
}

static void slot_clear(hf_health_table *t, const hf_hc_slot *s)
{
    struct checker *c = &t->ck[s->checker];
    if (c->present) {
        c->load--;
        c->dirty = true;
    }
}

/* Fills entry i's free slots (up to k). Returns how many it assigned. */
static size_t fill(hf_health_table *t, size_t i)
{
    struct entry *x = &t->e[i];
    hf_hc_slot *s = slots_of(t, i);
    size_t added = 0;
    while (x->n < t->k) {
        int c = best_checker(t, i, -1);
        if (c < 0) {
            break;
        }
        slot_set(t, &s[x->n++], c);
        added++;
    }
    return added;
}

/* Moves slots of entry i to a better checker when its own is over target (or shares a zone
 * that another checker would avoid) and the other stays within target. Returns moves. */
static size_t rebalance_entry(hf_health_table *t, size_t i, size_t target)
{
    struct entry *x = &t->e[i];
    hf_hc_slot *s = slots_of(t, i);
    size_t moved = 0;
    for (int j = 0; j < x->n; j++) {
        int cur = s[j].checker;
        int alt = best_checker(t, i, j);
        if (alt < 0 || t->ck[alt].load + 1 > target) {
            continue;
        }
        bool cur_dup = zone_used(t, s, x->n, j, cur);
        bool alt_dup = zone_used(t, s, x->n, j, alt);
        bool better_zone = cur_dup && !alt_dup;
        bool over = t->ck[cur].load > target && alt_dup <= cur_dup;
        if (better_zone || over) {
            slot_clear(t, &s[j]);
            slot_set(t, &s[j], alt);
            moved++;
        }
    }
    return moved;
}

/* ---- quorum ---- */

static void push(hf_hc_decisions *out, const hf_hc_decision *d)
{
    if (out == NULL) {
        return;
    }
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
    }
    out->v[out->n++] = *d;
}

/* Applies the quorum to entry i; appends a decision when its health changes. */
static void decide(hf_health_table *t, size_t i, int64_t mono, hf_hc_decisions *out)
{
    struct entry *x = &t->e[i];
    const hf_hc_slot *s = slots_of(t, i);
    int bad = 0, good = 0;
    for (int j = 0; j < x->n; j++) {
        bad += s[j].verdict == HF_HEALTH_UNHEALTHY;
        good += s[j].verdict == HF_HEALTH_HEALTHY;
    }
    if (bad == 0) {
        x->first_bad = 0;
    }
    int majority = x->n / 2 + 1;
    enum hf_health h = HF_HEALTH_UNKNOWN;
    if (x->n > 0 && bad >= majority) {
        h = HF_HEALTH_UNHEALTHY;
    } else if (x->n > 0 && good >= majority) {
        h = HF_HEALTH_HEALTHY;
    }
    if (h == HF_HEALTH_UNKNOWN || h == x->ep.health) {
        return;
    }
    hf_hc_decision d = {.key = x->ep.key, .health = h, .assigned = x->n, .detection_ms = -1};
    d.votes = h == HF_HEALTH_UNHEALTHY ? bad : good;
    if (h == HF_HEALTH_UNHEALTHY && x->first_bad != 0) {
        d.detection_ms = mono - x->first_bad;
    }
    x->ep.health = h;
    push(out, &d);
}

/* ---- changes ---- */

size_t hf_health_set_checkers(hf_health_table *t, const hf_hc_checker *c, size_t n, int64_t mono,
                              hf_hc_decisions *out)
{
    n = n > HF_HC_MAX_CHECKERS ? HF_HC_MAX_CHECKERS : n;
    bool *keep = xcalloc(t->nck + 1, sizeof(*keep));
    bool *is_new = xcalloc(n + 1, sizeof(*is_new));
    bool joined = false;
    for (size_t a = 0; a < n; a++) {
        int idx = hf_health_checker_index(t, c[a].id);
        is_new[a] = idx < 0;
        if (idx >= 0) {
            keep[idx] = true;
            if (strcmp(t->ck[idx].zone, c[a].zone) != 0) {
                snprintf(t->ck[idx].zone, sizeof(t->ck[idx].zone), "%s", c[a].zone);
                joined = true; /* a zone change may improve the spread */
            }
        }
    }
    bool left = false;
    for (size_t x = 0; x < t->nck; x++) {
        if (t->ck[x].present && !keep[x]) {
            t->ck[x].present = false;
            t->present--;
            left = true;
        }
    }
    free(keep);
    bool any_new = false;
    for (size_t a = 0; a < n; a++) {
        any_new |= is_new[a];
    }
    if (!joined && !left && !any_new) {
        free(is_new);
        return 0; /* the same checkers: every endpoint already has what it can have */
    }
    size_t changes = 0;
    bool *touched = xcalloc(t->n + 1, sizeof(*touched));
    /* endpoints of checkers that left lose those slots (other slots keep their verdicts) */
    for (size_t i = 0; i < t->n; i++) {
        hf_hc_slot *s = slots_of(t, i);
        int w = 0;
        for (int j = 0; j < t->e[i].n; j++) {
            if (t->ck[s[j].checker].present) {
                s[w++] = s[j];
            } else {
                changes++;
                touched[i] = true;
            }
        }
        t->e[i].n = w;
    }
    for (size_t a = 0; a < n; a++) {
        if (!is_new[a] || hf_health_checker_index(t, c[a].id) >= 0) {
            continue; /* known, or a duplicate id in c */
        }
        size_t idx = 0;
        while (idx < t->nck && t->ck[idx].present) {
            idx++;
        }
        if (idx == t->nck) {
            t->ck = xrealloc(t->ck, (t->nck + 1) * sizeof(*t->ck));
            t->nck++;
        }
        struct checker *k = &t->ck[idx];
        memset(k, 0, sizeof(*k));
        snprintf(k->id, sizeof(k->id), "%s", c[a].id);
        snprintf(k->zone, sizeof(k->zone), "%s", c[a].zone);
        k->id_hash = mix(hf_hash_str(HF_HASH_INIT, k->id));
        k->present = true;
        k->dirty = true;
        t->present++;
        joined = true;
    }
    free(is_new);
    for (size_t i = 0; i < t->n; i++) {
        size_t added = fill(t, i);
        changes += added;
        touched[i] |= added > 0;
    }
    if (joined && t->present > 0) {
        size_t slots = 0;
        for (size_t i = 0; i < t->n; i++) {
            slots += (size_t)t->e[i].n;
        }
        size_t target = (slots + t->present - 1) / t->present;
        for (size_t i = 0; i < t->n; i++) {
            size_t moved = rebalance_entry(t, i, target);
            changes += moved;
            touched[i] |= moved > 0;
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        if (touched[i]) {
            decide(t, i, mono, out);
        }
    }
    free(touched);
    return changes;
}

static void mark_dirty(hf_health_table *t, size_t i)
{
    const hf_hc_slot *s = slots_of(t, i);
    for (int j = 0; j < t->e[i].n; j++) {
        t->ck[s[j].checker].dirty = true;
    }
}

bool hf_health_upsert(hf_health_table *t, const hf_hc_endpoint *e, int64_t mono,
                      hf_hc_decisions *out)
{
    uint64_t h = hf_endpoint_key_hash(&e->key);
    bool found;
    size_t pos = index_pos(t, h, &e->key, &found);
    if (found) {
        size_t i = t->index[pos] - 1;
        struct entry *x = &t->e[i];
        x->mark = t->gen;
        bool changed = x->ep.policy != e->policy || strcmp(x->ep.zone, e->zone) != 0 ||
                       strcmp(x->ep.fleet, e->fleet) != 0;
        bool health = x->ep.health != e->health;
        if (changed) {
            mark_dirty(t, i);
        }
        if (changed || health) {
            x->ep = *e;
        }
        if (health) {
            decide(t, i, mono, out);
        }
        return changed;
    }
    if ((t->n + 1) * 2 > t->mask + 1) {
        index_grow(t);
        pos = index_pos(t, h, &e->key, &found);
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->e = xrealloc(t->e, t->cap * sizeof(*t->e));
        t->slots = xrealloc(t->slots, t->cap * (size_t)t->k * sizeof(*t->slots));
    }
    size_t i = t->n++;
    struct entry *x = &t->e[i];
    memset(x, 0, sizeof(*x));
    x->ep = *e;
    x->hash = h;
    x->svc_hash = hf_hash_str(HF_HASH_INIT, e->key.service);
    x->mark = t->gen;
    t->index[pos] = (uint32_t)(i + 1);
    fill(t, i);
    return true;
}

static void remove_at(hf_health_table *t, size_t i)
{
    const hf_hc_slot *s = slots_of(t, i);
    for (int j = 0; j < t->e[i].n; j++) {
        slot_clear(t, &s[j]);
    }
    index_delete(t, index_pos_of_entry(t, i));
    size_t last = t->n - 1;
    if (i != last) {
        size_t pos = index_pos_of_entry(t, last);
        t->e[i] = t->e[last];
        memcpy(slots_of(t, i), slots_of(t, last), (size_t)t->k * sizeof(*t->slots));
        t->index[pos] = (uint32_t)(i + 1);
    }
    t->n--;
}

bool hf_health_remove(hf_health_table *t, const hf_endpoint_key *k)
{
    long i = hf_health_find(t, k);
    if (i < 0) {
        return false;
    }
    remove_at(t, (size_t)i);
    return true;
}

size_t hf_health_sync(hf_health_table *t, const hf_hc_endpoint *eps, size_t n, int64_t mono,
                      hf_hc_decisions *out)
{
    t->gen++;
    size_t changes = 0;
    for (size_t i = 0; i < n; i++) {
        changes += hf_health_upsert(t, &eps[i], mono, out);
    }
    for (size_t i = t->n; i-- > 0;) {
        if (t->e[i].mark != t->gen) {
            remove_at(t, i);
            changes++;
        }
    }
    return changes;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t hf_health_sync_services(hf_health_table *t, const char *const *services, size_t ns,
                               const hf_hc_endpoint *eps, size_t n, int64_t mono,
                               hf_hc_decisions *out)
{
    if (ns == 0) {
        return 0;
    }
    t->gen++;
    size_t changes = 0;
    for (size_t i = 0; i < n; i++) {
        changes += hf_health_upsert(t, &eps[i], mono, out);
    }
    uint64_t *hashes = xcalloc(ns, sizeof(*hashes));
    for (size_t i = 0; i < ns; i++) {
        hashes[i] = hf_hash_str(HF_HASH_INIT, services[i]);
    }
    qsort(hashes, ns, sizeof(*hashes), cmp_u64);
    for (size_t i = t->n; i-- > 0;) {
        const struct entry *x = &t->e[i];
        const char *name = x->ep.key.service;
        if (x->mark != t->gen && bsearch(&x->svc_hash, hashes, ns, sizeof(*hashes), cmp_u64) &&
            bsearch(&name, services, ns, sizeof(*services), cmp_name)) {
            remove_at(t, i);
            changes++;
        }
    }
    free(hashes);
    return changes;
}

int hf_health_verdict(hf_health_table *t, const hf_endpoint_key *k, int checker,
                      enum hf_health verdict, const char *reason, int64_t at_ms, int64_t mono,
                      hf_hc_decisions *out)
{
    long i = hf_health_find(t, k);
    if (i < 0 || checker < 0) {
        return HF_ENOTFOUND;
    }
    struct entry *x = &t->e[i];
    hf_hc_slot *s = slots_of(t, (size_t)i);
    int j = 0;
    while (j < x->n && s[j].checker != checker) {
        j++;
    }
    if (j == x->n) {
        return HF_ENOTFOUND;
    }
    snprintf(s[j].reason, sizeof(s[j].reason), "%s", reason ? reason : "");
    s[j].at = at_ms;
    if (s[j].verdict == verdict) {
        return 0;
    }
    s[j].verdict = verdict;
    if (verdict == HF_HEALTH_UNHEALTHY && x->first_bad == 0) {
        x->first_bad = mono > 0 ? mono : 1;
    }
    decide(t, (size_t)i, mono, out);
    return 1;
}

/* ---- reading ---- */

size_t hf_health_size(const hf_health_table *t)
{
    return t->n;
}

const hf_hc_endpoint *hf_health_endpoint(const hf_health_table *t, size_t i)
{
    return i < t->n ? &t->e[i].ep : NULL;
}

int hf_health_slots(const hf_health_table *t, size_t i, const hf_hc_slot **slots)
{
    if (i >= t->n) {
        *slots = NULL;
        return 0;
    }
    *slots = slots_of(t, i);
    return t->e[i].n;
}
