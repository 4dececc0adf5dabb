/*
 * Certificate and key files for holdfast's TLS listeners (xDS and REST): read, checked with
 * OpenSSL's libcrypto (the key matches the certificate, the certificate is in its validity
 * period, the CA bundle parses), and handed on as PEM text. Also a cheap stamp of the files so
 * that a watcher can tell when they changed. OpenSSL is included only in this folder and auth/.
 */
#ifndef HF_TLS_FILES_H
#define HF_TLS_FILES_H

#include "hf_err.h"

#include <stdint.h>

/* PEM text of a certificate chain, its key and (optionally) a CA bundle; heap, owned. */
typedef struct hf_tls_pem {
    char *cert_pem;
    char *key_pem;
    char *ca_pem;    /* NULL when no CA file was given */
    char serial[80]; /* the leaf certificate's serial, hex */
} hf_tls_pem;

/* Reads and checks cert_file, key_file and ca_file (NULL: none). On failure *out is untouched
 * and d says which file and why in one line ("--xds-tls-key /x: the key does not match ..."). */
int hf_tls_load(const char *cert_file, const char *key_file, const char *ca_file, hf_tls_pem *out,
                hf_detail *d);
/* Frees what hf_tls_load filled; the struct can be reused. */
void hf_tls_pem_clear(hf_tls_pem *p);
/* A value that changes when any of the files (NULL entries skipped) is replaced or modified:
 * inode, size and modification time. 0 when none can be read. */
uint64_t hf_tls_files_stamp(const char *const *files, int n);

#endif
