/*
 * Which Envoy versions can apply what holdfast configures (docs/envoy.md, "Minimum Envoy
 * version per feature"). Pure logic on the model: the xDS server records the version a node
 * announces (node.user_agent_build_version); the REST API turns it into warnings per proxy.
 */
#ifndef HF_XDS_COMPAT_H
#define HF_XDS_COMPAT_H

#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An Envoy version; known is false when the node did not say. */
typedef struct xds_build_version {
    bool known;
    uint32_t major, minor, patch;
} xds_build_version;

#define XDS_COMPAT_WARNING_MAX 256

/* Writes into out[0..max) one sentence per (feature, service) that a service of svcs uses and an
 * Envoy of version v cannot apply (nothing when v is unknown); returns how many were written.
 * Never fails; thread-safe. */
size_t xds_compat_warnings(const xds_build_version *v, const hf_service *svcs, size_t n,
                           char out[][XDS_COMPAT_WARNING_MAX], size_t max);

#endif
