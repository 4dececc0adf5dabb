/*
 * Mutual TLS for the gRPC transport; see grpc_tls.h.
 *
 * Rotation: the credentials are built on a certificate-config fetcher. gRPC core calls it before
 * each new handshake; it hands over a staged config once (RELOAD_NEW) and otherwise answers
 * RELOAD_UNCHANGED, so established connections keep the keys they were made with and new ones
 * use the newest. The files are read and checked (key matches certificate) by the caller before
 * staging: a bad file never reaches gRPC.
 */
#include "grpc_tls.h"

#include "log.h"
#include "metrics.h"
#include "xalloc.h"

#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct hf_grpc_tls_state {
    pthread_mutex_t lock;
    grpc_ssl_server_certificate_config *staged; /* handed to gRPC at the next handshake */
};

static grpc_ssl_server_certificate_config *make_config(const hf_grpc_tls *tls)
{
    grpc_ssl_pem_key_cert_pair pair = {tls->key_pem, tls->cert_pem};
    return grpc_ssl_server_certificate_config_create(tls->client_ca_pem, &pair, 1);
}

static grpc_ssl_certificate_config_reload_status fetch(void *user,
                                                       grpc_ssl_server_certificate_config **config)
{
    hf_grpc_tls_state *st = user;
    pthread_mutex_lock(&st->lock);
    grpc_ssl_server_certificate_config *staged = st->staged;
    st->staged = NULL;
    pthread_mutex_unlock(&st->lock);
    if (staged == NULL) {
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    }
    *config = staged; /* gRPC takes ownership */
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

hf_grpc_tls_state *hf__grpc_tls_new(const hf_grpc_tls *tls, grpc_server_credentials **creds)
{
    hf_grpc_tls_state *st = xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->staged = make_config(tls); /* fetched while the port is added */
    grpc_ssl_server_credentials_options *opts =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, fetch, st);
    *creds = grpc_ssl_server_credentials_create_with_options(opts);
    return st;
}

void hf__grpc_tls_stage(hf_grpc_tls_state *st, const hf_grpc_tls *tls)
{
    grpc_ssl_server_certificate_config *c = make_config(tls);
    pthread_mutex_lock(&st->lock);
    grpc_ssl_server_certificate_config *old = st->staged;
    st->staged = c;
    pthread_mutex_unlock(&st->lock);
    if (old != NULL) {
        grpc_ssl_server_certificate_config_destroy(old);
    }
}

void hf__grpc_tls_free(hf_grpc_tls_state *st)
{
    if (st == NULL) {
        return;
    }
    if (st->staged != NULL) {
        grpc_ssl_server_certificate_config_destroy(st->staged);
    }
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Copies the value of the only property called name into buf. HF_ENOTFOUND when there is none,
 * HF_EINVAL when there are several or it does not fit. */
static int only_property(const grpc_auth_context *ctx, const char *name, char *buf, size_t len)
{
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (p == NULL) {
        return HF_ENOTFOUND;
    }
    if (grpc_auth_property_iterator_next(&it) != NULL || p->value_length >= len ||
        memchr(p->value, '\0', p->value_length) != NULL) {
        return HF_EINVAL;
    }
    memcpy(buf, p->value, p->value_length);
    buf[p->value_length] = '\0';
    return HF_OK;
}

int hf__grpc_call_identity(grpc_call *call, char *buf, size_t len)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (ctx == NULL) {
        return HF_ENOTFOUND;
    }
    char type[16];
    int rc = HF_ENOTFOUND;
    if (only_property(ctx, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME, type, sizeof(type)) ==
            HF_OK &&
        strcmp(type, GRPC_SSL_TRANSPORT_SECURITY_TYPE) == 0) {
        /* gRPC 1.51 lists each URI SAN of the verified client certificate as "peer_uri". */
        rc = only_property(ctx, GRPC_PEER_URI_PROPERTY_NAME, buf, len);
        if (rc == HF_ENOTFOUND) {
            buf[0] = '\0';
            rc = HF_OK;
        } else if (rc == HF_EINVAL) {
            snprintf(buf, len, "(several URI SANs)");
        }
    }
    grpc_auth_context_release(ctx);
    return rc;
}

/* ---- gRPC core's log ---- */

/* Under failure_lock: gRPC logs from its own threads (rarely: errors only). */
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*failure_fn)(void *arg, const char *why);
static void *failure_arg;

static void on_grpc_log(gpr_log_func_args *a)
{
    const char *m = a->message ? a->message : "";
    /* The TLS library's verdict on a client: "Handshake failed with fatal error SSL_ERROR_SSL:
     * error:...:certificate verify failed" (no certificate, another CA, expired...). */
    if (strstr(m, "Handshake failed") != NULL) {
        hf_counter_add("holdfast_xds_tls_handshake_failures_total",
                       "xDS TLS handshakes that failed (client certificate missing or refused).",
                       "", 1);
        pthread_mutex_lock(&failure_lock);
        if (failure_fn != NULL) {
            failure_fn(failure_arg, m);
        }
        pthread_mutex_unlock(&failure_lock);
    }
    if (a->severity == GPR_LOG_SEVERITY_ERROR) {
        hf_warn("grpc", "%s", m);
    } else {
        hf_debug("grpc", "%s", m);
    }
}

void hf__grpc_tls_watch_log(void (*fn)(void *arg, const char *why), void *arg)
{
    pthread_mutex_lock(&failure_lock);
    failure_fn = fn;
    failure_arg = arg;
    pthread_mutex_unlock(&failure_lock);
    gpr_set_log_function(on_grpc_log);
}
