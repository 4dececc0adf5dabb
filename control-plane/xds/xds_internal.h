/*
 * Internals shared by xds.c (lifecycle, the builder thread, the stream registry, the event
 * queue, the glue between gRPC streams and the protocol of ads.h), hds.c and lrs.c.
 */
#ifndef HF_XDS_INTERNAL_H
#define HF_XDS_INTERNAL_H

#include "ads.h"
#include "endpoint_key.h"
#include "grpc_transport.h"
#include "metrics.h"
#include "snapshot.h"
#include "xds.h"

#include <pthread.h>
#include <stdatomic.h>

/* One ADS stream in the server's registry: the transport and the protocol state (ads.h). */
typedef struct xds_conn {
    struct xds_conn *prev, *next; /* registry, under srv->reg_lock */
    struct xds_server *srv;
    hf_stream *transport;
    xds_stream *proto;
} xds_conn;

struct hf_health_table; /* assignments and verdicts (control-plane/health) */

typedef struct hds_checker hds_checker;

/* Lock order (docs/development.md): reg_lock -> xds_stream.lock -> the body cache's lock ->
 * the transport's stream lock; hds_lock -> hds_checker.lock -> the transport's; lock and
 * snap_lock are leaves. No xds lock is held while calling the store. */
struct xds_server {
    hf_store *store;
    hf_grpc_server *grpc;
    hf_grpc_method methods[4 + 2 * XDS_NTYPES]; /* ADS, LRS, HDS, then per-type services */
    struct xds_typed_ctx {
        struct xds_server *srv;
        enum xds_type type;
    } typed[XDS_NTYPES]; /* the per-type services' handler contexts */
    uint32_t lrs_interval_ms;
    xds_load_sink load_sink;

    pthread_t thread;
    pthread_mutex_t lock; /* wanted_gen, stopping, events */
    pthread_cond_t cond;
    bool stopping;
    uint64_t wanted_gen;
    struct xds_event *events, *events_tail;
    size_t n_events;

    pthread_mutex_t snap_lock;
    xds_snapshot *snap;
    store_input *input; /* the input snap was built from; xDS thread only after start */
    xds_ads ads;        /* the protocol's snapshot source and callbacks (xds.c) */

    pthread_mutex_t reg_lock;
    xds_conn *streams;

    /* HDS (hds.c). hds_dirty and hds_pending are under lock; the rest under hds_lock. */
    int hds_replicas;
    bool hds_dirty;   /* assignments must be recomputed */
    bool hds_pending; /* verdicts are queued */
    pthread_mutex_t hds_lock;
    hds_checker *checkers;
    hf_verdict *vq; /* verdicts queued by gRPC threads */
    size_t n_vq;
    struct hf_health_table *health; /* created at the first reassignment (on the leader) */
    uint32_t hds_report_ms;         /* the report interval in the specifiers sent */
    /* xDS thread only: the services' revisions the table was fed (by name), the checkers this
     * replica last recorded on a shared database, and whether that succeeded */
    struct hds_rev {
        char name[HF_NAME_MAX];
        uint64_t rev;
    } * hds_revs;
    size_t n_hds_revs;
    store_checker *hds_mine;
    size_t n_hds_mine;
    bool hds_mine_ok;
    bool hds_shared; /* on a shared database (set at start) */
    /* Under hds_lock, on a replica that does not lead: the leader's assignments as its stored
     * specifiers say, for GET /api/v1/health (sorted by key hash). */
    struct hds_mirror {
        uint64_t hash;
        hf_endpoint_key key;
        int checker; /* index into mirror_ids */
    } * mirror;
    size_t n_mirror;
    char (*mirror_ids)[128];
    size_t n_mirror_ids;
    uint64_t follow_sig; /* xDS thread: what the mirror and the offers were made from */
    bool hds_take;       /* under lock: other replicas queued verdicts for the leader */
    /* per-type series of the protocol's callbacks (xds.c, metrics_init): handles, no lookup */
    hf_series *m_pushes[XDS_NTYPES], *m_bytes[XDS_NTYPES], *m_acks[XDS_NTYPES];
    hf_series *m_nacks[XDS_NTYPES], *m_push_to_ack[XDS_NTYPES];
    atomic_ullong next_stream_id;
    atomic_int connected[2]; /* by node kind */
};

/* The current snapshot, with a reference for the caller. */
xds_snapshot *xds__snapshot(struct xds_server *srv);
/* Queues an audit event for the xDS thread to write. Never blocks on disk. */
void xds__event(struct xds_server *srv, const char *action, const char *object, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
/* Updates the connected-streams gauge. */
void xds__update_gauges(struct xds_server *srv);

/* The transport handlers for SotW and delta ADS (xds.c, on the protocol in ads.c). */
extern const hf_stream_handler xds__sotw_handler;
extern const hf_stream_handler xds__delta_handler;
/* HDS (hds.c): the stream handler, and the xDS thread's work. */
extern const hf_stream_handler xds__hds_handler;
/* Brings assignments up to date with the store and the connected checkers, re-decides what
 * changed, and sends the specifiers that changed. xDS thread only. */
void xds__hds_reassign(struct xds_server *srv);
/* Applies queued verdicts: quorum decisions stored with their events. xDS thread only. */
void xds__hds_process(struct xds_server *srv, bool remote);
/* Frees HDS state at stop. */
void xds__hds_destroy(struct xds_server *srv);
/* Wakes the xDS thread for HDS work (dirty: reassign; otherwise: verdicts queued). */
void xds__hds_wake(struct xds_server *srv, bool dirty);
/* The LRS handler (lrs.c). */
extern const hf_stream_handler xds__lrs_handler;

#endif
