/*
 * The one endpoint key of Holdfast: (service, address, port), and the one way to write and read
 * an endpoint's address and port as text: "192.0.2.7:8080" or "[2001:db8::7]:8080" (IPv6 always
 * in brackets). The health module, the HDS adapter, the shim and the store all use these, so an
 * endpoint is spelled the same in logs, audit events, REST paths and restart batches.
 */
#ifndef HF_ENDPOINT_KEY_H
#define HF_ENDPOINT_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HF_KEY_SERVICE_MAX 64 /* the same as HF_NAME_MAX */
#define HF_KEY_ADDR_MAX 46    /* INET6_ADDRSTRLEN, the same as HF_ADDR_MAX */
#define HF_ADDR_PORT_MAX 56   /* "[v6]:65535" plus NUL */

typedef struct hf_endpoint_key {
    char service[HF_KEY_SERVICE_MAX]; /* may be empty where the service is implied */
    char address[HF_KEY_ADDR_MAX];    /* an IPv4 or IPv6 literal */
    uint32_t port;
} hf_endpoint_key;

/* Fills k from its parts, truncating over-long strings (callers validate before). */
void hf_endpoint_key_set(hf_endpoint_key *k, const char *service, const char *address,
                         uint32_t port);
/* A well-mixed 64-bit hash of k, stable across runs (for hash tables; low bits are usable). */
uint64_t hf_endpoint_key_hash(const hf_endpoint_key *k);
/* True when a and b name the same endpoint. */
bool hf_endpoint_key_eq(const hf_endpoint_key *a, const hf_endpoint_key *b);

/* Writes "address:port", IPv6 in brackets, into buf (always NUL-terminated when len > 0).
 * Returns the length it needed, as snprintf. */
int hf_addr_port_format(const char *address, uint32_t port, char *buf, size_t len);
/* Reads "address:port" or "[v6]:port" (port 1-65535) into address (alen bytes) and *port.
 * An IPv6 literal must be in brackets. Returns 0, or HF_EINVAL (-1) and writes nothing. */
int hf_addr_port_parse(const char *text, char *address, size_t alen, uint32_t *port);

#endif
