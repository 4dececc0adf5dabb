/*
 * Process-wide Prometheus metrics. A metric (family) has a name, a kind and label names; each
 * combination of label values is one series. Hot paths look a metric up once (a handle that
 * lives until exit), find a series by its values (a hashed lookup under a read lock) or keep
 * the series handle, and update it with atomics: no global mutex, no list walk per update.
 *
 * Label values are peer-controlled in places (an HTTP method, a deployment id), so they are
 * escaped for the text format (backslash, double quote, newline) and every metric has a cap on
 * its series: past it, new combinations share one series whose values are all "other"
 * (holdfast_metrics_series_overflow_total counts them). A series whose subject is gone (a
 * finished deployment) is retired. All functions are thread-safe.
 *
 * Lock order: a metric's rwlock may be taken while the registry's is held, never the other
 * way; callers may hold their own locks (store, xds, engine) when updating: no metrics lock is
 * held while calling out.
 */
#ifndef HF_METRICS_H
#define HF_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum hf_metric_kind { HF_METRIC_COUNTER, HF_METRIC_GAUGE, HF_METRIC_HISTOGRAM };

#define HF_METRIC_MAX_LABELS 4
#define HF_METRIC_DEFAULT_CAP 1000 /* series per metric unless a cap is given */

typedef struct hf_metric hf_metric; /* a family; lives until hf_metrics_free_all */
typedef struct hf_series hf_series; /* one series; lives until retired or hf_metrics_free_all */

/* The metric called name: registered on the first call, the same handle afterwards (a caller
 * keeps it). labels is a comma-separated list of label names ("" for none, at most
 * HF_METRIC_MAX_LABELS); max_series caps its series (0: HF_METRIC_DEFAULT_CAP). Histograms use
 * latency buckets 0.5 ms - 10 s. Aborts when name is registered with another kind or labels. */
hf_metric *hf_metric_get(enum hf_metric_kind kind, const char *name, const char *help,
                         const char *labels, size_t max_series);
/* The series with these label values (as many as the metric has label names; NULL for none),
 * created on first use; the overflow series past the cap. The handle is borrowed: valid until
 * the series is retired (only its owner retires it) or hf_metrics_free_all. */
hf_series *hf_metric_series(hf_metric *m, const char *const *values);

/* Adds v to a counter series. */
void hf_series_add(hf_series *s, uint64_t v);
/* Sets a gauge series. */
void hf_series_set(hf_series *s, double v);
/* Records one observation (seconds) into a histogram series. */
void hf_series_observe(hf_series *s, double seconds);

/* Retires (removes from the exposition and frees) every series of m for which keep(values,
 * arg) is false. The caller guarantees nobody else holds a handle to a series it retires. */
void hf_metric_retire_unless(hf_metric *m, bool (*keep)(const char *const *values, void *arg),
                             void *arg);
/* How many series m has now (the overflow series included). */
size_t hf_metric_series_count(hf_metric *m);

/* ---- the call-per-update API, kept for callers not yet holding handles ----
 * name and a label string the caller formatted already (e.g. `type="cds"`): the string is the
 * one "label" of the series and is printed as given, so it must hold trusted, escaped values
 * only. A hashed lookup under read locks, then an atomic update. */
void hf_counter_add(const char *name, const char *help, const char *labels, uint64_t v);
void hf_gauge_set(const char *name, const char *help, const char *labels, double v);
void hf_histogram_observe(const char *name, const char *help, const char *labels, double seconds);

/* Renders every series in the Prometheus text format (0.0.4). The caller frees the result. */
char *hf_metrics_render(void);
/* Frees every metric and series (at exit, so leak checkers stay quiet); no handle survives. */
void hf_metrics_free_all(void);

#endif
