/* Protobuf wire writing; see wire.h. */
#include "wire.h"

#include <string.h>

void wire_put_varint(hf_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    hf_buf_append(b, tmp, n);
}

void wire_put_bytes(hf_buf *b, uint32_t field, const void *data, size_t len)
{
    wire_put_varint(b, ((uint64_t)field << 3) | 2);
    wire_put_varint(b, len);
    if (len > 0) {
        hf_buf_append(b, data, len);
    }
}

void wire_put_string(hf_buf *b, uint32_t field, const char *s)
{
    wire_put_bytes(b, field, s, strlen(s));
}
