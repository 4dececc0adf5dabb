/*
 * Starting threads. A thread Holdfast needs (an engine, a transport worker) that cannot be
 * started leaves the process unable to do its job, like memory that cannot be allocated: the
 * failure is logged with what the thread was for and the process aborts (see xalloc.h), so
 * callers need no half-started state to unwind.
 */
#ifndef HF_THREAD_H
#define HF_THREAD_H

#include <pthread.h>

/* Starts fn(arg) on a new joinable thread stored in *t; `what` names it in the log and (its
 * first 15 characters) as the thread's name for debuggers and sanitizer reports. Aborts when
 * pthread_create fails. */
void hf_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *what);

#endif
