/*
 * GET /api/v1/replicas: the holdfast replicas sharing the database (docs/ha.md), their
 * addresses, which one leads the engines and since when. On SQLite, the one process.
 */
#include "rest_internal.h"

#include <jansson.h>
#include <stdlib.h>

static json_t *replica_json(const store_replica *r)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:b, s:o, s:b}", "id", r->id, "http_address",
                     r->http_address, "xds_address", r->xds_address, "started_at",
                     rest__time_json(r->started_at), "heartbeat_at",
                     rest__time_json(r->heartbeat_at), "alive", r->alive, "leader", r->leader,
                     "leader_since", rest__time_json(r->leader ? r->leader_since : 0), "self",
                     r->self);
}

void rest__h_replicas_list(rest_req *req, rest_resp *resp)
{
    store_replica *items;
    size_t n;
    int rc = store_replica_list(req->store, &items, &n);
    if (rc != HF_OK) {
        hf_detail d = {0};
        hf_fail(&d, rc, "", "cannot list replicas: the database is unavailable");
        rest__error(resp, rc, &d);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, replica_json(&items[i]));
    }
    free(items);
    rest__json(resp, 200,
               json_pack("{s:o, s:s, s:b}", "items", arr, "database",
                         store_backend_name(req->store), "self_leader",
                         store_is_leader(req->store)));
}
