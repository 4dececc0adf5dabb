/*
 * holdfast-shim: the data-plane health-check agent (DESIGN §6). It connects to holdfast over HDS,
 * checks the endpoints it is assigned (one epoll loop on the main thread) and streams results
 * back (the gRPC client on a second thread).
 *
 *   holdfast-shim --server 127.0.0.1:18000 --node-id shim-a [--zone z1] [--log-level info]
 *                 [--tls-cert FILE --tls-key FILE --ca FILE]   (mutual TLS; SIGHUP reloads)
 */
#include "checker.h"
#include "hds_client.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set by the signal handler, read by the checker and gRPC threads: a lock-free atomic. */
static atomic_int stop;
static shim_tls tls;

static void on_signal(int sig)
{
    if (sig == SIGHUP) {
        tls.reload = 1;
        return;
    }
    stop = 1;
}

static void *grpc_main(void *arg)
{
    hds_client_run(arg, &stop);
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: holdfast-shim --server ADDR:PORT --node-id ID [--zone ZONE] "
                 "[--log-level L]\n"
                 "                     [--tls-cert FILE --tls-key FILE --ca FILE]\n"
                 "Health-checks the endpoints holdfast assigns it over HDS and reports them.\n");
}

int main(int argc, char **argv)
{
    const char *server = NULL, *node_id = NULL, *zone = "";
    static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                         {"node-id", required_argument, NULL, 'n'},
                                         {"zone", required_argument, NULL, 'z'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"tls-cert", required_argument, NULL, 'c'},
                                         {"tls-key", required_argument, NULL, 'k'},
                                         {"ca", required_argument, NULL, 'a'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 's':
            server = optarg;
            break;
        case 'n':
            node_id = optarg;
            break;
        case 'z':
            zone = optarg;
            break;
        case 'c':
            tls.cert_file = optarg;
            break;
        case 'k':
            tls.key_file = optarg;
            break;
        case 'a':
            tls.ca_file = optarg;
            break;
        case 'l':
            break; /* one level of logging: transitions and connections */
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (server == NULL || node_id == NULL || node_id[0] == '\0') {
        usage(stderr);
        return 2;
    }
    int ntls = (tls.cert_file != NULL) + (tls.key_file != NULL) + (tls.ca_file != NULL);
    char err[512];
    if (ntls != 0 && ntls != 3) {
        fprintf(stderr, "holdfast-shim: --tls-cert, --tls-key and --ca go together\n");
        return 2;
    }
    if (ntls == 3 && shim_tls_load(&tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "holdfast-shim: %s\n", err);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    hds_client *client = hds_client_new(server, node_id, zone, NULL);
    sh_checker *checker = sh_checker_new(node_id, hds_client_report, client);
    hds_client_set_checker(client, checker);
    if (ntls == 3) {
        hds_client_set_tls(client, &tls);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, grpc_main, client) != 0) {
        fprintf(stderr, "shim: cannot start the gRPC thread\n");
        sh_checker_free(checker);
        hds_client_free(client);
        return 1;
    }
    int rc = sh_checker_run(checker, &stop);
    stop = 1;
    pthread_join(t, NULL);
    sh_checker_free(checker);
    hds_client_free(client);
    shim_tls_clear(&tls);
    fprintf(stderr, "shim: stopped\n");
    return rc == 0 ? 0 : 1;
}
