/*
 * The xDS listener with a connection cap (issue 14 item 3), inside the gRPC transport.
 *
 * gRPC core 1.51 stops accepting on its own listener for good after one failed accept (EMFILE:
 * "Failed accept4"), and it has no channel argument that caps connections. So for plain
 * (insecure) xDS we accept ourselves, on one thread: a connection past the cap is closed at once,
 * a failed accept (out of descriptors) is retried after a pause, and each admitted connection is
 * handed to the server with grpc_server_add_channel_from_fd. Connections are counted as long as
 * their descriptor still names the socket accepted (gRPC closes it when the peer goes away).
 */
#ifndef HF_GRPC_CONNCAP_H
#define HF_GRPC_CONNCAP_H

#include "hf_err.h"

#include <grpc/grpc.h>
#include <stddef.h>

typedef struct hf_conncap hf_conncap;

/* Binds and listens on address ("127.0.0.1:18000", "[::1]:0"); nothing is accepted before
 * hf__conncap_start. *port receives the bound port. Returns NULL (and fills d) when it cannot
 * listen. max is the cap (> 0). */
hf_conncap *hf__conncap_listen(const char *address, long max, int *port, hf_detail *d);
/* Starts accepting for server (started, with insecure credentials). */
void hf__conncap_start(hf_conncap *c, grpc_server *server);
/* Stops accepting and closes the listener; connections already handed over stay. */
void hf__conncap_stop(hf_conncap *c);
/* Frees; NULL is fine. After hf__conncap_stop. */
void hf__conncap_free(hf_conncap *c);
/* gRPC names a connection made from a descriptor "fd:N": writes the peer address accepted on
 * descriptor N ("ipv4:127.0.0.1:5555") into out instead, when peer is such a name. */
void hf__conncap_peer(hf_conncap *c, const char *peer, char *out, size_t cap);

#endif
