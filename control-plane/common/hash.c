/* FNV-1a 64; see hash.h. */
#include "hash.h"

#include <stdio.h>
#include <string.h>

uint64_t hf_hash_update(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t hf_hash_str(uint64_t h, const char *s)
{
    return hf_hash_update(h, s, strlen(s) + 1);
}

void hf_hash_hex(uint64_t h, char out[HF_VERSION_LEN])
{
    snprintf(out, HF_VERSION_LEN, "%016llx", (unsigned long long)h);
}
