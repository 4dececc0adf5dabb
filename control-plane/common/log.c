/* Line-oriented logging to stderr; see log.h. */
#include "log.h"

#include "timeutil.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 when it is not one.
 * Overlong forms, surrogates and code points past U+10FFFF are not well-formed. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2, min = 0x80, cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3, min = 0x800, cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    bool bad = cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
               (cp >= 0x80 && cp <= 0x9f); /* C1 controls: escaped like C0 */
    return bad ? 0 : len;
}

size_t hf_escape(const char *s, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(u + i, len - i);
        bool plain = n > 1 || (n == 1 && u[i] >= 0x20 && u[i] != 0x7f);
        size_t need = plain ? n : 4;
        if (o + need >= cap) {
            break;
        }
        if (plain) {
            memcpy(out + o, u + i, n);
            o += n;
            i += n;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[u[i] >> 4];
            out[o++] = hex[u[i] & 15];
            i++;
        }
    }
    out[o] = '\0';
    return o;
}

char *hf_escape_dup(const char *s)
{
    size_t len = strlen(s);
    char *out = xmalloc(len * 4 + 1);
    hf_escape(s, len, out, len * 4 + 1);
    return out;
}

void hf_log(enum hf_log_level level, const char *component, const char *fmt, ...)
{
    if (!hf_log_enabled(level)) {
        return;
    }
    char message[2048];
    char line[2048];
    char ts[32];
    hf_time_format(hf_now_ms(), ts, sizeof(ts));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(message) ? (size_t)m : sizeof(message) - 1;
    int n = snprintf(line, sizeof(line), "%s %s %s: ", ts, level_names[level], component);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    len += hf_escape(message, mlen, line + len, sizeof(line) - 1 - len);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
