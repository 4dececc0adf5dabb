/*
 * API tokens: generation and hashing. A token is "hf_" followed by 64 hex digits (32 random
 * bytes from the kernel); only its SHA-256 (hex) is stored. libcrypto is used here only.
 */
#ifndef HF_TOKEN_H
#define HF_TOKEN_H

#include "hf_err.h"
#include "model.h"
#include "store.h"

#include <stddef.h>

#define HF_TOKEN_LEN 67      /* "hf_" + 64 hex digits */
#define HF_TOKEN_HASH_LEN 65 /* 64 hex digits + NUL */

/* Writes the SHA-256 of token as lowercase hex (HF_TOKEN_HASH_LEN bytes with NUL). */
void hf_token_hash(const char *token, char out[HF_TOKEN_HASH_LEN]);

/* Creates a token with role and label name, stores its hash, and writes the secret (shown once)
 * into secret (HF_TOKEN_LEN + 1 bytes). t receives the stored row. */
int hf_token_issue(hf_store *st, const char *actor, enum hf_role role, const char *name,
                   char secret[HF_TOKEN_LEN + 1], hf_token *t, hf_detail *d);

#endif
