/* Token generation and hashing; see token.h. */
#include "token.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void hf_token_hash(const char *token, char out[HF_TOKEN_HASH_LEN])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), digest);
    to_hex(digest, sizeof(digest), out);
}

int hf_token_issue(hf_store *st, const char *actor, enum hf_role role, const char *name,
                   char secret[HF_TOKEN_LEN + 1], hf_token *t, hf_detail *d)
{
    unsigned char raw[32];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        return hf_fail(d, HF_EIO, "", "cannot read random bytes for a token");
    }
    char token[HF_TOKEN_LEN + 1];
    memcpy(token, "hf_", 3);
    to_hex(raw, sizeof(raw), token + 3);
    char hash[HF_TOKEN_HASH_LEN];
    hf_token_hash(token, hash);

    hf_token row = {.role = role};
    snprintf(row.name, sizeof(row.name), "%s", name ? name : "");
    int rc = store_token_create(st, actor, hash, &row, d);
    if (rc == HF_OK) {
        memcpy(secret, token, sizeof(token));
        *t = row;
    }
    return rc;
}
