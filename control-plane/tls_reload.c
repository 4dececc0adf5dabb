/*
 * Certificate rotation for the daemon; see tls_reload.h.
 */
#include "tls_reload.h"

#include "log.h"

#include <string.h>

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
