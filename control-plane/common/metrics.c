/*
 * Metrics registry; see metrics.h. The registry is a hash of metrics by name plus a list in
 * registration order (the exposition order); each metric hashes its series by their label
 * values and lists them in creation order. Lookups take read locks; creating, retiring and
 * growing take the one metric's write lock. Values are atomics, updated without any lock
 * except on the call-per-update path, which holds the metric's read lock so that a
 * concurrent retire cannot free the series under it.
 */
#include "metrics.h"

#include "buf.h"
#include "hash.h"
#include "list.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))
#define VALUE_MAX 256 /* bytes of one label value kept; longer values are cut */
#define KEY_MAX (HF_METRIC_MAX_LABELS * (VALUE_MAX + 1))
#define REGISTRY_BUCKETS 256

struct hf_series {
    hf_list link;            /* on the metric's series list */
    struct hf_series *hnext; /* the metric's hash chain */
    uint64_t hash;
    char *key; /* the raw values, each NUL-terminated, back to back; owned */
    size_t key_len;
    const char *values[HF_METRIC_MAX_LABELS];     /* into key */
    char *rendered;                               /* `a="x",b="y"` escaped (raw: as given); owned */
    _Atomic uint64_t value;                       /* counter: the count; gauge: the double's bits */
    _Atomic uint64_t sum;                         /* histogram: the double's bits */
    _Atomic uint64_t bucket_counts[NBUCKETS + 1]; /* histogram, not cumulative; last: +Inf */
};

struct hf_metric {
    hf_list link;            /* on the registry's list */
    struct hf_metric *hnext; /* the registry's hash chain */
    enum hf_metric_kind kind;
    char *name;
    char *help;
    char *label_spec;                        /* as registered, to check later calls */
    char *label_names[HF_METRIC_MAX_LABELS]; /* owned */
    size_t nlabels;
    bool raw; /* the call-per-update API: one preformatted label string */
    size_t cap;
    pthread_rwlock_t lock; /* guards everything below */
    hf_list series;
    size_t nseries;
    struct hf_series **table; /* hash buckets; nbuckets is a power of two */
    size_t nbuckets;
    _Atomic uint64_t overflowed; /* lookups folded into the overflow series */
};

/* Lock order: registry_lock before a metric's lock. */
static pthread_rwlock_t registry_lock = PTHREAD_RWLOCK_INITIALIZER;
static hf_list registry = HF_LIST_INIT(registry);
static struct hf_metric *registry_table[REGISTRY_BUCKETS];

/* ---- atomics on doubles ---- */

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double double_of(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, bits_of(double_of(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- label values ---- */

/* Appends v as a label value of the text format: backslash, double quote and newline escaped. */
static void escape_value(hf_buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        switch (*p) {
        case '\\':
            hf_buf_puts(b, "\\\\");
            break;
        case '"':
            hf_buf_puts(b, "\\\"");
            break;
        case '\n':
            hf_buf_puts(b, "\\n");
            break;
        default:
            hf_buf_append(b, p, 1);
        }
    }
}

/* Joins the values (each cut to VALUE_MAX bytes) into key; returns the key's length. */
static size_t make_key(const struct hf_metric *m, const char *const *values, char *key)
{
    size_t len = 0;
    for (size_t i = 0; i < m->nlabels; i++) {
        size_t n = strnlen(values[i], VALUE_MAX);
        memcpy(key + len, values[i], n);
        len += n;
        key[len++] = '\0';
    }
    return len;
}

static struct hf_series *series_new(struct hf_metric *m, const char *key, size_t len, uint64_t hash)
{
    struct hf_series *s = xcalloc(1, sizeof(*s));
    s->hash = hash;
    s->key = xmalloc(len + 1);
    memcpy(s->key, key, len);
    s->key[len] = '\0';
    s->key_len = len;
    hf_buf b = {0};
    const char *v = s->key;
    for (size_t i = 0; i < m->nlabels; i++) {
        s->values[i] = v;
        if (m->raw) {
            hf_buf_puts(&b, v);
        } else {
            hf_buf_printf(&b, "%s%s=\"", i ? "," : "", m->label_names[i]);
            escape_value(&b, v);
            hf_buf_puts(&b, "\"");
        }
        v += strlen(v) + 1;
    }
    s->rendered = hf_buf_take(&b);
    hf_list_init(&s->link);
    return s;
}

static void series_free(struct hf_series *s)
{
    free(s->key);
    free(s->rendered);
    free(s);
}

/* ---- the series table of one metric (callers hold its lock) ---- */

static struct hf_series *table_find(const struct hf_metric *m, const char *key, size_t len,
                                    uint64_t hash)
{
    if (m->nbuckets == 0) {
        return NULL;
    }
    for (struct hf_series *s = m->table[hash & (m->nbuckets - 1)]; s; s = s->hnext) {
        if (s->hash == hash && s->key_len == len && memcmp(s->key, key, len) == 0) {
            return s;
        }
    }
    return NULL;
}

static void table_insert(struct hf_metric *m, struct hf_series *s)
{
    if (m->nseries >= m->nbuckets) {
        size_t n = m->nbuckets ? 2 * m->nbuckets : 16;
        struct hf_series **t = xcalloc(n, sizeof(*t));
        for (size_t i = 0; i < m->nbuckets; i++) {
            for (struct hf_series *p = m->table[i], *next; p; p = next) {
                next = p->hnext;
                p->hnext = t[p->hash & (n - 1)];
                t[p->hash & (n - 1)] = p;
            }
        }
        free(m->table);
        m->table = t;
        m->nbuckets = n;
    }
    struct hf_series **slot = &m->table[s->hash & (m->nbuckets - 1)];
    s->hnext = *slot;
    *slot = s;
    hf_list_insert_tail(&m->series, &s->link);
    m->nseries++;
}

static void table_remove(struct hf_metric *m, struct hf_series *s)
{
    struct hf_series **p = &m->table[s->hash & (m->nbuckets - 1)];
    while (*p != s) {
        p = &(*p)->hnext;
    }
    *p = s->hnext;
    hf_list_remove(&s->link);
    m->nseries--;
}

/* The series for key, created (or the overflow series) when missing; m's write lock held. */
static struct hf_series *find_or_add(struct hf_metric *m, const char *key, size_t len,
                                     uint64_t hash)
{
    struct hf_series *s = table_find(m, key, len, hash);
    if (s != NULL) {
        return s;
    }
    if (m->nseries < m->cap) {
        s = series_new(m, key, len, hash);
        table_insert(m, s);
        return s;
    }
    /* Past the cap: the one series whose values are all "other" (a raw metric: no labels),
     * which may take the cap's one place over. */
    atomic_fetch_add_explicit(&m->overflowed, 1, memory_order_relaxed);
    char other[KEY_MAX];
    size_t n = 0;
    for (size_t i = 0; i < m->nlabels; i++) {
        if (!m->raw) {
            memcpy(other + n, "other", 5);
            n += 5;
        }
        other[n++] = '\0';
    }
    uint64_t h = hf_hash_update(HF_HASH_INIT, other, n);
    s = table_find(m, other, n, h);
    if (s == NULL) {
        s = series_new(m, other, n, h);
        table_insert(m, s);
    }
    return s;
}

/* ---- metrics ---- */

static void split_labels(struct hf_metric *m, const char *spec)
{
    const char *p = spec;
    while (*p) {
        if (m->nlabels == HF_METRIC_MAX_LABELS) {
            abort(); /* a programming error: more label names than a series can hold */
        }
        size_t n = strcspn(p, ",");
        m->label_names[m->nlabels++] = xstrndup(p, n);
        p += n + (p[n] == ',');
    }
}

static struct hf_metric *registry_find(const char *name, uint64_t hash)
{
    for (struct hf_metric *m = registry_table[hash % REGISTRY_BUCKETS]; m; m = m->hnext) {
        if (strcmp(m->name, name) == 0) {
            return m;
        }
    }
    return NULL;
}

static struct hf_metric *metric_get(enum hf_metric_kind kind, const char *name, const char *help,
                                    const char *labels, size_t cap, bool raw)
{
    uint64_t hash = hf_hash_str(HF_HASH_INIT, name);
    pthread_rwlock_rdlock(&registry_lock);
    struct hf_metric *m = registry_find(name, hash);
    pthread_rwlock_unlock(&registry_lock);
    if (m == NULL) {
        pthread_rwlock_wrlock(&registry_lock);
        m = registry_find(name, hash);
        if (m == NULL) {
            m = xcalloc(1, sizeof(*m));
            m->kind = kind;
            m->name = xstrdup(name);
            m->help = xstrdup(help);
            m->label_spec = xstrdup(labels);
            m->raw = raw;
            m->cap = cap ? cap : HF_METRIC_DEFAULT_CAP;
            if (raw) {
                m->label_names[0] = xstrdup("");
                m->nlabels = 1;
            } else {
                split_labels(m, labels);
            }
            pthread_rwlock_init(&m->lock, NULL);
            hf_list_init(&m->series);
            m->hnext = registry_table[hash % REGISTRY_BUCKETS];
            registry_table[hash % REGISTRY_BUCKETS] = m;
            hf_list_insert_tail(&registry, &m->link);
        }
        pthread_rwlock_unlock(&registry_lock);
    }
    if (m->kind != kind || m->raw != raw || (!raw && strcmp(m->label_spec, labels) != 0)) {
        abort(); /* a programming error: one name, two shapes */
    }
    return m;
}

hf_metric *hf_metric_get(enum hf_metric_kind kind, const char *name, const char *help,
                         const char *labels, size_t max_series)
{
    return metric_get(kind, name, help, labels, max_series, false);
}

hf_series *hf_metric_series(hf_metric *m, const char *const *values)
{
    char key[KEY_MAX];
    size_t len = make_key(m, values, key);
    uint64_t hash = hf_hash_update(HF_HASH_INIT, key, len);
    pthread_rwlock_rdlock(&m->lock);
    struct hf_series *s = table_find(m, key, len, hash);
    pthread_rwlock_unlock(&m->lock);
    if (s == NULL) {
        pthread_rwlock_wrlock(&m->lock);
        s = find_or_add(m, key, len, hash);
        pthread_rwlock_unlock(&m->lock);
    }
    return s;
}

size_t hf_metric_series_count(hf_metric *m)
{
    pthread_rwlock_rdlock(&m->lock);
    size_t n = m->nseries;
    pthread_rwlock_unlock(&m->lock);
    return n;
}

void hf_metric_retire_unless(hf_metric *m, bool (*keep)(const char *const *values, void *arg),
                             void *arg)
{
    pthread_rwlock_wrlock(&m->lock);
    hf_list *it, *tmp;
    hf_list_foreach_safe(it, tmp, &m->series)
    {
        struct hf_series *s = hf_list_entry(it, struct hf_series, link);
        if (!keep(s->values, arg)) {
            table_remove(m, s);
            series_free(s);
        }
    }
    pthread_rwlock_unlock(&m->lock);
}

/* ---- updates ---- */

void hf_series_add(hf_series *s, uint64_t v)
{
    atomic_fetch_add_explicit(&s->value, v, memory_order_relaxed);
}

void hf_series_set(hf_series *s, double v)
{
    atomic_store_explicit(&s->value, bits_of(v), memory_order_relaxed);
}

void hf_series_observe(hf_series *s, double seconds)
{
    size_t i = 0;
    while (i < NBUCKETS && seconds > buckets[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&s->bucket_counts[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, seconds);
}

/* The call-per-update path: the series is found and updated under the metric's read lock. */
static void raw_update(enum hf_metric_kind kind, const char *name, const char *help,
                       const char *labels, uint64_t n, double v)
{
    struct hf_metric *m = metric_get(kind, name, help, "", 0, true);
    size_t len = strnlen(labels, VALUE_MAX);
    char key[VALUE_MAX + 1];
    memcpy(key, labels, len);
    key[len++] = '\0';
    uint64_t hash = hf_hash_update(HF_HASH_INIT, key, len);
    pthread_rwlock_rdlock(&m->lock);
    struct hf_series *s = table_find(m, key, len, hash);
    if (s == NULL) {
        pthread_rwlock_unlock(&m->lock);
        pthread_rwlock_wrlock(&m->lock);
        s = find_or_add(m, key, len, hash);
    }
    if (kind == HF_METRIC_COUNTER) {
        hf_series_add(s, n);
    } else if (kind == HF_METRIC_GAUGE) {
        hf_series_set(s, v);
    } else {
        hf_series_observe(s, v);
    }
    pthread_rwlock_unlock(&m->lock);
}

void hf_counter_add(const char *name, const char *help, const char *labels, uint64_t v)
{
    raw_update(HF_METRIC_COUNTER, name, help, labels, v, 0);
}

void hf_gauge_set(const char *name, const char *help, const char *labels, double v)
{
    raw_update(HF_METRIC_GAUGE, name, help, labels, 0, v);
}

void hf_histogram_observe(const char *name, const char *help, const char *labels, double seconds)
{
    raw_update(HF_METRIC_HISTOGRAM, name, help, labels, 0, seconds);
}

/* ---- exposition ---- */

static void render_histogram(hf_buf *b, const struct hf_metric *m, const struct hf_series *s)
{
    const char *sep = s->rendered[0] ? "," : "";
    uint64_t total = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        total += atomic_load_explicit(&s->bucket_counts[i], memory_order_relaxed);
        hf_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", m->name, s->rendered, sep, buckets[i],
                      (unsigned long long)total);
    }
    total += atomic_load_explicit(&s->bucket_counts[NBUCKETS], memory_order_relaxed);
    hf_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", m->name, s->rendered, sep,
                  (unsigned long long)total);
    hf_buf_printf(b, "%s_sum{%s} %.9f\n", m->name, s->rendered,
                  double_of(atomic_load_explicit(&s->sum, memory_order_relaxed)));
    hf_buf_printf(b, "%s_count{%s} %llu\n", m->name, s->rendered, (unsigned long long)total);
}

static void render_metric(hf_buf *b, struct hf_metric *m)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    pthread_rwlock_rdlock(&m->lock);
    if (!hf_list_empty(&m->series)) {
        hf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                      type_names[m->kind]);
    }
    hf_list *it;
    hf_list_foreach(it, &m->series)
    {
        const struct hf_series *s = hf_list_entry(it, struct hf_series, link);
        uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        if (m->kind == HF_METRIC_HISTOGRAM) {
            render_histogram(b, m, s);
        } else if (m->kind == HF_METRIC_COUNTER) {
            hf_buf_printf(b, "%s{%s} %llu\n", m->name, s->rendered, (unsigned long long)v);
        } else {
            hf_buf_printf(b, "%s{%s} %.17g\n", m->name, s->rendered, double_of(v));
        }
    }
    pthread_rwlock_unlock(&m->lock);
}

char *hf_metrics_render(void)
{
    hf_buf b = {0};
    hf_buf over = {0};
    pthread_rwlock_rdlock(&registry_lock);
    hf_list *it;
    hf_list_foreach(it, &registry)
    {
        struct hf_metric *m = hf_list_entry(it, struct hf_metric, link);
        render_metric(&b, m);
        uint64_t n = atomic_load_explicit(&m->overflowed, memory_order_relaxed);
        if (n != 0) {
            hf_buf_printf(&over, "holdfast_metrics_series_overflow_total{metric=\"%s\"} %llu\n",
                          m->name, (unsigned long long)n);
        }
    }
    pthread_rwlock_unlock(&registry_lock);
    if (over.len != 0) {
        hf_buf_puts(&b, "# HELP holdfast_metrics_series_overflow_total Updates folded into a "
                        "metric's \"other\" series because it reached its cap on series.\n"
                        "# TYPE holdfast_metrics_series_overflow_total counter\n");
        hf_buf_append(&b, over.data, over.len);
    }
    hf_buf_destroy(&over);
    return hf_buf_take(&b);
}

void hf_metrics_free_all(void)
{
    pthread_rwlock_wrlock(&registry_lock);
    hf_list *it, *tmp;
    hf_list_foreach_safe(it, tmp, &registry)
    {
        struct hf_metric *m = hf_list_entry(it, struct hf_metric, link);
        hf_list *sit, *stmp;
        hf_list_foreach_safe(sit, stmp, &m->series)
        {
            series_free(hf_list_entry(sit, struct hf_series, link));
        }
        for (size_t i = 0; i < m->nlabels; i++) {
            free(m->label_names[i]);
        }
        pthread_rwlock_destroy(&m->lock);
        free(m->table);
        free(m->name);
        free(m->help);
        free(m->label_spec);
        free(m);
    }
    hf_list_init(&registry);
    memset(registry_table, 0, sizeof(registry_table));
    pthread_rwlock_unlock(&registry_lock);
}
