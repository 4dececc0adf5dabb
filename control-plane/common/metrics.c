/*
 * Metrics registry; see metrics.h. A short list of series under one mutex: the number of series
 * is small (routes x statuses) and updates are cheap next to the work they measure.
 */
#include "metrics.h"

#include "buf.h"
#include "xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct series {
    struct series *next;
    enum kind kind;
    char *name;
    char *help;
    char *labels;
    double value; /* counter or gauge value; histogram sum */
    uint64_t count;
    uint64_t bucket_counts[NBUCKETS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series *head;
static struct series *tail;

/* Finds or creates a series; called with lock held. */
static struct series *get(enum kind kind, const char *name, const char *help, const char *labels)
{
    for (struct series *s = head; s; s = s->next) {
        if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0) {
            return s;
        }
    }
    struct series *s = xcalloc(1, sizeof(*s));
    s->kind = kind;
    s->name = xstrdup(name);
    s->help = xstrdup(help);
    s->labels = xstrdup(labels);
    if (tail) {
        tail->next = s;
    } else {
        head = s;
    }
    tail = s;
    return s;
}

void hf_counter_add(const char *name, const char *help, const char *labels, uint64_t v)
{
    pthread_mutex_lock(&lock);
    get(COUNTER, name, help, labels)->value += (double)v;
    pthread_mutex_unlock(&lock);
}

void hf_gauge_set(const char *name, const char *help, const char *labels, double v)
{
    pthread_mutex_lock(&lock);
    get(GAUGE, name, help, labels)->value = v;
    pthread_mutex_unlock(&lock);
}

void hf_histogram_observe(const char *name, const char *help, const char *labels, double seconds)
{
    pthread_mutex_lock(&lock);
    struct series *s = get(HISTOGRAM, name, help, labels);
    s->value += seconds;
    s->count++;
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (seconds <= buckets[i]) {
            s->bucket_counts[i]++;
        }
    }
    pthread_mutex_unlock(&lock);
}

static void render_histogram(hf_buf *b, const struct series *s)
{
    const char *sep = s->labels[0] ? "," : "";
    for (size_t i = 0; i < NBUCKETS; i++) {
        hf_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", s->name, s->labels, sep, buckets[i],
                      (unsigned long long)s->bucket_counts[i]);
    }
    hf_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", s->name, s->labels, sep,
                  (unsigned long long)s->count);
    hf_buf_printf(b, "%s_sum{%s} %.9f\n", s->name, s->labels, s->value);
    hf_buf_printf(b, "%s_count{%s} %llu\n", s->name, s->labels, (unsigned long long)s->count);
}

char *hf_metrics_render(void)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    hf_buf b = {0};
    pthread_mutex_lock(&lock);
    for (struct series *s = head; s; s = s->next) {
        /* Print HELP/TYPE once per metric name: at its first series. */
        int first = 1;
        for (struct series *p = head; p != s; p = p->next) {
            if (strcmp(p->name, s->name) == 0) {
                first = 0;
                break;
            }
        }
        if (first) {
            hf_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help, s->name,
                          type_names[s->kind]);
        }
        if (s->kind == HISTOGRAM) {
            render_histogram(&b, s);
        } else {
            hf_buf_printf(&b, "%s{%s} %.17g\n", s->name, s->labels, s->value);
        }
    }
    pthread_mutex_unlock(&lock);
    return hf_buf_take(&b);
}

void hf_metrics_free_all(void)
{
    pthread_mutex_lock(&lock);
    struct series *s = head;
    while (s) {
        struct series *next = s->next;
        free(s->name);
        free(s->help);
        free(s->labels);
        free(s);
        s = next;
    }
    head = tail = NULL;
    pthread_mutex_unlock(&lock);
}
