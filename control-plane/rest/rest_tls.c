/*
 * HTTPS for the REST API, the UI and SSE: libmicrohttpd on GnuTLS (as Debian builds it). The
 * certificate is given to GnuTLS by a retrieve callback (MHD_OPTION_HTTPS_CERT_CALLBACK) rather
 * than as fixed memory, so that rest_tls_update can replace it while the server runs: each new
 * handshake takes the newest pair; connections already made keep theirs.
 *
 * GnuTLS's callback has no user pointer: the pairs live in this file's state, one per process
 * (holdfast runs one REST server). Every pair ever loaded is kept until rest__tls_free, since
 * a session may still refer to the one it was handed; rotations are rare.
 */
#include "rest_tls.h"

#include "log.h"
#include "xalloc.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHAIN 8

struct pair {
    struct pair *older;
    gnutls_pcert_st chain[MAX_CHAIN];
    unsigned n_chain;
    gnutls_privkey_t key;
};

struct rest_tls {
    int unused;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pair *current; /* newest first; the list holds every pair loaded */
static struct rest_tls the_tls;

static void pair_free(struct pair *p)
{
    for (unsigned i = 0; i < p->n_chain; i++) {
        gnutls_pcert_deinit(&p->chain[i]);
    }
    gnutls_privkey_deinit(p->key);
    free(p);
}

static int pair_new(const char *cert_pem, const char *key_pem, struct pair **out, hf_detail *d)
{
    struct pair *p = xcalloc(1, sizeof(*p));
    gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    p->n_chain = MAX_CHAIN;
    int rc = gnutls_pcert_list_import_x509_raw(p->chain, &p->n_chain, &c, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        p->n_chain = 0;
        gnutls_privkey_init(&p->key);
        pair_free(p);
        return hf_fail(d, HF_EINVAL, "tls-cert", "GnuTLS cannot use the certificate: %s",
                       gnutls_strerror(rc));
    }
    gnutls_privkey_init(&p->key);
    rc = gnutls_privkey_import_x509_raw(p->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        pair_free(p);
        return hf_fail(d, HF_EINVAL, "tls-key", "GnuTLS cannot use the key: %s",
                       gnutls_strerror(rc));
    }
    *out = p;
    return HF_OK;
}

static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                    gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    pthread_mutex_lock(&lock);
    struct pair *p = current;
    pthread_mutex_unlock(&lock);
    if (p == NULL) {
        return -1;
    }
    *pcert = p->chain;
    *pcert_length = p->n_chain;
    *privkey = p->key;
    return 0;
}

int rest__tls_new(const rest_config *cfg, struct rest_tls **out, struct MHD_OptionItem opts[2],
                  unsigned *flags, hf_detail *d)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
        MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
        return hf_fail(d, HF_EINVAL, "tls-cert",
                       "this libmicrohttpd was built without TLS (GnuTLS): cannot serve HTTPS");
    }
    struct pair *p;
    int rc = pair_new(cfg->tls_cert_pem, cfg->tls_key_pem, &p, d);
    if (rc != HF_OK) {
        return rc;
    }
    pthread_mutex_lock(&lock);
    p->older = current;
    current = p;
    pthread_mutex_unlock(&lock);
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)retrieve};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    *flags = MHD_USE_TLS;
    *out = &the_tls;
    return HF_OK;
}

int rest__tls_update(struct rest_tls *t, const char *cert_pem, const char *key_pem, hf_detail *d)
{
    if (t == NULL) {
        return hf_fail(d, HF_EINVAL, "tls-cert", "the REST API was started without TLS");
    }
    struct pair *p;
    int rc = pair_new(cert_pem, key_pem, &p, d);
    if (rc != HF_OK) {
        return rc;
    }
    pthread_mutex_lock(&lock);
    p->older = current;
    current = p;
    pthread_mutex_unlock(&lock);
    return HF_OK;
}

void rest__tls_free(struct rest_tls *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&lock);
    struct pair *p = current;
    current = NULL;
    pthread_mutex_unlock(&lock);
    while (p != NULL) {
        struct pair *older = p->older;
        pair_free(p);
        p = older;
    }
}
