/*
 * Authorization of xDS, LRS and HDS streams by certificate identity; see authz.h.
 */
#include "authz.h"

#include <stdio.h>
#include <string.h>

static bool group_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

static bool checker_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 127) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

void xds_principal_parse(const char *uri_san, xds_principal *out)
{
    memset(out, 0, sizeof(*out));
    if (uri_san == NULL) {
        out->kind = XDS_PRINCIPAL_PLAINTEXT;
        return;
    }
    size_t gl = strlen(XDS_SPIFFE_GROUP), cl = strlen(XDS_SPIFFE_CHECKER);
    if (strncmp(uri_san, XDS_SPIFFE_GROUP, gl) == 0 && group_name_ok(uri_san + gl)) {
        out->kind = XDS_PRINCIPAL_GROUP;
        snprintf(out->name, sizeof(out->name), "%s", uri_san + gl);
    } else if (strncmp(uri_san, XDS_SPIFFE_CHECKER, cl) == 0 && checker_name_ok(uri_san + cl)) {
        out->kind = XDS_PRINCIPAL_CHECKER;
        snprintf(out->name, sizeof(out->name), "%s", uri_san + cl);
    } else {
        out->kind = XDS_PRINCIPAL_UNKNOWN;
        /* Printable characters only: it goes into logs and audit events. */
        size_t i = 0;
        for (; uri_san[i] != '\0' && i + 1 < sizeof(out->name); i++) {
            char c = uri_san[i];
            out->name[i] = (c >= 0x20 && c < 0x7f && c != '\'') ? c : '?';
        }
        out->name[i] = '\0';
    }
}

void xds_principal_describe(const xds_principal *p, char *buf, size_t len)
{
    switch (p->kind) {
    case XDS_PRINCIPAL_PLAINTEXT:
        snprintf(buf, len, "a plaintext client");
        break;
    case XDS_PRINCIPAL_GROUP:
        snprintf(buf, len, "group %s", p->name);
        break;
    case XDS_PRINCIPAL_CHECKER:
        snprintf(buf, len, "checker %s", p->name);
        break;
    default:
        if (p->name[0] == '\0') {
            snprintf(buf, len, "a certificate without a URI SAN");
        } else {
            snprintf(buf, len, "an unknown identity '%s'", p->name);
        }
        break;
    }
}

bool xds_authz_ads(const xds_principal *p, const char *node_cluster, char *why, size_t len)
{
    const char *claim = node_cluster != NULL ? node_cluster : "";
    char who[200];
    xds_principal_describe(p, who, sizeof(who));
    switch (p->kind) {
    case XDS_PRINCIPAL_PLAINTEXT:
        return true;
    case XDS_PRINCIPAL_GROUP:
        if (strcmp(p->name, claim) == 0) {
            return true;
        }
        snprintf(why, len, "%s may not fetch the configuration of group '%.64s'", who, claim);
        return false;
    case XDS_PRINCIPAL_CHECKER:
        snprintf(why, len, "%s may use HDS only, not ADS", who);
        return false;
    default:
        snprintf(why, len, "%s may not use ADS", who);
        return false;
    }
}

bool xds_authz_lrs_stream(const xds_principal *p, char *why, size_t len)
{
    if (p->kind == XDS_PRINCIPAL_PLAINTEXT || p->kind == XDS_PRINCIPAL_GROUP) {
        return true;
    }
    char who[200];
    xds_principal_describe(p, who, sizeof(who));
    snprintf(why, len, "%s may not send load reports", who);
    return false;
}

const char *xds_authz_lrs_group(const xds_principal *p, const char *node_cluster)
{
    if (p->kind == XDS_PRINCIPAL_GROUP) {
        return p->name;
    }
    if (p->kind == XDS_PRINCIPAL_PLAINTEXT && node_cluster != NULL && node_cluster[0] != '\0') {
        return node_cluster;
    }
    return NULL;
}

bool xds_authz_lrs_report(const char *stream_group, const char *cluster_group)
{
    return stream_group != NULL && cluster_group != NULL && stream_group[0] != '\0' &&
           strcmp(stream_group, cluster_group) == 0;
}

bool xds_authz_hds(const xds_principal *p, const char *node_id, char *why, size_t len)
{
    const char *id = node_id != NULL ? node_id : "";
    char who[200];
    xds_principal_describe(p, who, sizeof(who));
    switch (p->kind) {
    case XDS_PRINCIPAL_PLAINTEXT:
        return true;
    case XDS_PRINCIPAL_CHECKER:
        if (strcmp(p->name, id) == 0) {
            return true;
        }
        snprintf(why, len, "%s may not check health as '%.100s'", who, id);
        return false;
    default:
        snprintf(why, len, "%s may not open a health-check (HDS) stream", who);
        return false;
    }
}

bool xds_authz_hds_replaces(const xds_principal *newer, const xds_principal *older)
{
    return newer->kind == XDS_PRINCIPAL_CHECKER && older->kind == XDS_PRINCIPAL_CHECKER &&
           strcmp(newer->name, older->name) == 0;
}
