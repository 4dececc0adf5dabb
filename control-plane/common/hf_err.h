/*
 * Error codes shared by every Holdfast module. Functions return HF_OK (0) or one of the negative
 * codes below; an hf_detail carries the human-readable part (what failed, which field) when a
 * caller needs to show it. Out-of-memory never appears here: it aborts (see xalloc.h).
 */
#ifndef HF_ERR_H
#define HF_ERR_H

#include <stddef.h>

enum hf_err {
    HF_OK = 0,
    HF_EINVAL = -1,    /* a value failed validation; detail names the field */
    HF_ENOTFOUND = -2, /* the named object does not exist */
    HF_ECONFLICT = -3, /* duplicate, or refused because of the state of other objects */
    HF_EDB = -4,       /* the database failed (I/O, corruption, busy beyond the timeout) */
    HF_ESCHEMA = -5,   /* the database was written by a newer Holdfast */
    HF_EIO = -6,       /* a file or socket operation failed */
    HF_EUNKNOWN = -7,  /* an input member is not part of the object; detail names it */
    HF_EBUSY = -8,     /* try again later (e.g. a send is already in flight) */
    HF_ECLOSED = -9,   /* the stream or connection is gone */
};

/* What went wrong, for the caller to show. Either field may be empty. */
typedef struct hf_detail {
    char field[64];    /* the input field at fault, e.g. "affinity.ttl_s" */
    char message[256]; /* a full sentence naming the thing that failed */
} hf_detail;

/* Fills d (when not NULL) and returns code, so that callers can `return hf_fail(...)`. */
int hf_fail(hf_detail *d, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A short constant name for an error code ("not_found", ...). */
const char *hf_err_name(int code);

#endif
