/*
 * The shim's TLS files; see shim_tls.h.
 */
#include "shim_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PEM (1024 * 1024)

/* Reads a PEM file; NULL (err filled) when unreadable, empty, too big or not PEM. */
static char *read_pem(const char *path, const char *what, char *err, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, len, "%s %s: cannot open it (%m)", what, path);
        return NULL;
    }
    char *buf = malloc(MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, MAX_PEM + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n == 0 || n > MAX_PEM) {
        free(buf);
        snprintf(err, len, "%s %s: empty or larger than 1 MB", what, path);
        return NULL;
    }
    buf[n] = '\0';
    if (strstr(buf, "-----BEGIN ") == NULL) {
        free(buf);
        snprintf(err, len, "%s %s: not PEM", what, path);
        return NULL;
    }
    return buf;
}

static uint64_t stamp_of(const shim_tls *t)
{
    const char *files[3] = {t->cert_file, t->key_file, t->ca_file};
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (stat(files[i], &st) == 0) {
            uint64_t v[3] = {(uint64_t)st.st_ino, (uint64_t)st.st_size,
                             (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
                                 (uint64_t)st.st_mtim.tv_nsec};
            for (int k = 0; k < 3; k++) {
                h = (h ^ v[k]) * 1099511628211ull;
            }
        }
    }
    return h;
}

int shim_tls_load(shim_tls *t, char *err, size_t len)
{
    t->stamp = stamp_of(t);
    char *c = read_pem(t->cert_file, "--tls-cert", err, len);
    char *k = c ? read_pem(t->key_file, "--tls-key", err, len) : NULL;
    char *a = k ? read_pem(t->ca_file, "--ca", err, len) : NULL;
    if (a == NULL) {
        free(c);
        free(k);
        return -1;
    }
    shim_tls_clear(t);
    t->cert_pem = c;
    t->key_pem = k;
    t->ca_pem = a;
    return 0;
}

bool shim_tls_refresh(shim_tls *t, void (*log_fn)(const char *line))
{
    bool forced = atomic_exchange(&t->reload, 0) != 0;
    uint64_t stamp = stamp_of(t);
    if (!forced && stamp == t->stamp) {
        return false;
    }
    shim_tls fresh = {t->cert_file, t->key_file, t->ca_file, NULL, NULL, NULL, 0, 0};
    char err[512], line[600];
    if (shim_tls_load(&fresh, err, sizeof(err)) != 0) {
        t->stamp = stamp; /* said once, not at every reconnect */
        snprintf(line, sizeof(line), "certificates not reloaded, keeping the old ones: %s", err);
        log_fn(line);
        return false;
    }
    bool same = strcmp(fresh.cert_pem, t->cert_pem) == 0 &&
                strcmp(fresh.key_pem, t->key_pem) == 0 && strcmp(fresh.ca_pem, t->ca_pem) == 0;
    t->stamp = fresh.stamp;
    if (same) {
        shim_tls_clear(&fresh);
        return false;
    }
    shim_tls_clear(t);
    t->cert_pem = fresh.cert_pem;
    t->key_pem = fresh.key_pem;
    t->ca_pem = fresh.ca_pem;
    log_fn("certificates reloaded: new connections use them");
    return true;
}

void shim_tls_clear(shim_tls *t)
{
    if (t->key_pem != NULL) {
        memset(t->key_pem, 0, strlen(t->key_pem));
    }
    free(t->cert_pem);
    free(t->key_pem);
    free(t->ca_pem);
    t->cert_pem = t->key_pem = t->ca_pem = NULL;
}
