/*
 * A stable 64-bit content hash (FNV-1a) for xDS versions: the same bytes give the same version
 * on every run and every machine, so a proxy that reconnects after a control-plane restart with
 * the current version is not pushed again.
 */
#ifndef HF_HASH_H
#define HF_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HF_HASH_INIT 0xcbf29ce484222325ull
#define HF_VERSION_LEN 17 /* 16 hex digits + NUL */

/* Continues hash h over len bytes. Start with HF_HASH_INIT. */
uint64_t hf_hash_update(uint64_t h, const void *data, size_t len);
/* Continues h over a string including its terminating NUL (so "a","b" differs from "ab"). */
uint64_t hf_hash_str(uint64_t h, const char *s);
/* Writes h as 16 lowercase hex digits. */
void hf_hash_hex(uint64_t h, char out[HF_VERSION_LEN]);

#endif
