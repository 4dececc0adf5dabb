/*
 * Reference-counted immutable byte buffers. An encoded xDS response is built once and shared by
 * every stream that sends it: each holder takes a reference, and the gRPC transport hands the
 * bytes to gRPC without copying, releasing its reference when gRPC is done with them.
 */
#ifndef HF_RBUF_H
#define HF_RBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hf_rbuf {
    atomic_uint refs;
    size_t len;
    uint8_t data[];
} hf_rbuf;

/* A new buffer of len bytes (uninitialised) with one reference. */
hf_rbuf *hf_rbuf_new(size_t len);
/* A new buffer holding a copy of data. */
hf_rbuf *hf_rbuf_copy(const void *data, size_t len);
hf_rbuf *hf_rbuf_ref(hf_rbuf *b);
/* Drops one reference; frees on the last. NULL is ignored. Thread-safe. */
void hf_rbuf_unref(hf_rbuf *b);

#endif
