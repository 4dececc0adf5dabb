/*
 * Reading and checking TLS files; see tls_files.h.
 */
#include "tls_files.h"

#include "hash.h"
#include "xalloc.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PEM (1024 * 1024)

/* Reads a whole file (at most MAX_PEM bytes) as a NUL-terminated string. */
static int read_file(const char *path, char **out, hf_detail *d)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return hf_fail(d, HF_EIO, "", "%s: cannot open it (%m)", path);
    }
    char *buf = xmalloc(MAX_PEM + 1);
    size_t n = fread(buf, 1, MAX_PEM + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err || n > MAX_PEM || n == 0) {
        free(buf);
        return hf_fail(d, HF_EIO, "", "%s: %s", path,
                       err      ? "cannot read it"
                       : n == 0 ? "the file is empty"
                                : "larger than 1 MB");
    }
    buf[n] = '\0';
    *out = buf;
    return HF_OK;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "not PEM";
}

/* The first certificate of pem, or NULL. */
static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

static void serial_hex(X509 *x, char *buf, size_t len)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(buf, len, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

/* Checks the certificate and key texts against each other. */
static int check_pair(const char *cert_file, const char *cert_pem, const char *key_file,
                      const char *key_pem, char serial[80], hf_detail *d)
{
    int rc = HF_OK;
    EVP_PKEY *key = NULL;
    ERR_clear_error();
    X509 *x = parse_cert(cert_pem);
    if (x == NULL) {
        rc = hf_fail(d, HF_EINVAL, "", "%s: not a PEM certificate (%s)", cert_file, ssl_reason());
        goto out;
    }
    BIO *b = BIO_new_mem_buf(key_pem, -1);
    key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (key == NULL) {
        rc = hf_fail(d, HF_EINVAL, "", "%s: not a PEM private key without a passphrase (%s)",
                     key_file, ssl_reason());
        goto out;
    }
    if (X509_check_private_key(x, key) != 1) {
        rc = hf_fail(d, HF_EINVAL, "", "%s: the key does not match the certificate %s", key_file,
                     cert_file);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        rc = hf_fail(d, HF_EINVAL, "", "%s: the certificate has expired", cert_file);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        rc = hf_fail(d, HF_EINVAL, "", "%s: the certificate is not valid yet", cert_file);
        goto out;
    }
    serial_hex(x, serial, 80);
out:
    EVP_PKEY_free(key);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int hf_tls_load(const char *cert_file, const char *key_file, const char *ca_file, hf_tls_pem *out,
                hf_detail *d)
{
    hf_tls_pem p = {0};
    int rc = read_file(cert_file, &p.cert_pem, d);
    if (rc == HF_OK) {
        rc = read_file(key_file, &p.key_pem, d);
    }
    if (rc == HF_OK && ca_file != NULL) {
        rc = read_file(ca_file, &p.ca_pem, d);
        X509 *ca = rc == HF_OK ? parse_cert(p.ca_pem) : NULL;
        if (rc == HF_OK && ca == NULL) {
            rc = hf_fail(d, HF_EINVAL, "", "%s: not a PEM CA certificate", ca_file);
        }
        X509_free(ca);
        ERR_clear_error();
    }
    if (rc == HF_OK) {
        rc = check_pair(cert_file, p.cert_pem, key_file, p.key_pem, p.serial, d);
    }
    if (rc != HF_OK) {
        hf_tls_pem_clear(&p);
        return rc;
    }
    *out = p;
    return HF_OK;
}

void hf_tls_pem_clear(hf_tls_pem *p)
{
    if (p->key_pem != NULL) {
        OPENSSL_cleanse(p->key_pem, strlen(p->key_pem));
    }
    free(p->cert_pem);
    free(p->key_pem);
    free(p->ca_pem);
    memset(p, 0, sizeof(*p));
}

uint64_t hf_tls_files_stamp(const char *const *files, int n)
{
    uint64_t h = HF_HASH_INIT;
    bool any = false;
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (files[i] == NULL || stat(files[i], &st) != 0) {
            continue;
        }
        any = true;
        uint64_t v[4] = {(uint64_t)st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
                         (uint64_t)st.st_mtim.tv_nsec};
        h = hf_hash_update(h, v, sizeof(v));
    }
    return any ? h : 0;
}
