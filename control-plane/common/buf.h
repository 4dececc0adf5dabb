/* A growable byte buffer for building text (JSON, metrics, SQL fragments). */
#ifndef HF_BUF_H
#define HF_BUF_H

#include <stddef.h>

typedef struct hf_buf {
    char *data; /* NUL-terminated when len > 0 or after any append; owned */
    size_t len;
    size_t cap;
} hf_buf;

/* A zeroed hf_buf is valid and empty. hf_buf_destroy frees its memory. */
void hf_buf_destroy(hf_buf *b);
void hf_buf_append(hf_buf *b, const void *data, size_t len);
void hf_buf_puts(hf_buf *b, const char *s);
void hf_buf_printf(hf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the contents to the caller (who frees it) and leaves b empty. Never NULL. */
char *hf_buf_take(hf_buf *b);

#endif
