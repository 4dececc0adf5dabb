/*
 * xds_loadgen: a benchmark tool (not a test) that opens N simulated nodes over ADS, each on
 * its own gRPC connection as real proxies do, subscribes each to the EDS of one cluster, ACKs
 * every response, then makes one endpoint change through the REST API and measures the time from
 * the REST response to each node holding the new endpoints, with holdfast's CPU and RSS before
 * and after.
 *
 *   xds_loadgen --xds 127.0.0.1:18000 --http 127.0.0.1:8080 --pid PID --nodes N
 *               [--service cart --group edge --fleet blue --port-base 20000] [--no-ack]
 *               [--pause S] [--tls-cert F --tls-key F --ca F]   (mutual TLS to holdfast)
 *
 * Prints one line of "key=value" figures. One thread drives every stream from one completion
 * queue; the simulated nodes share the machine with holdfast (say so when quoting figures).
 */
#include "envoy/config/endpoint/v3/endpoint.pb-c.h"
#include "envoy/service/discovery/v3/discovery.pb-c.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <getopt.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EDS_URL "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

enum op { OP_START, OP_RECV, OP_SEND, OP_STATUS };

struct node;
struct tag {
    enum op op;
    struct node *n;
};

struct node {
    int index;
    grpc_channel *channel;
    grpc_call *call;
    struct tag t_start, t_recv, t_send, t_status;
    grpc_metadata_array md_initial, md_trailing;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    grpc_status_code status;
    grpc_slice status_details;
    bool sending;
    char *owed_ack; /* a serialised ACK waiting for the send slot, or NULL */
    size_t owed_len;
    char version[64];
    char first_version[64];
    double changed_at;   /* monotonic seconds when a new version arrived, 0 before */
    double changed_wall; /* the same, wall clock (seconds since the epoch) */
    bool has_port;       /* the new endpoint is in what it holds */
    bool ended;
};

static struct {
    const char *xds, *http, *service, *group, *fleet;
    int nodes, pid, port_base;
    bool no_ack;   /* after the first response, never ACK: measures the push alone */
    int pause_s;   /* seconds to wait between connecting and the change (to attach a profiler) */
    bool external; /* the change comes from elsewhere (e.g. a killed backend): do not POST */
} cfg = {
    "127.0.0.1:18000", "127.0.0.1:8080", "cart", "edge", "blue", 100, 0, 20000, false, 0, false};

static const char *tls_files[3];        /* --tls-cert, --tls-key, --ca */
static grpc_channel_credentials *creds; /* shared by every node's channel */
static grpc_completion_queue *cq;
static struct node *nodes;
static int new_port;
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- holdfast process figures ---- */

static double proc_cpu_seconds(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    double total = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char f[320];
        snprintf(f, sizeof(f), "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *fp = fopen(f, "r");
        unsigned long long ns = 0;
        if (fp && fscanf(fp, "%llu", &ns) == 1) {
            total += (double)ns / 1e9;
        }
        if (fp) {
            fclose(fp);
        }
    }
    if (d) {
        closedir(d);
    }
    return total;
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *fp = fopen(path, "r");
    long kb = -1;
    while (fp && fgets(line, sizeof(line), fp)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (fp) {
        fclose(fp);
    }
    return kb;
}

/* ---- REST: one POST over a plain socket ---- */

static int http_post(const char *path, const char *body)
{
    char host[64];
    snprintf(host, sizeof(host), "%s", cfg.http);
    char *colon = strrchr(host, ':');
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect REST");
        exit(1);
    }
    char req[1024];
    int len = snprintf(req, sizeof(req),
                       "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       path, cfg.http, strlen(body), body);
    if (write(fd, req, (size_t)len) != len) {
        perror("write");
    }
    char resp[4096];
    ssize_t n = read(fd, resp, sizeof(resp) - 1);
    close(fd);
    if (n <= 12) {
        return -1;
    }
    resp[n] = '\0';
    return atoi(resp + 9);
}

/* ---- ADS ---- */

static grpc_byte_buffer *to_buffer(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static void start_send(struct node *n, grpc_byte_buffer *bb)
{
    n->send_buf = bb;
    n->sending = true;
    grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
    op.data.send_message.send_message = bb;
    grpc_call_start_batch(n->call, &op, 1, &n->t_send, NULL);
}

static void send_request(struct node *n, const char *version, const char *nonce)
{
    Envoy__Service__Discovery__V3__DiscoveryRequest rq =
        ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_REQUEST__INIT;
    Envoy__Config__Core__V3__Node node = ENVOY__CONFIG__CORE__V3__NODE__INIT;
    char id[64];
    snprintf(id, sizeof(id), "loadgen-%d", n->index);
    node.id = id;
    node.cluster = (char *)cfg.group;
    node.user_agent_name = "envoy";
    char *names[1] = {(char *)cfg.service};
    rq.node = &node;
    rq.type_url = EDS_URL;
    rq.n_resource_names = 1;
    rq.resource_names = names;
    rq.version_info = (char *)version;
    rq.response_nonce = (char *)nonce;
    grpc_byte_buffer *bb = to_buffer(&rq.base);
    if (n->sending) {
        /* latest wins: replace an ACK that has not gone out yet */
        if (n->owed_ack) {
            grpc_byte_buffer_destroy((grpc_byte_buffer *)n->owed_ack);
        }
        n->owed_ack = (char *)bb;
    } else {
        start_send(n, bb);
    }
}

static void post_recv(struct node *n)
{
    grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
    op.data.recv_message.recv_message = &n->recv_buf;
    grpc_call_start_batch(n->call, &op, 1, &n->t_recv, NULL);
}

static bool holds_port(const Envoy__Service__Discovery__V3__DiscoveryResponse *r, int port)
{
    for (size_t i = 0; i < r->n_resources; i++) {
        Envoy__Config__Endpoint__V3__ClusterLoadAssignment *cla =
            envoy__config__endpoint__v3__cluster_load_assignment__unpack(
                NULL, r->resources[i]->value.len, r->resources[i]->value.data);
        bool found = false;
        for (size_t l = 0; cla && l < cla->n_endpoints && !found; l++) {
            for (size_t e = 0; e < cla->endpoints[l]->n_lb_endpoints && !found; e++) {
                Envoy__Config__Endpoint__V3__LbEndpoint *lb = cla->endpoints[l]->lb_endpoints[e];
                found = lb->endpoint && lb->endpoint->address &&
                        lb->endpoint->address->socket_address &&
                        (int)lb->endpoint->address->socket_address->port_value == port;
            }
        }
        if (cla) {
            envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(cla, NULL);
        }
        if (found) {
            return true;
        }
    }
    return false;
}

static void on_recv(struct node *n, bool ok)
{
    if (!ok || n->recv_buf == NULL) {
        n->ended = true;
        return;
    }
    grpc_byte_buffer_reader rd;
    grpc_byte_buffer_reader_init(&rd, n->recv_buf);
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(n->recv_buf);
    n->recv_buf = NULL;
    Envoy__Service__Discovery__V3__DiscoveryResponse *r =
        envoy__service__discovery__v3__discovery_response__unpack(NULL, GRPC_SLICE_LENGTH(s),
                                                                  GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (r == NULL) {
        fprintf(stderr, "node %d: undecodable response\n", n->index);
        n->ended = true;
        return;
    }
    snprintf(n->version, sizeof(n->version), "%s", r->version_info);
    if (n->first_version[0] == '\0') {
        snprintf(n->first_version, sizeof(n->first_version), "%s", r->version_info);
    } else if (n->changed_at == 0 && strcmp(n->version, n->first_version) != 0) {
        n->changed_at = now_s();
        struct timespec wt;
        clock_gettime(CLOCK_REALTIME, &wt);
        n->changed_wall = (double)wt.tv_sec + (double)wt.tv_nsec / 1e9;
        /* Checking every node's content would measure our own decoding: check one in ten. */
        n->has_port = (n->index % 10 != 0) || holds_port(r, new_port);
    }
    if (!cfg.no_ack || n->changed_at == 0) {
        send_request(n, r->version_info, r->nonce);
    }
    envoy__service__discovery__v3__discovery_response__free_unpacked(r, NULL);
    post_recv(n);
}

static void on_send(struct node *n)
{
    grpc_byte_buffer_destroy(n->send_buf);
    n->send_buf = NULL;
    n->sending = false;
    if (n->owed_ack) {
        grpc_byte_buffer *bb = (grpc_byte_buffer *)n->owed_ack;
        n->owed_ack = NULL;
        start_send(n, bb);
    }
}

static void open_node(struct node *n)
{
    grpc_arg args[] = {
        {GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}}, /* own connection */
        {GRPC_ARG_INTEGER, "grpc.channel_id", {.integer = n->index}},
    };
    grpc_channel_args chargs = {2, args};
    n->channel = grpc_channel_create(cfg.xds, creds, &chargs);
    grpc_slice method = grpc_slice_from_static_string(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources");
    n->call = grpc_channel_create_call(n->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    n->t_start = (struct tag){OP_START, n};
    n->t_recv = (struct tag){OP_RECV, n};
    n->t_send = (struct tag){OP_SEND, n};
    n->t_status = (struct tag){OP_STATUS, n};
    grpc_metadata_array_init(&n->md_initial);
    grpc_metadata_array_init(&n->md_trailing);
    grpc_op ops[3] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},
                      {.op = GRPC_OP_RECV_INITIAL_METADATA},
                      {.op = GRPC_OP_RECV_STATUS_ON_CLIENT}};
    ops[1].data.recv_initial_metadata.recv_initial_metadata = &n->md_initial;
    ops[2].data.recv_status_on_client.trailing_metadata = &n->md_trailing;
    ops[2].data.recv_status_on_client.status = &n->status;
    ops[2].data.recv_status_on_client.status_details = &n->status_details;
    grpc_call_start_batch(n->call, ops, 2, &n->t_start, NULL);
    grpc_call_start_batch(n->call, &ops[2], 1, &n->t_status, NULL);
    send_request(n, "", "");
    post_recv(n);
}

/* Drives the queue until done() or the timeout; returns false on timeout. */
static bool drive(bool (*done)(void), double timeout)
{
    double end = now_s() + timeout;
    while (!done()) {
        if (now_s() > end) {
            return false;
        }
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN)),
            NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            continue;
        }
        struct tag *t = ev.tag;
        switch (t->op) {
        case OP_RECV:
            on_recv(t->n, ev.success);
            break;
        case OP_SEND:
            on_send(t->n);
            break;
        case OP_STATUS:
            t->n->ended = true;
            break;
        case OP_START:
            break;
        }
    }
    return true;
}

static bool all_initial(void)
{
    for (int i = 0; i < cfg.nodes; i++) {
        if (nodes[i].first_version[0] == '\0') {
            return false;
        }
    }
    return true;
}

static bool all_changed(void)
{
    for (int i = 0; i < cfg.nodes; i++) {
        if (nodes[i].changed_at == 0) {
            return false;
        }
    }
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n = f ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    if (f == NULL || n == 0) {
        fprintf(stderr, "xds_loadgen: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    return buf;
}

/* Plaintext, or mutual TLS with the given files (all three or none). */
static grpc_channel_credentials *make_creds(void)
{
    if (tls_files[0] == NULL) {
        return grpc_insecure_credentials_create();
    }
    char *cert = slurp(tls_files[0]), *key = slurp(tls_files[1]), *ca = slurp(tls_files[2]);
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    grpc_channel_credentials *c = grpc_ssl_credentials_create(ca, &pair, NULL, NULL);
    free(cert);
    free(key);
    free(ca);
    return c;
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"xds", 1, NULL, 'x'},     {"http", 1, NULL, 'h'},      {"nodes", 1, NULL, 'n'},
        {"pid", 1, NULL, 'p'},     {"service", 1, NULL, 's'},   {"group", 1, NULL, 'g'},
        {"fleet", 1, NULL, 'f'},   {"port-base", 1, NULL, 'b'}, {"no-ack", 0, NULL, 'a'},
        {"pause", 1, NULL, 'P'},   {"external", 0, NULL, 'E'},  {"tls-cert", 1, NULL, 'C'},
        {"tls-key", 1, NULL, 'K'}, {"ca", 1, NULL, 'A'},        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'x':
            cfg.xds = optarg;
            break;
        case 'h':
            cfg.http = optarg;
            break;
        case 'n':
            cfg.nodes = atoi(optarg);
            break;
        case 'p':
            cfg.pid = atoi(optarg);
            break;
        case 's':
            cfg.service = optarg;
            break;
        case 'g':
            cfg.group = optarg;
            break;
        case 'f':
            cfg.fleet = optarg;
            break;
        case 'b':
            cfg.port_base = atoi(optarg);
            break;
        case 'a':
            cfg.no_ack = true;
            break;
        case 'P':
            cfg.pause_s = atoi(optarg);
            break;
        case 'E':
            cfg.external = true;
            break;
        case 'C':
            tls_files[0] = optarg;
            break;
        case 'K':
            tls_files[1] = optarg;
            break;
        case 'A':
            tls_files[2] = optarg;
            break;
        default:
            exit(2);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    int ntls = (tls_files[0] != NULL) + (tls_files[1] != NULL) + (tls_files[2] != NULL);
    if (ntls != 0 && ntls != 3) {
        fprintf(stderr, "xds_loadgen: --tls-cert, --tls-key and --ca go together\n");
        return 2;
    }
    grpc_init();
    creds = make_creds();
    cq = grpc_completion_queue_create_for_next(NULL);
    nodes = calloc((size_t)cfg.nodes, sizeof(*nodes));

    double cpu0 = cfg.pid ? proc_cpu_seconds(cfg.pid) : 0;
    long rss0 = cfg.pid ? proc_rss_kb(cfg.pid) : 0;
    double t_connect = now_s();
    for (int i = 0; i < cfg.nodes; i++) {
        nodes[i].index = i;
        open_node(&nodes[i]);
    }
    if (!drive(all_initial, 120)) {
        fprintf(stderr, "not every node got its first EDS within 120 s\n");
        return 1;
    }
    t_connect = now_s() - t_connect;
    drive(all_changed, 0.5); /* settle: ACKs in flight */
    if (cfg.pause_s > 0) {
        fprintf(stderr, "connected; changing in %d s\n", cfg.pause_s);
        drive(all_changed, cfg.pause_s);
    }
    double cpu1 = cfg.pid ? proc_cpu_seconds(cfg.pid) : 0;
    long rss1 = cfg.pid ? proc_rss_kb(cfg.pid) : 0;

    if (cfg.external) {
        /* Someone else changes the endpoints (a backend is killed): report arrival times. */
        fprintf(stderr, "connected\n");
        bool ok = drive(all_changed, 120);
        double *wall = calloc((size_t)cfg.nodes, sizeof(double));
        int got = 0;
        for (int i = 0; i < cfg.nodes; i++) {
            if (nodes[i].changed_wall > 0) {
                wall[got++] = nodes[i].changed_wall * 1000;
            }
        }
        qsort(wall, (size_t)got, sizeof(double), cmp_double);
        printf("nodes=%d reached=%d arrival_min_ms=%.1f arrival_p50_ms=%.1f arrival_p99_ms=%.1f "
               "arrival_max_ms=%.1f\n",
               cfg.nodes, got, got ? wall[0] : 0, got ? wall[got / 2] : 0,
               got ? wall[(int)((got - 1) * 0.99)] : 0, got ? wall[got - 1] : 0);
        fflush(stdout);
        _exit(ok && got == cfg.nodes ? 0 : 1);
    }
    new_port = cfg.port_base + (int)(time(NULL) % 10000);
    char path[256], body[256];
    snprintf(path, sizeof(path), "/api/v1/services/%s/fleets/%s/endpoints", cfg.service, cfg.fleet);
    snprintf(body, sizeof(body), "{\"address\":\"127.0.0.1\",\"port\":%d,\"zone\":\"z1\"}",
             new_port);
    int status = http_post(path, body);
    double t0 = now_s();
    if (status != 201) {
        fprintf(stderr, "REST change failed: HTTP %d\n", status);
        return 1;
    }
    bool ok = drive(all_changed, 120);
    double cpu2 = cfg.pid ? proc_cpu_seconds(cfg.pid) : 0;
    long rss2 = cfg.pid ? proc_rss_kb(cfg.pid) : 0;

    double *lat = calloc((size_t)cfg.nodes, sizeof(double));
    int got = 0, bad = 0;
    for (int i = 0; i < cfg.nodes; i++) {
        if (nodes[i].changed_at > 0) {
            lat[got++] = (nodes[i].changed_at - t0) * 1000;
            bad += !nodes[i].has_port;
        }
    }
    qsort(lat, (size_t)got, sizeof(double), cmp_double);
    printf("nodes=%d reached=%d wrong_content=%d connect_s=%.2f p50_ms=%.1f p99_ms=%.1f "
           "max_ms=%.1f rss_before_kb=%ld rss_connected_kb=%ld rss_after_kb=%ld "
           "rss_per_node_kb=%.1f cpu_connect_s=%.3f cpu_push_s=%.4f cpu_per_node_push_us=%.1f\n",
           cfg.nodes, got, bad, t_connect, got ? lat[got / 2] : -1,
           got ? lat[(int)((got - 1) * 0.99)] : -1, got ? lat[got - 1] : -1, rss0, rss1, rss2,
           (double)(rss1 - rss0) / cfg.nodes, cpu1 - cpu0, cpu2 - cpu1,
           (cpu2 - cpu1) / cfg.nodes * 1e6);
    fflush(stdout);
    /* Exit without tearing down 10,000 channels one by one: the kernel closes them. */
    _exit(ok && got == cfg.nodes && bad == 0 ? 0 : 1);
}
