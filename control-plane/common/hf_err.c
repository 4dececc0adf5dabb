/* Error details: formatting helpers for enum hf_err. */
#include "hf_err.h"

#include <stdarg.h>
#include <stdio.h>

int hf_fail(hf_detail *d, int code, const char *field, const char *fmt, ...)
{
    if (d == NULL) {
        return code;
    }
    snprintf(d->field, sizeof(d->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
    return code;
}

const char *hf_err_name(int code)
{
    switch (code) {
    case HF_OK:
        return "ok";
    case HF_EINVAL:
        return "invalid";
    case HF_ENOTFOUND:
        return "not_found";
    case HF_ECONFLICT:
        return "conflict";
    case HF_EDB:
        return "database";
    case HF_ESCHEMA:
        return "schema";
    case HF_EIO:
        return "io";
    case HF_EUNKNOWN:
        return "unknown_field";
    case HF_EBUSY:
        return "busy";
    case HF_ECLOSED:
        return "closed";
    default:
        return "unknown";
    }
}
