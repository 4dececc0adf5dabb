/*
 * The PostgreSQL pieces shared inside the store: a session with holdfast's connection settings
 * (bounded connect, TCP keepalives and user timeout), for the store's own session, the
 * replicas' dedicated session (store_ha.c) and `holdfast db copy` (store_copy.c).
 */
#ifndef HF_STORE_PG_H
#define HF_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>

/* Advisory lock keys (0x486f6c64 is "Hold"). */
#define STORE_PG_KEY_WRITE "1215261796001"  /* held by every write transaction */
#define STORE_PG_KEY_SETUP "1215261796002"  /* creating the version table */
#define STORE_PG_KEY_LEADER "1215261796003" /* held by the leader's dedicated session */

/* A new session to target, or NULL with err (len bytes) saying why. */
PGconn *store__pg_connect(const char *target, char *err, size_t len);

#endif
