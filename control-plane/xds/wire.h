/*
 * Minimal protobuf wire-format writing, for assembling responses from pieces that are encoded
 * once and shared: a message is a concatenation of fields, so a shared body plus a per-stream
 * nonce field is still one valid message.
 */
#ifndef HF_WIRE_H
#define HF_WIRE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

void wire_put_varint(hf_buf *b, uint64_t v);
/* A length-delimited field (bytes, string, embedded message). */
void wire_put_bytes(hf_buf *b, uint32_t field, const void *data, size_t len);
void wire_put_string(hf_buf *b, uint32_t field, const char *s);

#endif
