/*
 * Certificate rotation for the daemon: the xDS and REST certificate files are loaded at start
 * (a bad file stops holdfast with a one-line error naming it) and reloaded on SIGHUP or when the
 * files change. A reload that fails keeps the certificates in use and logs why. Established
 * streams and connections keep theirs; new handshakes use the new ones.
 */
#ifndef HF_TLS_RELOAD_H
#define HF_TLS_RELOAD_H

#include "rest.h"
#include "tls_files.h"
#include "xds.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct tls_files {
    const char *what;            /* "xDS" or "REST", for messages */
    const char *cert, *key, *ca; /* paths; cert NULL = TLS not configured; ca may be NULL */
    hf_tls_pem pem;              /* what is in use */
    uint64_t stamp;              /* hf_tls_files_stamp when last looked at */
} tls_files;

/* Checks the daemon's TLS flags: xDS ones all or none, REST ones both or none; without xDS TLS,
 * xds_host must be loopback; xds_local ("ADDR:PORT", "" for none) must be loopback. Prints one
 * line and returns 2 when not; 0 otherwise. */
int tls_check_options(const tls_files *xds, const tls_files *rest, const char *xds_host,
                      const char *xds_local);
/* Loads the files for the first time (nothing when t->cert is NULL). */
int tls_files_load(tls_files *t, hf_detail *d);
void tls_files_clear(tls_files *t);
/* Reloads what changed (everything when force) and hands it to the servers (either may be
 * NULL). Called from the main thread, on SIGHUP and about once a second. */
void tls_reload(tls_files *xds_tls, xds_server *xds, tls_files *rest_tls, rest_server *rest,
                bool force);

#endif
