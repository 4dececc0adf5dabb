/* Starting threads; see thread.h. */

#include "thread.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hf_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *what)
{
    int rc = pthread_create(t, NULL, fn, arg);
    if (rc != 0) {
        hf_error("thread", "cannot start the %s thread: %s", what, strerror(rc));
        abort();
    }
    char name[16];
    snprintf(name, sizeof(name), "%s", what);
    pthread_setname_np(*t, name);
}
