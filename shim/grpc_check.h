/*
 * gRPC health checks for the shim's checker: grpc.health.v1.Health/Check with gRPC core's C
 * client, one channel per endpoint (reused between checks), calls completed on a thread of
 * their own and handed to the checker's loop through an eventfd. This file is the shim's one
 * seam to gRPC for checks (hds_client.c speaks HDS).
 */
#ifndef SHIM_GRPC_CHECK_H
#define SHIM_GRPC_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct sh_grpc sh_grpc;
typedef struct sh_grpc_channel sh_grpc_channel;

/* One finished check. */
typedef struct sh_grpc_result {
    void *token; /* as given to sh_grpc_check */
    int code;    /* the call's gRPC status code (0 = OK) */
    int serving; /* the answer's ServingStatus (1 = SERVING); -1 without an answer */
    char detail[48];
} sh_grpc_result;

/* Starts the completion thread. NULL when it cannot. */
sh_grpc *sh_grpc_new(void);
/* Cancels what is in flight, waits for it, stops the thread. Results not taken are lost. */
void sh_grpc_free(sh_grpc *g);
/* The descriptor that becomes readable when results are waiting (for epoll). */
int sh_grpc_fd(const sh_grpc *g);
/* A channel to address:port (IPv4 or IPv6 literal), connected lazily. */
sh_grpc_channel *sh_grpc_channel_new(sh_grpc *g, const char *address, uint32_t port);
/* Destroys a channel; calls still in flight on it end with an error result. */
void sh_grpc_channel_free(sh_grpc_channel *ch);
/* Starts one Check of service ("" = the server) with a deadline; its result carries token.
 * Returns 0, or -1 when the call could not start (no result will come). */
int sh_grpc_check(sh_grpc *g, sh_grpc_channel *ch, const char *service, uint32_t timeout_ms,
                  void *token);
/* Takes up to max finished results; returns how many. */
size_t sh_grpc_take(sh_grpc *g, sh_grpc_result *out, size_t max);
/* A short name of a gRPC status code ("UNAVAILABLE") and of a ServingStatus ("NOT_SERVING"). */
const char *sh_grpc_code_name(int code);
const char *sh_grpc_serving_name(int serving);

#endif
