/* The web UI's files, embedded in the binary at build time (cmake/embed.cmake): served by the
 * REST module at / and /ui/..., so holdfast needs no separate server, CDN or install step. */
#ifndef HF_UI_ASSETS_H
#define HF_UI_ASSETS_H

#include <stddef.h>

typedef struct hf_ui_asset {
    const char *path; /* "/" or "/ui/app.js" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} hf_ui_asset;

extern const hf_ui_asset hf_ui_assets[];
extern const size_t hf_ui_n_assets;

#endif
