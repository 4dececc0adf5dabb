/*
 * Logging: one line per event on stderr, "2026-11-28T01:02:03.456Z level component: message".
 * Thread-safe (each line is written with a single write). The level is process-wide. The
 * message is escaped (hf_escape): one call writes exactly one line, whatever a peer sent.
 */
#ifndef HF_LOG_H
#define HF_LOG_H

#include <stddef.h>

enum hf_log_level { HF_LOG_ERROR = 0, HF_LOG_WARN, HF_LOG_INFO, HF_LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug"; returns 0 and sets *out, or -1. */
int hf_log_parse_level(const char *name, enum hf_log_level *out);
void hf_log_set_level(enum hf_log_level level);
int hf_log_enabled(enum hf_log_level level);
void hf_log(enum hf_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies the len bytes of s into out (cap > 0 bytes, always NUL-terminated, cut at a whole
 * character) with every byte a peer could use to forge or garble a log line or a display
 * escaped as \xNN: control characters (newlines included), DEL, C1 controls and bytes that are
 * not well-formed UTF-8. Returns the length written. hf_log applies it to every message, so
 * peer-supplied strings (URLs, node ids, NACK messages) can be passed to it as they are. */
size_t hf_escape(const char *s, size_t len, char *out, size_t cap);
/* hf_escape of the NUL-terminated s into a new string (xmalloc; the caller frees). */
char *hf_escape_dup(const char *s);

#define hf_error(c, ...) hf_log(HF_LOG_ERROR, c, __VA_ARGS__)
#define hf_warn(c, ...) hf_log(HF_LOG_WARN, c, __VA_ARGS__)
#define hf_info(c, ...) hf_log(HF_LOG_INFO, c, __VA_ARGS__)
#define hf_debug(c, ...) hf_log(HF_LOG_DEBUG, c, __VA_ARGS__)

#endif
