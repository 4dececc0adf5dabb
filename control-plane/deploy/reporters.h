/*
 * Who reported load in one sampling interval: (cluster, node) pairs gathered on gRPC threads,
 * counted per cluster when a tail sample is taken ("from 12 of 12 connected proxies"). Only
 * hashes are kept; appending is O(1) and counting sorts once per interval. Not thread-safe: the
 * engine holds its lock.
 */
#ifndef HF_DEPLOY_REPORTERS_H
#define HF_DEPLOY_REPORTERS_H

#include <stddef.h>
#include <stdint.h>

#define DEPLOY_REPORTERS_MAX 65536 /* pairs per interval; more are not counted */

typedef struct deploy_reporter {
    uint64_t cluster; /* hash of the cluster name */
    uint64_t node;    /* hash of the node id */
} deploy_reporter;

typedef struct deploy_reporters {
    deploy_reporter *items; /* heap */
    size_t n;
    int sorted;
} deploy_reporters;

/* Records that node reported load for cluster. */
void deploy_reporters_add(deploy_reporters *r, const char *cluster, const char *node);
/* How many distinct nodes reported for cluster (sorts r the first time). */
size_t deploy_reporters_count(deploy_reporters *r, const char *cluster);
/* Frees and empties r. */
void deploy_reporters_clear(deploy_reporters *r);

#endif
