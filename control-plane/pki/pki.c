/*
 * `holdfast pki init|issue`; see pki.h.
 */
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pki_args {
    const char *dir;
    const char *group, *checker, *server;
    long days;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    fprintf(stderr, "holdfast pki: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_get_error();
    if (e != 0) {
        fprintf(stderr, " (%s)", ERR_reason_error_string(e));
    }
    fprintf(stderr, "\n");
    ERR_clear_error();
    return 1;
}

/* Writes a PEM object to path atomically with mode: a temporary file, then rename. */
static int write_pem(const char *path, mode_t mode, X509 *x, EVP_PKEY *k)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return fail("cannot write %s: %s", tmp, strerror(errno));
    }
    int ok =
        x != NULL ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return fail("cannot write %s", path);
    }
    return 0;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL) {
        fclose(f);
    }
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL) {
        fclose(f);
    }
    return k;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e == NULL) {
        return -1;
    }
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* A new certificate for key, with a random 127-bit serial, valid from an hour ago. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, long days)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    X509_set_version(x, 2);
    BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400L);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"holdfast", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    return x;
}

static void join(char *out, size_t len, const char *dir, const char *file)
{
    snprintf(out, len, "%s/%s", dir, file);
}

static int init_ca(const struct pki_args *a)
{
    char crt[4096], key[4096];
    join(crt, sizeof(crt), a->dir, "ca.crt");
    join(key, sizeof(key), a->dir, "ca.key");
    if (mkdir(a->dir, 0700) != 0 && errno != EEXIST) {
        return fail("cannot create %s: %s", a->dir, strerror(errno));
    }
    if (access(key, F_OK) == 0) {
        return fail("%s exists already: one CA per folder", key);
    }
    int rc = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? new_cert(k, "holdfast CA", a->days > 0 ? a->days : 3650) : NULL;
    if (x == NULL) {
        return fail("cannot make a key");
    }
    X509_set_issuer_name(x, X509_get_subject_name(x));
    if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") != 0 ||
        X509_sign(x, k, EVP_sha256()) == 0) {
        fail("cannot sign the CA certificate");
        goto out;
    }
    if (write_pem(key, 0600, NULL, k) != 0 || write_pem(crt, 0644, x, NULL) != 0) {
        goto out;
    }
    printf("%s\n%s\n", crt, key);
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static bool name_ok(const char *s, bool dots, bool upper, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '-' || s[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                  (dots && (c == '.' || c == '_')) || (upper && c >= 'A' && c <= 'Z');
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* What the certificate says: its file stem, SAN, extended key usage. */
static int describe(const struct pki_args *a, char *stem, size_t slen, char *san, size_t sanlen,
                    const char **eku)
{
    unsigned char ip[16];
    if (a->group != NULL) {
        if (!name_ok(a->group, false, false, 63)) {
            return fail("--group '%s' must match [a-z0-9][a-z0-9-]{0,62}", a->group);
        }
        snprintf(stem, slen, "group-%s", a->group);
        snprintf(san, sanlen, "URI:spiffe://holdfast/group/%s", a->group);
        *eku = "clientAuth";
    } else if (a->checker != NULL) {
        if (!name_ok(a->checker, true, true, 127) || strchr(a->checker, ':') != NULL) {
            return fail("--checker '%s' must be 1-127 characters of [A-Za-z0-9._-]", a->checker);
        }
        snprintf(stem, slen, "checker-%s", a->checker);
        snprintf(san, sanlen, "URI:spiffe://holdfast/checker/%s", a->checker);
        *eku = "clientAuth";
    } else {
        bool is_ip =
            inet_pton(AF_INET, a->server, ip) == 1 || inet_pton(AF_INET6, a->server, ip) == 1;
        if (!is_ip && !name_ok(a->server, true, false, 253)) {
            return fail("--server '%s' must be a host name or an IP address", a->server);
        }
        snprintf(stem, slen, "server-%s", a->server);
        snprintf(san, sanlen, "%s:%s", is_ip ? "IP" : "DNS", a->server);
        *eku = "serverAuth";
    }
    return 0;
}

static int issue(const struct pki_args *a)
{
    char stem[300], san[400], ca_crt[4096], ca_key[4096], crt[4096], key[4096];
    const char *eku = NULL;
    if (describe(a, stem, sizeof(stem), san, sizeof(san), &eku) != 0) {
        return 2;
    }
    join(ca_crt, sizeof(ca_crt), a->dir, "ca.crt");
    join(ca_key, sizeof(ca_key), a->dir, "ca.key");
    snprintf(crt, sizeof(crt), "%s/%s.crt", a->dir, stem);
    snprintf(key, sizeof(key), "%s/%s.key", a->dir, stem);
    int rc = 1;
    X509 *ca = read_cert(ca_crt), *x = NULL;
    EVP_PKEY *cak = read_key(ca_key), *k = NULL;
    if (ca == NULL || cak == NULL) {
        fail("cannot read the CA in %s (run 'holdfast pki init --dir %s' first)", a->dir, a->dir);
        goto out;
    }
    k = EVP_EC_gen("P-256");
    x = new_cert(k, stem, a->days > 0 ? a->days : 365);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    if (add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
        add_ext(x, ca, NID_ext_key_usage, eku) != 0 ||
        add_ext(x, ca, NID_subject_alt_name, san) != 0 ||
        add_ext(x, ca, NID_authority_key_identifier, "keyid") != 0 ||
        X509_sign(x, cak, EVP_sha256()) == 0) {
        fail("cannot sign the certificate for %s", san);
        goto out;
    }
    /* The key first: a watcher that sees the new certificate finds its key in place. */
    if (write_pem(key, 0600, NULL, k) != 0 || write_pem(crt, 0644, x, NULL) != 0) {
        goto out;
    }
    printf("%s\n%s\n", crt, key);
    rc = 0;
out:
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(cak);
    return rc;
}

static int parse(int argc, char **argv, struct pki_args *a)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},     {"group", required_argument, NULL, 'g'},
        {"checker", required_argument, NULL, 'c'}, {"server", required_argument, NULL, 's'},
        {"days", required_argument, NULL, 'n'},    {NULL, 0, NULL, 0},
    };
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            a->dir = optarg;
            break;
        case 'g':
            a->group = optarg;
            break;
        case 'c':
            a->checker = optarg;
            break;
        case 's':
            a->server = optarg;
            break;
        case 'n':
            a->days = strtol(optarg, NULL, 10);
            if (a->days < 1 || a->days > 36500) {
                fprintf(stderr, "holdfast pki: --days must be 1-36500\n");
                return 2;
            }
            break;
        default:
            return 2;
        }
    }
    if (a->dir == NULL || optind < argc) {
        fprintf(stderr, "holdfast pki: --dir DIR is required (and nothing else)\n");
        return 2;
    }
    return 0;
}

int hf_pki_main(int argc, char **argv)
{
    struct pki_args a = {0};
    const char *cmd = argc >= 2 ? argv[1] : "";
    bool is_init = strcmp(cmd, "init") == 0, is_issue = strcmp(cmd, "issue") == 0;
    if (!is_init && !is_issue) {
        fprintf(stderr, "usage: holdfast pki init --dir DIR\n"
                        "       holdfast pki issue --dir DIR (--group G | --checker NAME | "
                        "--server HOST) [--days N]\n");
        return 2;
    }
    if (parse(argc, argv, &a) != 0) {
        return 2;
    }
    int kinds = (a.group != NULL) + (a.checker != NULL) + (a.server != NULL);
    if (is_init && kinds != 0) {
        fprintf(stderr, "holdfast pki init: takes only --dir (and --days)\n");
        return 2;
    }
    if (is_issue && kinds != 1) {
        fprintf(stderr, "holdfast pki issue: give exactly one of --group, --checker, --server\n");
        return 2;
    }
    return is_init ? init_ca(&a) : issue(&a);
}
