/*
 * protobuf-c messages as JSON text, by the proto3 JSON mapping, driven by protobuf-c's
 * descriptors: lowerCamelCase names, default values left out, 64-bit integers as strings, enums
 * by name, bytes in base64, the well-known types (Duration "1.5s", Timestamp, wrappers, Struct,
 * Value, ListValue, Empty) in their special forms, and Any unpacked by type URL through a
 * registry of the types holdfast sends (an unknown type: {"@type", "value" (base64)}).
 * Used for the per-proxy configuration dump (GET /api/v1/proxies/{node_id}/config).
 */
#ifndef HF_XDS_PBJSON_H
#define HF_XDS_PBJSON_H

#include "buf.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Appends m as a JSON value to out. Never fails (bounded recursion: deeper than 64 levels
 * writes null). */
void pbjson_message(hf_buf *out, const ProtobufCMessage *m);

/* Appends the JSON of a serialized google.protobuf.Any; returns 0, or -1 (nothing appended)
 * when the bytes do not decode. */
int pbjson_any_bytes(hf_buf *out, const uint8_t *data, size_t len);

/* Appends s as a JSON string literal (quotes and escapes). */
void pbjson_string(hf_buf *out, const char *s, size_t len);

#endif
