/*
 * The gRPC transport: a gRPC server on gRPC core's C API serving bidirectional streams to
 * protocol handlers (ADS, HDS, LRS) that never see a gRPC type. This folder is the only place
 * that includes <grpc/...>.
 *
 * Threads: one completion queue per worker thread, each driven by grpc_completion_queue_next;
 * a call stays on the queue it was accepted on, so every callback for one stream runs on one
 * thread, one at a time. Callbacks must not block (no disk, no SQLite).
 */
#ifndef HF_GRPC_TRANSPORT_H
#define HF_GRPC_TRANSPORT_H

#include "hf_err.h"
#include "rbuf.h"

#include <stddef.h>
#include <stdint.h>

/* gRPC status codes used by the handlers. */
enum hf_grpc_status {
    HF_GRPC_OK = 0,
    HF_GRPC_INVALID_ARGUMENT = 3,
    HF_GRPC_PERMISSION_DENIED = 7,
    HF_GRPC_RESOURCE_EXHAUSTED = 8,
    HF_GRPC_FAILED_PRECONDITION = 9,
    HF_GRPC_ABORTED = 10,
    HF_GRPC_UNIMPLEMENTED = 12,
    HF_GRPC_INTERNAL = 13,
    HF_GRPC_UNAVAILABLE = 14,
};

typedef struct hf_grpc_server hf_grpc_server;
typedef struct hf_stream hf_stream;

/* What a protocol does with its streams. All callbacks run on the stream's queue thread. */
typedef struct hf_stream_handler {
    /* A stream was accepted from peer ("ipv4:127.0.0.1:5555"). Returns the handler's per-stream
     * state, passed to the other callbacks. */
    void *(*open)(void *ctx, hf_stream *s, const char *peer);
    /* One message arrived; data is valid during the call only. */
    void (*message)(void *user, const uint8_t *data, size_t len);
    /* The send started by hf_stream_send completed (read by the peer, or failed). */
    void (*sent)(void *user);
    /* The stream is over. The last callback for user; once it returns, s is invalid and no
     * thread may pass it to hf_stream_send, hf_stream_wake or hf_stream_finish any more. */
    void (*closed)(void *user);
    /* Requested by hf_stream_wake: runs on the stream's own thread. */
    void (*wake)(void *user);
} hf_stream_handler;

typedef struct hf_grpc_method {
    const char *path; /* "/envoy.service.discovery.v3.AggregatedDiscoveryService/..." */
    const hf_stream_handler *handler;
    void *ctx;
} hf_grpc_method;

/* Mutual TLS: the server's certificate chain and key, and the CA that client certificates must
 * be signed by (all PEM text, borrowed). */
typedef struct hf_grpc_tls {
    const char *cert_pem;
    const char *key_pem;
    const char *client_ca_pem;
} hf_grpc_tls;

typedef struct hf_grpc_config {
    const char *address;  /* "127.0.0.1:18000"; port 0 picks one */
    int threads;          /* worker threads (and completion queues), at least 1 */
    size_t max_message;   /* largest message accepted; larger ones end the stream */
    long max_connections; /* connections held at once (0: no cap); more are closed at accept */
    const hf_grpc_method *methods;
    size_t n_methods;
    /* NULL: address is plaintext. Otherwise address requires a client certificate signed by
     * tls->client_ca_pem (handshakes without one fail). */
    const hf_grpc_tls *tls;
    /* NULL, or a second, plaintext address served alongside (for on-host clients). */
    const char *local_address;
    /* Called (from a gRPC thread, quickly) with gRPC's reason when a TLS handshake fails. */
    void (*on_tls_failure)(void *arg, const char *why);
    void *tls_failure_arg;
} hf_grpc_config;

/* Starts the server. cfg->methods must outlive it. *port receives the bound port. */
int hf_grpc_start(const hf_grpc_config *cfg, hf_grpc_server **out, int *port, hf_detail *d);
/* The bound port of cfg->local_address, or 0 without one. */
int hf_grpc_local_port(const hf_grpc_server *srv);
/* Replaces the certificates used by new TLS handshakes (established connections keep theirs).
 * The caller has checked that the key matches the certificate. HF_EINVAL when the server was
 * started without TLS. Thread-safe. */
int hf_grpc_tls_update(hf_grpc_server *srv, const hf_grpc_tls *tls);
/* Stops accepting, ends every stream (their closed callbacks run), joins the threads, frees. */
void hf_grpc_stop(hf_grpc_server *srv);

/* Starts sending the concatenation of parts as one message, without copying (the transport
 * takes its own references). Returns HF_OK, HF_EBUSY while a previous send is in flight (wait
 * for sent), or HF_ECLOSED. Thread-safe. */
int hf_stream_send(hf_stream *s, hf_rbuf *const *parts, size_t n);
/* Asks for the handler's wake callback to run on the stream's own queue thread (soon; wake-ups
 * requested before it runs are merged). Lets another thread hand work to the stream's thread
 * instead of contending with it. Thread-safe. */
void hf_stream_wake(hf_stream *s);
/* Ends the stream with a status and message for the client. Thread-safe; later calls are
 * ignored. */
void hf_stream_finish(hf_stream *s, enum hf_grpc_status status, const char *message);

/* The identity of the stream's peer. HF_OK on a TLS connection: buf receives the URI SAN of
 * the (verified) client certificate, "" when it has none. HF_EINVAL when the certificate has
 * several URI SANs (buf says so). HF_ENOTFOUND on a plaintext connection. Thread-safe. */
int hf_stream_identity(hf_stream *s, char *buf, size_t len);

#endif
