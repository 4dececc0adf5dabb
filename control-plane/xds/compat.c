/*
 * Minimum Envoy versions of the features holdfast configures, and the warnings an older Envoy
 * gets. The table is the one docs/envoy.md shows; a feature without an entry works on every
 * Envoy that speaks the v3 API holdfast serves.
 */
#include "compat.h"

#include <stdio.h>

static bool uses_cookie(const hf_service *s)
{
    return s->affinity.mode == HF_AFFINITY_COOKIE;
}

static bool uses_strict(const hf_service *s)
{
    return s->affinity.mode == HF_AFFINITY_COOKIE && s->affinity.strict;
}

/* One feature: the first Envoy version that applies it, which services use it, and what an
 * older Envoy does instead. */
static const struct feature {
    uint32_t major, minor;
    const char *what;
    bool (*used)(const hf_service *s);
    const char *instead;
} features[] = {
    {1, 22, "cookie affinity (stateful session filter with override_host_status)", uses_cookie,
     "sessions are not kept on their host"},
    {1, 29, "affinity.strict", uses_strict,
     "a session whose host is gone is re-pinned to another host instead of failed with 503"},
};

static bool older(const xds_build_version *v, uint32_t major, uint32_t minor)
{
    return v->major < major || (v->major == major && v->minor < minor);
}

size_t xds_compat_warnings(const xds_build_version *v, const hf_service *svcs, size_t n,
                           char out[][XDS_COMPAT_WARNING_MAX], size_t max)
{
    size_t count = 0;
    if (!v->known) {
        return 0;
    }
    for (size_t f = 0; f < sizeof(features) / sizeof(features[0]); f++) {
        const struct feature *ft = &features[f];
        if (!older(v, ft->major, ft->minor)) {
            continue;
        }
        for (size_t i = 0; i < n && count < max; i++) {
            if (ft->used(&svcs[i])) {
                snprintf(out[count++], XDS_COMPAT_WARNING_MAX,
                         "Envoy %u.%u.%u is older than %u.%u, which %s of service '%s' needs: %s",
                         v->major, v->minor, v->patch, ft->major, ft->minor, ft->what, svcs[i].name,
                         ft->instead);
            }
        }
    }
    return count;
}
