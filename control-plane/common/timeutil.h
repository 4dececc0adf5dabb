/* Wall-clock and monotonic time helpers. Stored times are milliseconds since the Unix epoch. */
#ifndef HF_TIMEUTIL_H
#define HF_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t hf_now_ms(void);
/* Monotonic clock in nanoseconds, for measuring durations. */
uint64_t hf_mono_ns(void);
/* Formats ms-since-epoch as RFC 3339 UTC with milliseconds, e.g. 2026-11-28T01:02:03.456Z. */
void hf_time_format(int64_t ms, char *buf, size_t len);

#endif
