/*
 * The cap on xDS connections (issue 14 item 3), inside the gRPC transport.
 *
 * gRPC core 1.51 stops accepting on a listener for good after one failed accept (EMFILE: "Failed
 * accept4"), so the process must never run out of descriptors because of xDS peers. Core 1.51 has
 * no channel argument for a connection cap; it does hand every accepted descriptor to a socket
 * mutator (GRPC_ARG_SOCKET_MUTATOR) before it builds the connection. Ours counts the connections
 * still open and, at the cap, shuts the new one down at once (gRPC then closes it) instead of
 * refusing it through the mutator's result, which would also stop the listener.
 *
 * The mutator's layout is core's internal ABI (socket_mutator.h of 1.51: a vtable pointer and a
 * gpr_refcount; the vtable holds mutate_fd, compare, destroy, mutate_fd_2); the functions that
 * initialise it and turn it into a channel argument are exported C++ symbols. They are looked up
 * weakly: without them the cap is off and a warning says so.
 */
#ifndef HF_GRPC_CONNCAP_H
#define HF_GRPC_CONNCAP_H

#include <grpc/grpc.h>
#include <stdbool.h>

typedef struct hf_conncap hf_conncap;

/* A cap of max connections (max > 0); NULL when max <= 0 or core lacks the mutator symbols. */
hf_conncap *hf__conncap_new(long max);
/* The channel argument that installs the mutator; valid until grpc_server_create returns. */
grpc_arg hf__conncap_arg(hf_conncap *c);
/* Frees the cap once no server uses it any more (after grpc_shutdown_blocking). NULL is fine. */
void hf__conncap_free(hf_conncap *c);

#endif
