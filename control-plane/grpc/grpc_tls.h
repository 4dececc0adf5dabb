/*
 * Internals of the gRPC transport's TLS: server credentials that require and verify a client
 * certificate, with certificates that can be replaced while the server runs (gRPC core asks a
 * fetcher before each new handshake), and the peer identity of a call. Only grpc_transport.c
 * includes this header; the public part is in grpc_transport.h.
 */
#ifndef HF_GRPC_TLS_H
#define HF_GRPC_TLS_H

#include "grpc_transport.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

typedef struct hf_grpc_tls_state hf_grpc_tls_state;

/* Makes mutual-TLS server credentials from tls (PEM text, copied) and their reload state.
 * *creds is for grpc_server_add_http2_port (release it after). The state must outlive the
 * server (free it after grpc_server_destroy). */
hf_grpc_tls_state *hf__grpc_tls_new(const hf_grpc_tls *tls, grpc_server_credentials **creds);
/* Stages new PEM text for the next handshakes. Thread-safe. */
void hf__grpc_tls_stage(hf_grpc_tls_state *st, const hf_grpc_tls *tls);
void hf__grpc_tls_free(hf_grpc_tls_state *st);

/* The identity of call's peer; see hf_stream_identity. */
int hf__grpc_call_identity(grpc_call *call, char *buf, size_t len);

/* Routes gRPC core's own log lines to holdfast's log, and counts failed TLS handshakes (calling
 * fn(arg, why) for each, from a gRPC thread). Process-wide; fn may be NULL. */
void hf__grpc_tls_watch_log(void (*fn)(void *arg, const char *why), void *arg);

#endif
