/* Line-oriented logging to stderr; see log.h. */
#include "log.h"

#include "timeutil.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int current_level = HF_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

int hf_log_parse_level(const char *name, enum hf_log_level *out)
{
    for (int i = 0; i <= HF_LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum hf_log_level)i;
            return 0;
        }
    }
    return -1;
}

void hf_log_set_level(enum hf_log_level level)
{
    atomic_store(&current_level, (int)level);
}

int hf_log_enabled(enum hf_log_level level)
{
    return (int)level <= atomic_load(&current_level);
}

void hf_log(enum hf_log_level level, const char *component, const char *fmt, ...)
{
    if (!hf_log_enabled(level)) {
        return;
    }
    char line[2048];
    char ts[32];
    hf_time_format(hf_now_ms(), ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s %s %s: ", ts, level_names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(line)) {
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    }
    va_end(ap);
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
