/* Reference-counted buffers; see rbuf.h. */
#include "rbuf.h"

#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

hf_rbuf *hf_rbuf_new(size_t len)
{
    hf_rbuf *b = xmalloc(sizeof(*b) + len);
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

hf_rbuf *hf_rbuf_copy(const void *data, size_t len)
{
    hf_rbuf *b = hf_rbuf_new(len);
    if (len > 0) {
        memcpy(b->data, data, len);
    }
    return b;
}

hf_rbuf *hf_rbuf_ref(hf_rbuf *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void hf_rbuf_unref(hf_rbuf *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free(b);
    }
}
