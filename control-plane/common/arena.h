/*
 * A bump allocator for short-lived object graphs (protobuf-c messages built to be packed):
 * allocate freely, free everything at once. Not thread-safe; one arena per builder.
 */
#ifndef HF_ARENA_H
#define HF_ARENA_H

#include <stddef.h>

typedef struct hf_arena_block hf_arena_block;

typedef struct hf_arena {
    hf_arena_block *head;
} hf_arena;

/* Zeroed memory for n bytes, aligned for any type; lives until hf_arena_destroy. */
void *hf_arena_alloc(hf_arena *a, size_t n);
char *hf_arena_strdup(hf_arena *a, const char *s);
/* Frees every allocation; the arena is then empty and reusable. */
void hf_arena_destroy(hf_arena *a);

#define HF_ANEW(a, T) ((T *)hf_arena_alloc((a), sizeof(T)))
#define HF_ANEW_N(a, T, n) ((T *)hf_arena_alloc((a), sizeof(T) * (n)))

#endif
