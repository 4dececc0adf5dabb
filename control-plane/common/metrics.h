/*
 * Process-wide Prometheus metrics: counters, gauges and histograms identified by a metric name
 * plus a label string (already formatted, e.g. `route="/api/v1/services",status="201"`).
 * All functions are thread-safe. Series are created on first use and live until exit.
 */
#ifndef HF_METRICS_H
#define HF_METRICS_H

#include <stdint.h>

/* Adds v to a counter. help is used when the metric is first seen. */
void hf_counter_add(const char *name, const char *help, const char *labels, uint64_t v);
/* Sets a gauge. */
void hf_gauge_set(const char *name, const char *help, const char *labels, double v);
/* Records one observation (in seconds) into a histogram with latency buckets 0.5 ms - 10 s. */
void hf_histogram_observe(const char *name, const char *help, const char *labels, double seconds);
/* Renders every series in the Prometheus text format (0.0.4). The caller frees the result. */
char *hf_metrics_render(void);
/* Frees every series (at exit, so leak checkers stay quiet). */
void hf_metrics_free_all(void);

#endif
