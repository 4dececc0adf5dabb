/*
 * Logging: one line per event on stderr, "2026-11-28T01:02:03.456Z level component: message".
 * Thread-safe (each line is written with a single write). The level is process-wide.
 */
#ifndef HF_LOG_H
#define HF_LOG_H

enum hf_log_level { HF_LOG_ERROR = 0, HF_LOG_WARN, HF_LOG_INFO, HF_LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug"; returns 0 and sets *out, or -1. */
int hf_log_parse_level(const char *name, enum hf_log_level *out);
void hf_log_set_level(enum hf_log_level level);
int hf_log_enabled(enum hf_log_level level);
void hf_log(enum hf_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define hf_error(c, ...) hf_log(HF_LOG_ERROR, c, __VA_ARGS__)
#define hf_warn(c, ...) hf_log(HF_LOG_WARN, c, __VA_ARGS__)
#define hf_info(c, ...) hf_log(HF_LOG_INFO, c, __VA_ARGS__)
#define hf_debug(c, ...) hf_log(HF_LOG_DEBUG, c, __VA_ARGS__)

#endif
