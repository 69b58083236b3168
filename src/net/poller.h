/* Poller: many sockets in an epoll instance of their own, served in batches from one sd-event source. */
#pragma once

#include <systemd/sd-event.h>

#include "shared/macro.h"

/*
 * sd-event calls epoll_wait() before every dispatch and dispatches one source per loop iteration, and
 * re-reads every ready fd each time: with many busy sockets each event paid a system call and a loop
 * iteration of its own, and thousands of ready streams cost O(ready) per dispatch. A Poller's sockets
 * live in a separate epoll instance that sd-event watches as one fd; one wakeup serves up to
 * POLLER_BATCH ready sockets, as nginx's loop does.
 *
 * An item is embedded in its owner's struct. An owner freed while a batch is being served (a later
 * event of the batch may still name it) is handed to poller_bury(): its free function runs after the
 * batch, and its pending events are skipped.
 */
#define POLLER_BATCH 256

typedef struct Poller Poller;
typedef struct PollItem PollItem;

struct PollItem {
        void (*on_event)(PollItem *item, uint32_t revents);
        void (*free)(PollItem *item);   /* frees the owner (used by poller_bury) */
        int fd;
        uint32_t events;                /* in the epoll set; 0: not in it (EPOLLHUP/ERR cannot be masked) */
        uint32_t wanted;                /* what the owner asked for last: events may still hold more */
        bool buried;
        PollItem *next_buried;
};

int poller_new(sd_event *event, const char *description, Poller **ret);
/* Frees it (its items must be gone or buried); from inside its own batch, once the batch is done. */
Poller *poller_free(Poller *p);

/* Watches events on item->fd: adds, changes, or with 0 removes it from the set. Dropping EPOLLIN or
 * EPOLLRDHUP (a connection that stops reading while its request is handled, and reads again after the
 * answer) is lazy: the set changes only if such an event comes while unwanted, which it rarely does,
 * and the owner never sees it. Everything else, EPOLLOUT included (nearly always ready), is at once. */
int poller_set_events(Poller *p, PollItem *item, uint32_t events);
/* The owner closed item->fd (which took it out of the set): forget what was watched. */
void poller_forget(PollItem *item);
/* Frees the item's owner now, or after the batch being served. */
void poller_bury(Poller *p, PollItem *item);
