/*
 * holdfast: the control-plane daemon, and its `token` subcommand.
 *
 *   holdfast [--db PATH|URL] [--http ADDR:PORT] [--xds ADDR:PORT] [--log-level L]
 *   holdfast token create --role viewer|operator|admin [--name NAME] [--db PATH|URL]
 *   holdfast db copy --from PATH.db --to postgresql://...
 *   holdfast pki init|issue ...   (pki.h)
 *
 * The daemon opens the store, starts the REST server and waits for SIGTERM or SIGINT, then
 * stops what it started in reverse order.
 */
#include "deploy.h"
#include "log.h"
#include "metrics.h"
#include "pki.h"
#include "rest.h"
#include "store.h"
#include "tls_reload.h"
#include "token.h"
#include "xds.h"

#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct options {
    const char *db;
    char http_addr[64];
    uint16_t http_port;
    char xds_addr[64];
    uint16_t xds_port;
    int xds_threads;
    uint32_t lrs_interval_ms;
    int hds_replicas;
    const char *http_hosts[8]; /* --http-host, repeatable */
    size_t n_http_hosts;
    long xds_max_connections;    /* 0: sized from the descriptor limit */
    long audit_retention;        /* audit rows kept */
    tls_files xds_tls, rest_tls; /* --xds-tls-*, --tls-* (cert NULL: none) */
    char xds_local[96];          /* --xds-local, "" without */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: holdfast [options]\n"
            "       holdfast token create --role viewer|operator|admin [--name NAME] [--db PATH]\n"
            "       holdfast db copy --from PATH.db --to postgresql://USER@HOST:PORT/DB\n"
            "       holdfast pki init --dir DIR\n"
            "       holdfast pki issue --dir DIR (--group G | --checker NAME | --server HOST)\n"
            "\n"
            "Holdfast is an xDS control plane for Envoy fleets that use sticky sessions.\n"
            "\n"
            "Options:\n"
            "  --db PATH|URL      SQLite database file (default ./holdfast.db), or a PostgreSQL\n"
            "                     database shared by replicas: postgresql://USER@HOST:PORT/DB\n"
            "                     (or ?host=/socket/dir); see docs/ha.md\n"
            "  --http ADDR:PORT   REST API and web UI address (default 127.0.0.1:8080)\n"
            "  --xds ADDR:PORT    xDS (ADS, HDS, LRS) gRPC address (default 127.0.0.1:18000)\n"
            "  --xds-threads N    gRPC completion-queue threads (default 1; more on big machines)\n"
            "  --lrs-interval MS  load reporting interval asked of proxies, and the affinity-tail\n"
            "                     sampling period (default 2000)\n"
            "  --hds-replicas K   health checkers per endpoint (default 2); evicted when a\n"
            "                     majority of them says unhealthy\n"
            "  --http-host NAME   a host name the REST API and UI are reached by, besides the\n"
            "                     bound address and localhost (repeatable; other Host headers\n"
            "                     get 421, against DNS rebinding)\n"
            "  --xds-max-connections N\n"
            "                     xDS connections held at once; more are closed at accept\n"
            "                     (default: sized from the open-file limit)\n"
            "  --audit-retention N\n"
            "                     audit events kept (default 100000); past it the oldest\n"
            "                     connect/disconnect events go first, then the oldest others\n"
            "  --xds-tls-cert FILE, --xds-tls-key FILE, --xds-client-ca FILE\n"
            "                     serve xDS over mutual TLS: clients need a certificate from\n"
            "                     that CA; its URI SAN says what they may do (docs/security.md)\n"
            "  --xds-local ADDR:PORT  also serve plaintext xDS on this loopback address (for\n"
            "                     on-host clients that cannot present a certificate)\n"
            "  --tls-cert FILE, --tls-key FILE  serve the REST API and the UI over HTTPS\n"
            "  --log-level LEVEL  error, warn, info or debug (default info)\n"
            "  --help             show this help\n"
            "  --version          print the version\n");
}

/* Splits "ADDR:PORT" or "[V6]:PORT". Returns 0 or -1. */
static int parse_hostport(const char *s, char *addr, size_t alen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
        return -1;
    }
    const char *start = s;
    size_t n = (size_t)(colon - s);
    if (s[0] == '[' && n >= 2 && colon[-1] == ']') {
        start = s + 1;
        n -= 2;
    }
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (n == 0 || n >= alen || *end != '\0' || colon[1] == '\0' || p > 65535) {
        return -1;
    }
    memcpy(addr, start, n);
    addr[n] = '\0';
    *port = (uint16_t)p;
    return 0;
}

static int token_command(int argc, char **argv)
{
    const char *db = "./holdfast.db";
    const char *role_name = NULL;
    const char *name = "";
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"role", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "holdfast token: the only subcommand is 'create'\n");
        return 2;
    }
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd') {
            db = optarg;
        } else if (c == 'r') {
            role_name = optarg;
        } else if (c == 'n') {
            name = optarg;
        } else {
            return 2;
        }
    }
    enum hf_role role;
    if (role_name == NULL || hf_role_parse(role_name, &role) != HF_OK) {
        fprintf(stderr, "holdfast token create: --role must be viewer, operator or admin\n");
        return 2;
    }
    if (name[0] != '\0' && !hf_name_valid(name)) {
        fprintf(stderr, "holdfast token create: --name must match [a-z0-9][a-z0-9-]{0,62}\n");
        return 2;
    }
    hf_store *st;
    hf_detail d = {0};
    if (store_open(db, &st, &d) != HF_OK) {
        fprintf(stderr, "holdfast token create: %s\n", d.message);
        return 1;
    }
    char secret[HF_TOKEN_LEN + 1];
    hf_token t;
    int rc = hf_token_issue(st, "cli", role, name, secret, &t, &d);
    store_close(st);
    if (rc != HF_OK) {
        fprintf(stderr, "holdfast token create: %s\n", d.message);
        return 1;
    }
    printf("%s\n", secret);
    fprintf(stderr, "created %s token %lld; it is shown only once\n", hf_role_name(role),
            (long long)t.id);
    return 0;
}

/* holdfast db copy --from PATH.db --to URL */
static int db_command(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || strcmp(argv[1], "copy") != 0) {
        fprintf(stderr, "holdfast db: the only subcommand is 'copy'\n");
        return 2;
    }
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'f') {
            from = optarg;
        } else if (c == 't') {
            to = optarg;
        } else {
            return 2;
        }
    }
    if (from == NULL || to == NULL || optind < argc) {
        fprintf(stderr, "usage: holdfast db copy --from PATH.db --to postgresql://...\n");
        return 2;
    }
    hf_detail d = {0};
    if (store_copy(from, to, stdout, &d) != HF_OK) {
        fprintf(stderr, "holdfast db copy: %s\n", d.message);
        return 1;
    }
    return 0;
}

/* Parses daemon options; returns -1 to exit 0 (help/version), 0 to run, 2 on a usage error. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"http", required_argument, NULL, 'h'},
        {"xds", required_argument, NULL, 'x'},
        {"log-level", required_argument, NULL, 'l'},
        {"xds-threads", required_argument, NULL, 't'},
        {"lrs-interval", required_argument, NULL, 'r'},
        {"hds-replicas", required_argument, NULL, 'k'},
        {"http-host", required_argument, NULL, 'N'},
        {"xds-max-connections", required_argument, NULL, 'C'},
        {"audit-retention", required_argument, NULL, 'A'},
        {"xds-tls-cert", required_argument, NULL, 'X'},
        {"xds-tls-key", required_argument, NULL, 'Y'},
        {"xds-client-ca", required_argument, NULL, 'Z'},
        {"xds-local", required_argument, NULL, 'L'},
        {"tls-cert", required_argument, NULL, 'c'},
        {"tls-key", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'H'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        enum hf_log_level level;
        switch (c) {
        case 'd':
            o->db = optarg;
            break;
        case 'h':
            if (parse_hostport(optarg, o->http_addr, sizeof(o->http_addr), &o->http_port) != 0) {
                fprintf(stderr, "holdfast: --http wants ADDR:PORT, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'x':
            if (parse_hostport(optarg, o->xds_addr, sizeof(o->xds_addr), &o->xds_port) != 0) {
                fprintf(stderr, "holdfast: --xds wants ADDR:PORT, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            o->xds_threads = atoi(optarg);
            if (o->xds_threads < 1 || o->xds_threads > 64) {
                fprintf(stderr, "holdfast: --xds-threads must be 1-64\n");
                return 2;
            }
            break;
        case 'k':
            o->hds_replicas = atoi(optarg);
            if (o->hds_replicas < 1 || o->hds_replicas > 5) {
                fprintf(stderr, "holdfast: --hds-replicas must be 1-5\n");
                return 2;
            }
            break;
        case 'N':
            if (o->n_http_hosts == sizeof(o->http_hosts) / sizeof(o->http_hosts[0])) {
                fprintf(stderr, "holdfast: at most 8 --http-host names\n");
                return 2;
            }
            o->http_hosts[o->n_http_hosts++] = optarg;
            break;
        case 'C': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 1 || v > 1000000) {
                fprintf(stderr, "holdfast: --xds-max-connections must be 1-1000000\n");
                return 2;
            }
            o->xds_max_connections = v;
            break;
        }
        case 'A': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end != '\0' || v < 100 || v > 100000000) {
                fprintf(stderr, "holdfast: --audit-retention must be 100-100000000 events\n");
                return 2;
            }
            o->audit_retention = v;
            break;
        }
        case 'r': {
            long v = strtol(optarg, NULL, 10);
            if (v < 100 || v > 60000) {
                fprintf(stderr, "holdfast: --lrs-interval must be 100-60000 ms\n");
                return 2;
            }
            o->lrs_interval_ms = (uint32_t)v;
            break;
        }
        case 'l':
            if (hf_log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "holdfast: --log-level must be error, warn, info or debug\n");
                return 2;
            }
            hf_log_set_level(level);
            break;
        case 'X':
            o->xds_tls.cert = optarg;
            break;
        case 'Y':
            o->xds_tls.key = optarg;
            break;
        case 'Z':
            o->xds_tls.ca = optarg;
            break;
        case 'L':
            snprintf(o->xds_local, sizeof(o->xds_local), "%s", optarg);
            break;
        case 'c':
            o->rest_tls.cert = optarg;
            break;
        case 'e':
            o->rest_tls.key = optarg;
            break;
        case 'H':
            usage(stdout);
            return -1;
        case 'V':
            printf("holdfast %s\n", HOLDFAST_VERSION);
            return -1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "holdfast: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return tls_check_options(&o->xds_tls, &o->rest_tls, o->xds_addr, o->xds_local);
}

/* Descriptors kept for everything but xDS connections: REST connections (their cap, 512), the
 * database, webhook calls, gRPC's own. */
#define FD_RESERVE 640

/* Raises the soft open-file limit to the hard one (logging both) and returns the xDS connection
 * cap: the configured one, or what the limit leaves after FD_RESERVE (at least 64). A configured
 * cap above that is lowered, with a warning: past the limit gRPC stops accepting for good. */
static long raise_nofile(long configured)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return configured ? configured : 1024;
    }
    rlim_t soft = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = soft;
        }
    }
    long limit =
        rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576 : (long)rl.rlim_cur;
    long room = limit - FD_RESERVE > 64 ? limit - FD_RESERVE : 64;
    long cap = configured ? configured : room;
    if (cap > room) {
        hf_warn("main", "--xds-max-connections %ld leaves too few descriptors; using %ld", cap,
                room);
        cap = room;
    }
    hf_info("main",
            "open files: soft limit %llu, hard limit %llu, now %ld; xDS connections at most %ld",
            (unsigned long long)soft, (unsigned long long)rl.rlim_max, limit, cap);
    return cap;
}

static int run(struct options *o)
{
    hf_store *st = NULL;
    rest_server *rest = NULL;
    xds_server *xds = NULL;
    deploy_engine *deploy = NULL;
    hf_detail d = {0};
    int status = 1;

    /* Signals are taken synchronously by this thread; every thread started later inherits the
     * blocked mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP); /* reloads certificates */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    long xds_cap = raise_nofile(o->xds_max_connections);
    if (store_open(o->db, &st, &d) != HF_OK) {
        hf_error("main", "%s", d.message);
        goto out;
    }
    hf_info("main", "%s database open (schema version %d)", store_backend_name(st),
            store_schema_version(st));
    store_set_audit_retention(st, o->audit_retention);
    if (tls_files_load(&o->xds_tls, &d) != HF_OK || tls_files_load(&o->rest_tls, &d) != HF_OK) {
        hf_error("main", "%s", d.message);
        goto out;
    }
    hf_grpc_tls xtls = {o->xds_tls.pem.cert_pem, o->xds_tls.pem.key_pem, o->xds_tls.pem.ca_pem};
    char xds_addr[96];
    bool xds_v6 = strchr(o->xds_addr, ':') != NULL;
    snprintf(xds_addr, sizeof(xds_addr), "%s%s%s:%u", xds_v6 ? "[" : "", o->xds_addr,
             xds_v6 ? "]" : "", o->xds_port);
    deploy_start(st, o->lrs_interval_ms, &deploy, &d);
    xds_config xc = {
        .address = xds_addr,
        .store = st,
        .threads = o->xds_threads,
        .lrs_interval_ms = o->lrs_interval_ms,
        .load_sink = {deploy_record_load, deploy, deploy_record_endpoint, deploy_record_reporter},
        .hds_replicas = o->hds_replicas,
        .tls = o->xds_tls.cert != NULL ? &xtls : NULL,
        .local_address = o->xds_local[0] != '\0' ? o->xds_local : NULL,
        .max_connections = xds_cap};
    int xds_port = 0;
    if (xds_start(&xc, &xds, &xds_port, &d) != HF_OK) {
        hf_error("main", "xDS: %s", d.message);
        goto out;
    }
    deploy_set_proxy_counter(deploy, xds_group_proxies, xds);
    hf_info("main", "xDS (ADS) listening on %s%s%s:%d%s", xds_v6 ? "[" : "", o->xds_addr,
            xds_v6 ? "]" : "", xds_port, o->xds_tls.cert ? " (mutual TLS)" : " (plaintext)");
    if (o->xds_tls.cert == NULL) {
        hf_warn("main", "xDS is plaintext: any local process can fetch any group's configuration "
                        "and send health (HDS) and load (LRS) reports; use --xds-tls-*");
    }
    if (o->xds_local[0] != '\0') {
        hf_info("main", "plaintext xDS for on-host clients on %s", o->xds_local);
    }
    rest_config rc = {.address = o->http_addr,
                      .port = o->http_port,
                      .store = st,
                      .xds = xds,
                      .hosts = o->http_hosts,
                      .n_hosts = o->n_http_hosts,
                      .tls_cert_pem = o->rest_tls.pem.cert_pem,
                      .tls_key_pem = o->rest_tls.pem.key_pem};
    if (rest_start(&rc, &rest, &d) != HF_OK) {
        hf_error("main", "REST API: %s", d.message);
        goto out;
    }
    bool v6 = strchr(o->http_addr, ':') != NULL;
    char url[128];
    snprintf(url, sizeof(url), "%s://%s%s%s:%u", o->rest_tls.cert ? "https" : "http", v6 ? "[" : "",
             o->http_addr, v6 ? "]" : "", rest_port(rest));
    hf_info("main", "web UI on %s/ and REST API on %s/api/v1", url, url);
    store_replica_start(st, url, xds_addr, &d);
    hf_info("main", "holdfast %s ready", HOLDFAST_VERSION);

    int sig = 0;
    while (sig != SIGTERM && sig != SIGINT) {
        struct timespec second = {1, 0};
        sig = sigtimedwait(&stop_signals, NULL, &second);
        tls_reload(&o->xds_tls, xds, &o->rest_tls, rest, sig == SIGHUP);
    }
    hf_info("main", "received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    status = 0;
out:
    rest_stop(rest);
    if (deploy != NULL) {
        deploy_set_proxy_counter(deploy, NULL, NULL);
    }
    xds_stop(xds);
    deploy_stop(deploy);
    store_close(st);
    tls_files_clear(&o->xds_tls);
    tls_files_clear(&o->rest_tls);
    hf_metrics_free_all();
    if (status == 0) {
        hf_info("main", "stopped");
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return token_command(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "db") == 0) {
        return db_command(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "pki") == 0) {
        return hf_pki_main(argc - 1, argv + 1);
    }
    struct options o = {.db = "./holdfast.db",
                        .http_addr = "127.0.0.1",
                        .http_port = 8080,
                        .xds_addr = "127.0.0.1",
                        .xds_port = 18000,
                        .xds_threads = 1,
                        .lrs_interval_ms = 2000,
                        .hds_replicas = 2,
                        .audit_retention = STORE_AUDIT_DEFAULT,
                        .xds_tls = {.what = "xDS"},
                        .rest_tls = {.what = "REST"}};
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? 0 : rc;
    }
    return run(&o);
}
