/* The endpoint key and the address:port formatter/parser; see endpoint_key.h. */
#include "endpoint_key.h"

#include "hash.h"
#include "hf_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hf_endpoint_key_set(hf_endpoint_key *k, const char *service, const char *address,
                         uint32_t port)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->service, sizeof(k->service), "%s", service ? service : "");
    snprintf(k->address, sizeof(k->address), "%s", address ? address : "");
    k->port = port;
}

uint64_t hf_endpoint_key_hash(const hf_endpoint_key *k)
{
    uint64_t h = hf_hash_str(HF_HASH_INIT, k->service);
    h = hf_hash_str(h, k->address);
    h = hf_hash_update(h, &k->port, sizeof(k->port));
    /* a finaliser (splitmix64) so that every bit depends on every input byte */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

bool hf_endpoint_key_eq(const hf_endpoint_key *a, const hf_endpoint_key *b)
{
    return a->port == b->port && strcmp(a->address, b->address) == 0 &&
           strcmp(a->service, b->service) == 0;
}

int hf_addr_port_format(const char *address, uint32_t port, char *buf, size_t len)
{
    if (strchr(address, ':') != NULL) {
        return snprintf(buf, len, "[%s]:%u", address, port);
    }
    return snprintf(buf, len, "%s:%u", address, port);
}

int hf_addr_port_parse(const char *text, char *address, size_t alen, uint32_t *port)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) {
        return HF_EINVAL;
    }
    const char *start = text;
    const char *end = colon;
    if (text[0] == '[') {
        if (colon[-1] != ']') {
            return HF_EINVAL;
        }
        start = text + 1;
        end = colon - 1;
    } else if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
        return HF_EINVAL; /* an IPv6 literal without brackets: the port is ambiguous */
    }
    size_t n = (size_t)(end - start);
    if (n == 0 || n >= alen || memchr(start, ']', n) != NULL || memchr(start, '[', n) != NULL) {
        return HF_EINVAL;
    }
    char *stop;
    unsigned long p = strtoul(colon + 1, &stop, 10);
    if (*stop != '\0' || colon[1] < '0' || colon[1] > '9' || p < 1 || p > 65535) {
        return HF_EINVAL;
    }
    memcpy(address, start, n);
    address[n] = '\0';
    *port = (uint32_t)p;
    return HF_OK;
}
