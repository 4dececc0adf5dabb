/*
 * The shim's HDS client: one StreamHealthCheck stream to holdfast over gRPC core. Announces the
 * shim (node, zone, HTTP and TCP capability), applies every HealthCheckSpecifier to the checker,
 * and sends the checker's results: transitions at once, everything every report interval. When
 * the control plane is away it reconnects with backoff while the checker keeps checking with
 * the last specifier; after reconnecting it sends a full report so holdfast resynchronises.
 * The only file of the shim that includes <grpc/...>.
 */
#ifndef SHIM_HDS_CLIENT_H
#define SHIM_HDS_CLIENT_H

#include "checker.h"
#include "shim_tls.h"

#include <signal.h>
#include <stdatomic.h>

typedef struct hds_client hds_client;

hds_client *hds_client_new(const char *server, const char *node_id, const char *zone,
                           sh_checker *checker);
/* Sets the checker specifiers are applied to (before hds_client_run). */
void hds_client_set_checker(hds_client *c, sh_checker *checker);
/* Connects over mutual TLS with tls (borrowed; outlives the client) instead of plaintext. */
void hds_client_set_tls(hds_client *c, shim_tls *tls);
/* The checker's report callback (arg = the client). */
void hds_client_report(void *arg, const sh_result *r, size_t n, bool full);
/* Runs the stream (reconnecting) on the calling thread until *stop is set. */
void hds_client_run(hds_client *c, atomic_int *stop);
void hds_client_free(hds_client *c);

#endif
