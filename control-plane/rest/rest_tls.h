/*
 * HTTPS for the REST server (rest_tls.c), used by rest.c only: the options that make
 * libmicrohttpd serve TLS with a certificate that can be replaced while it runs.
 */
#ifndef HF_REST_TLS_H
#define HF_REST_TLS_H

#include "hf_err.h"
#include "rest.h"

#include <microhttpd.h>

struct rest_tls;

/* Prepares HTTPS with cfg->tls_cert_pem and cfg->tls_key_pem: opts receives the MHD options
 * (terminated; pass them with MHD_OPTION_ARRAY), *flags the daemon flags to add. HF_EINVAL
 * (d says why) when this libmicrohttpd has no TLS or GnuTLS refuses the pair. */
int rest__tls_new(const rest_config *cfg, struct rest_tls **out, struct MHD_OptionItem opts[2],
                  unsigned *flags, hf_detail *d);
/* New handshakes use this pair from now on; established connections keep theirs. */
int rest__tls_update(struct rest_tls *t, const char *cert_pem, const char *key_pem, hf_detail *d);
/* After MHD_stop_daemon: frees every pair loaded. NULL is ignored. */
void rest__tls_free(struct rest_tls *t);

#endif
