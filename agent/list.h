/* Intrusive doubly-linked lists (circular, with a head node), for objects that must leave a list
 * in O(1) from wherever they are: connections, the connections with output queued, a
 * connection's pending requests. Used by agent.c and conn.c. */
#ifndef PTA_LIST_H
#define PTA_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};

#define list_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* A head, or a node that is in no list (list_linked() is then false). */
static inline void list_init(struct list *l)
{
    l->next = l->prev = l;
}

static inline bool list_empty(const struct list *head)
{
    return head->next == head;
}

static inline bool list_linked(const struct list *node)
{
    return node->next != node;
}

static inline void list_insert(struct list *head, struct list *node)
{
    node->next = head->next;
    node->prev = head;
    head->next->prev = node;
    head->next = node;
}

/* Unlinks node and leaves it initialised, so that unlinking twice is harmless. */
static inline void list_del(struct list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

#endif
