/* Poller: many sockets in an epoll instance of their own, served in batches from one sd-event source. */
#include <sys/epoll.h>

#include "net/poller.h"
#include "shared/log.h"

struct Poller {
        int epoll_fd;
        sd_event_source *source;
        bool dispatching;
        bool free_pending;              /* poller_free() was called while serving a batch */
        PollItem *buried;
};

static void poller_destroy(Poller *p);

static void poller_free_buried(Poller *p) {
        while (p->buried) {
                PollItem *i = p->buried;
                p->buried = i->next_buried;
                i->free(i);
        }
}

/* Makes the epoll set watch exactly events for the item. */
static int poller_sync(Poller *p, PollItem *item, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = item };
        int op;

        if (events == item->events)
                return 0;
        op = events == 0 ? EPOLL_CTL_DEL : item->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(p->epoll_fd, op, item->fd, &ev) < 0)
                return log_debug_errno(errno, "Failed to watch fd %i: %m", item->fd);
        item->events = events;
        return 0;
}

static int poller_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct epoll_event ev[POLLER_BATCH];
        Poller *p = userdata;
        int n;

        n = epoll_wait(p->epoll_fd, ev, ELEMENTSOF(ev), 0);
        if (n < 0)
                return errno == EINTR ? 0 : log_debug_errno(errno, "epoll_wait() on a socket set failed: %m");
        p->dispatching = true;
        for (int i = 0; i < n; i++) {
                PollItem *item = ev[i].data.ptr;
                uint32_t got = ev[i].events, unmaskable = EPOLLHUP | EPOLLERR;

                if (item->buried)
                        continue;
                if (got & ~(item->wanted | unmaskable)) {
                        /* An event the owner dropped lazily came: now the set changes. */
                        if (poller_sync(p, item, item->wanted) < 0)
                                continue; /* still watched as before: it comes again */
                        got &= item->wanted | unmaskable;
                        if (!got)
                                continue;
                }
                item->on_event(item, got);
        }
        p->dispatching = false;
        poller_free_buried(p);
        if (p->free_pending)
                poller_destroy(p);
        return 0;
}

int poller_new(sd_event *event, const char *description, Poller **ret) {
        Poller *p;
        int r;

        p = new0(Poller, 1);
        if (!p)
                return -ENOMEM;
        p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (p->epoll_fd < 0) {
                r = -errno;
                free(p);
                return r;
        }
        r = sd_event_add_io(event, &p->source, p->epoll_fd, EPOLLIN, poller_on_io, p);
        if (r < 0) {
                poller_free(p);
                return r;
        }
        (void) sd_event_source_set_description(p->source, description);
        *ret = p;
        return 0;
}

static void poller_destroy(Poller *p) {
        poller_free_buried(p);
        sd_event_source_disable_unref(p->source);
        safe_close(p->epoll_fd);
        free(p);
}

Poller *poller_free(Poller *p) {
        if (!p)
                return NULL;
        /* From inside its own batch (the last connection went): when the batch is done. */
        if (p->dispatching)
                p->free_pending = true;
        else
                poller_destroy(p);
        return NULL;
}

int poller_set_events(Poller *p, PollItem *item, uint32_t events) {
        const uint32_t lazy = EPOLLIN | EPOLLRDHUP;

        if (item->fd < 0)
                return 0;
        item->wanted = events;
        if (events == item->events)
                return 0;
        /* Only input events dropped, and some still watched: leave the set as it is. */
        if (events != 0 && (events & ~item->events) == 0 && ((item->events & ~events) & ~lazy) == 0)
                return 0;
        return poller_sync(p, item, events);
}

void poller_forget(PollItem *item) {
        item->events = item->wanted = 0;
}

void poller_bury(Poller *p, PollItem *item) {
        if (p && p->dispatching) {
                item->buried = true;
                item->next_buried = p->buried;
                p->buried = item;
                return;
        }
        item->free(item);
}
