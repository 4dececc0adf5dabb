/*
 * An intrusive doubly linked list: a circular ring of hf_list links with one sentinel (the
 * head). A struct that lives on a list embeds an hf_list member and is found back from its link
 * with hf_list_entry. Insertion and removal are O(1) and allocate nothing; a removed link may be
 * removed again harmlessly (it points at itself). Not thread-safe: the owner of the list holds
 * whatever lock guards it. The model is libuv's src/queue.h.
 */
#ifndef HF_LIST_H
#define HF_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hf_list {
    struct hf_list *next;
    struct hf_list *prev;
} hf_list;

/* A head (or an unlinked member), initialized empty at its definition. */
#define HF_LIST_INIT(name)                                                                         \
    {                                                                                              \
        &(name), &(name)                                                                           \
    }

/* The struct of type `type` whose member `field` is the link `ptr`. */
#define hf_list_entry(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* Iterates `it` over the links of `head`, first to last. The body must not remove `it`. */
#define hf_list_foreach(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)

/* The same, but the body may remove (and free) `it`; `tmp` is scratch. */
#define hf_list_foreach_safe(it, tmp, head)                                                        \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

/* Makes l an empty list (or an unlinked member). */
static inline void hf_list_init(hf_list *l)
{
    l->next = l;
    l->prev = l;
}

static inline bool hf_list_empty(const hf_list *head)
{
    return head->next == head;
}

/* Links n (not on any list) after the last member of head. */
static inline void hf_list_insert_tail(hf_list *head, hf_list *n)
{
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

/* Links n (not on any list) before the first member of head. */
static inline void hf_list_insert_head(hf_list *head, hf_list *n)
{
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}

/* Unlinks n from its list and leaves it an empty ring. */
static inline void hf_list_remove(hf_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    hf_list_init(n);
}

/* The first link of head, or NULL when the list is empty. */
static inline hf_list *hf_list_first(const hf_list *head)
{
    return hf_list_empty(head) ? NULL : head->next;
}

#endif
