/*
 * Certificate rotation for the daemon; see tls_reload.h.
 */
#include "tls_reload.h"

#include "log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* Is host a loopback IP literal (127.0.0.0/8, ::1, brackets allowed) or "localhost"? */
static bool is_loopback(const char *host)
{
    char h[96];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(h)) {
        memcpy(h, host + 1, n - 2);
        h[n - 2] = '\0';
        host = h;
    }
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1) {
        return a[0] == 127;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        return memcmp(a, one, 16) == 0;
    }
    return strcmp(host, "localhost") == 0;
}

/* "ADDR:PORT" with a loopback ADDR and a port? */
static bool local_ok(const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    char host[96];
    if (colon == NULL || colon == hostport || colon[1] == '\0' ||
        (size_t)(colon - hostport) >= sizeof(host)) {
        return false;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    return is_loopback(host);
}

int tls_check_options(const tls_files *xds, const tls_files *rest, const char *xds_host,
                      const char *xds_local)
{
    int nx = (xds->cert != NULL) + (xds->key != NULL) + (xds->ca != NULL);
    if (nx != 0 && nx != 3) {
        fprintf(stderr,
                "holdfast: --xds-tls-cert, --xds-tls-key and --xds-client-ca go together\n");
        return 2;
    }
    if ((rest->cert != NULL) != (rest->key != NULL)) {
        fprintf(stderr, "holdfast: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (nx == 0 && !is_loopback(xds_host)) {
        fprintf(stderr,
                "holdfast: --xds %s is not a loopback address: serving xDS beyond this host "
                "needs --xds-tls-cert, --xds-tls-key and --xds-client-ca\n",
                xds_host);
        return 2;
    }
    if (xds_local[0] != '\0' && !local_ok(xds_local)) {
        fprintf(stderr, "holdfast: --xds-local wants a loopback ADDR:PORT, got '%s'\n", xds_local);
        return 2;
    }
    return 0;
}

static uint64_t stamp_of(const tls_files *t)
{
    const char *files[3] = {t->cert, t->key, t->ca};
    return hf_tls_files_stamp(files, 3);
}

int tls_files_load(tls_files *t, hf_detail *d)
{
    if (t->cert == NULL) {
        return HF_OK;
    }
    t->stamp = stamp_of(t);
    return hf_tls_load(t->cert, t->key, t->ca, &t->pem, d);
}

void tls_files_clear(tls_files *t)
{
    hf_tls_pem_clear(&t->pem);
}

/* Loads t's files again when forced or changed; true when t->pem now holds new ones. */
static bool reload_one(tls_files *t, bool force)
{
    if (t->cert == NULL) {
        return false;
    }
    uint64_t stamp = stamp_of(t);
    if (!force && stamp == t->stamp) {
        return false;
    }
    t->stamp = stamp; /* a bad file is reported once, not every second */
    hf_tls_pem fresh;
    hf_detail d = {0};
    if (hf_tls_load(t->cert, t->key, t->ca, &fresh, &d) != HF_OK) {
        hf_warn("tls", "%s certificate not reloaded, keeping serial %s: %s", t->what, t->pem.serial,
                d.message);
        return false;
    }
    bool same = strcmp(fresh.cert_pem, t->pem.cert_pem) == 0 &&
                strcmp(fresh.key_pem, t->pem.key_pem) == 0 &&
                (t->ca == NULL || strcmp(fresh.ca_pem, t->pem.ca_pem) == 0);
    if (same) {
        hf_tls_pem_clear(&fresh);
        return false;
    }
    hf_info("tls", "%s certificate reloaded: serial %s (was %s)", t->what, fresh.serial,
            t->pem.serial);
    hf_tls_pem_clear(&t->pem);
    t->pem = fresh;
    return true;
}

void tls_reload(tls_files *xds_tls, xds_server *xds, tls_files *rest_tls, rest_server *rest,
                bool force)
{
    if (xds != NULL && reload_one(xds_tls, force)) {
        hf_grpc_tls g = {xds_tls->pem.cert_pem, xds_tls->pem.key_pem, xds_tls->pem.ca_pem};
        xds_tls_update(xds, &g);
    }
    if (rest != NULL && reload_one(rest_tls, force)) {
        hf_detail d = {0};
        if (rest_tls_update(rest, rest_tls->pem.cert_pem, rest_tls->pem.key_pem, &d) != HF_OK) {
            hf_warn("tls", "REST certificate not taken: %s", d.message);
        }
    }
}
