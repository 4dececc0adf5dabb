/*
 * Allocation that never returns NULL: on out-of-memory the process logs and aborts, so callers
 * need no failure path for memory. Everything Holdfast allocates goes through these.
 */
#ifndef HF_XALLOC_H
#define HF_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Copies at most n bytes of s and terminates the copy. */
char *xstrndup(const char *s, size_t n);

#endif
