/*
 * The ADS protocol on one stream (Envoy's xDS protocol document), state of the world and delta,
 * apart from any transport, as go-control-plane's pkg/server/stream/v3 is: the protocol reads
 * snapshots through a source, sends through a small stream interface (send, finish), and reports
 * what happens through callbacks (connect, push, ACK, NACK, error, disconnect) to which the
 * audit log and the metrics subscribe (xds.c). tests/unit/test_xds_ads.c drives it with a fake
 * stream and real protobuf bytes, without gRPC.
 *
 * Threads: every function locks the stream; callbacks run with that lock held and must not call
 * back into the stream. Nothing here blocks: no disk, no SQLite.
 */
#ifndef HF_ADS_H
#define HF_ADS_H

#include "rbuf.h"
#include "snapshot.h"
#include "xds.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most resource names one subscription may hold (a request naming more fails the stream with
 * RESOURCE_EXHAUSTED): bounds what one peer can make holdfast store and scan. */
#define XDS_MAX_NAMES 100000

/* What a stream shows in GET /api/v1/proxies, apart from its types. */
typedef struct xds_stream_info {
    uint64_t stream_id;
    char node_id[128];
    char group[64];
    bool group_known;
    char user_agent[128];
    enum xds_node_kind kind;
    char peer[64];
    int64_t connected_since;
    bool delta;
    xds_build_version build_version; /* node.user_agent_build_version, when sent */
} xds_stream_info;

/* The transport as the protocol sees it. */
typedef struct xds_stream_io {
    /* Starts sending the concatenation of parts as one message (the transport takes its own
     * references). HF_OK, HF_EBUSY while a send is in flight, or HF_ECLOSED. */
    int (*send)(void *io, hf_rbuf *const *parts, size_t n);
    /* Ends the stream with a gRPC status code and message. */
    void (*finish)(void *io, int status, const char *message);
    void *io;
} xds_stream_io;

/* Side effects, as subscribers. Any may be NULL. info is valid during the call only. */
typedef struct xds_callbacks {
    void (*connect)(void *arg, const xds_stream_info *info);
    void (*disconnect)(void *arg, const xds_stream_info *info);
    void (*push)(void *arg, const xds_stream_info *info, enum xds_type t, const char *version,
                 size_t bytes);
    void (*ack)(void *arg, const xds_stream_info *info, enum xds_type t, const char *version,
                uint64_t push_to_ack_ns);
    void (*nack)(void *arg, const xds_stream_info *info, enum xds_type t, const char *version,
                 const char *error);
    /* The stream is ended for bad input (message says why). */
    void (*error)(void *arg, const xds_stream_info *info, const char *message);
    /* May node node_id of proxy group cluster be served on the stream whose transport is io?
     * false: the callee has ended the stream (PERMISSION_DENIED) and audited why. */
    bool (*admit)(void *arg, void *io, const char *node_id, const char *cluster);
    void *arg;
} xds_callbacks;

/* Where streams get snapshots, and who hears about them. Outlives every stream. */
typedef struct xds_ads {
    /* A new reference to the newest snapshot. */
    xds_snapshot *(*snapshot)(void *arg);
    void *snapshot_arg;
    xds_callbacks cb;
} xds_ads;

typedef struct xds_stream xds_stream;

/* A new stream from peer. io is copied; delta picks the incremental variant. */
xds_stream *xds_stream_open(const xds_ads *ads, const xds_stream_io *io, uint64_t id,
                            const char *peer, bool delta);
/* Makes s a per-type stream (ClusterDiscoveryService and the like): requests for any other
 * type end it with INVALID_ARGUMENT. Call right after xds_stream_open. */
void xds_stream_only(xds_stream *s, enum xds_type t);
/* One serialised DiscoveryRequest (or DeltaDiscoveryRequest) from the client. */
void xds_stream_message(xds_stream *s, const uint8_t *data, size_t len);
/* The send started through io completed: the next response may go. */
void xds_stream_sent(xds_stream *s);
/* Sends whatever is owed from the newest snapshot (call after a new one is published). At most
 * one response is in flight; what is owed is worked out afresh each time (latest wins). */
void xds_stream_pump(xds_stream *s);
/* The transport ended: the disconnect callback runs (once a node was known) and s is freed. */
void xds_stream_close(xds_stream *s);
/* Copies the stream's state into out, with each type's current version in the newest
 * snapshot. Returns false (out untouched) before the first request named a node. */
bool xds_stream_status(xds_stream *s, xds_proxy_info *out);
/* Has s a node of proxy group group (node.cluster)? */
bool xds_stream_in_group(xds_stream *s, const char *group);
/* Is s the stream of node node_id? *stream_id receives its id either way. */
bool xds_stream_is_node(xds_stream *s, const char *node_id, uint64_t *stream_id);

/* One resource a stream last sent, for the configuration dump (config_dump.c). */
typedef struct xds_sent_item {
    char *name;
    char version[HF_VERSION_LEN];
    hf_rbuf *any; /* the resource, or NULL when the newest snapshot no longer has that version */
} xds_sent_item;

typedef struct xds_sent {
    xds_sent_item *items; /* sorted by name */
    size_t n;
} xds_sent;

/* Releases what an xds_sent holds (it may be reused). */
void xds_sent_clear(xds_sent *s);
/* What s last sent, per type, for the configuration dump: state of the world CDS and LDS as a
 * reference to the complete body last sent (bodies[t]; sent[t] empty); otherwise bodies[t] is
 * NULL and sent[t] lists what the client holds (delta: with the last response's changes). The
 * caller releases both. Returns false (nothing filled) before a node. */
bool xds_stream_dump(xds_stream *s, xds_proxy_info *status, xds_sent sent[XDS_NTYPES],
                     hf_rbuf *bodies[XDS_NTYPES]);

#endif
