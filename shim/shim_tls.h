/*
 * The shim's client certificate for mutual TLS to holdfast (--tls-cert, --tls-key, --ca): the
 * files read as PEM text, and read again on SIGHUP or when they change. The gRPC channel is
 * rebuilt with the new ones before the next stream (hds_client.c); the stream in progress is
 * never dropped for a rotation.
 */
#ifndef SHIM_TLS_H
#define SHIM_TLS_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

typedef struct shim_tls {
    const char *cert_file, *key_file, *ca_file;
    char *cert_pem, *key_pem, *ca_pem; /* in use; heap */
    uint64_t stamp;                    /* of the files when last read */
    atomic_int reload;                 /* set by the SIGHUP handler (a lock-free atomic) */
} shim_tls;

/* Reads the three files. Returns 0, or -1 with err naming the file and the reason. */
int shim_tls_load(shim_tls *t, char *err, size_t len);
/* After SIGHUP or a change of the files: reads them again. True when new PEM text is in place;
 * false when nothing changed or the new files are unusable (logged with log_fn; the old ones
 * stay). */
bool shim_tls_refresh(shim_tls *t, void (*log_fn)(const char *line));
void shim_tls_clear(shim_tls *t);

#endif
