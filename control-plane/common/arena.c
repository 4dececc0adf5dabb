/* Bump allocator; see arena.h. */
#include "arena.h"

#include "xalloc.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE (64 * 1024)

struct hf_arena_block {
    hf_arena_block *next;
    size_t used;
    size_t cap;
    alignas(max_align_t) unsigned char data[];
};

void *hf_arena_alloc(hf_arena *a, size_t n)
{
    size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    hf_arena_block *b = a->head;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;
        b = xmalloc(sizeof(*b) + cap);
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *hf_arena_strdup(hf_arena *a, const char *s)
{
    size_t len = strlen(s);
    char *p = hf_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    return p;
}

void hf_arena_destroy(hf_arena *a)
{
    hf_arena_block *b = a->head;
    while (b != NULL) {
        hf_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}
