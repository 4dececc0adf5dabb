/*
 * Reporters of one interval; see reporters.h.
 */
#include "reporters.h"

#include "hash.h"
#include "xalloc.h"

#include <stdlib.h>

void deploy_reporters_add(deploy_reporters *r, const char *cluster, const char *node)
{
    if (r->n >= DEPLOY_REPORTERS_MAX) {
        return;
    }
    if ((r->n & (r->n - 1)) == 0) { /* grow at powers of two */
        r->items = xrealloc(r->items, (r->n ? 2 * r->n : 16) * sizeof(*r->items));
    }
    r->items[r->n++] =
        (deploy_reporter){hf_hash_str(HF_HASH_INIT, cluster), hf_hash_str(HF_HASH_INIT, node)};
    r->sorted = 0;
}

static int cmp(const void *a, const void *b)
{
    const deploy_reporter *x = a, *y = b;
    if (x->cluster != y->cluster) {
        return x->cluster < y->cluster ? -1 : 1;
    }
    return x->node < y->node ? -1 : x->node > y->node;
}

size_t deploy_reporters_count(deploy_reporters *r, const char *cluster)
{
    if (!r->sorted && r->n > 0) {
        qsort(r->items, r->n, sizeof(*r->items), cmp);
        r->sorted = 1;
    }
    uint64_t c = hf_hash_str(HF_HASH_INIT, cluster);
    size_t lo = 0, hi = r->n; /* the first item of cluster c */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->items[mid].cluster < c) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    size_t count = 0;
    for (size_t i = lo; i < r->n && r->items[i].cluster == c; i++) {
        count += i == lo || r->items[i].node != r->items[i - 1].node;
    }
    return count;
}

void deploy_reporters_clear(deploy_reporters *r)
{
    free(r->items);
    r->items = NULL;
    r->n = 0;
    r->sorted = 0;
}
