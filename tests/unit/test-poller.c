/* Unit tests for the Poller: events reach items in batches, and input events are dropped lazily. */
#include <sys/epoll.h>
#include <sys/socket.h>

#include "net/poller.h"
#include "tests.h"

typedef struct Item {
        PollItem item;
        unsigned calls;
        uint32_t last;
} Item;

static void on_event(PollItem *i, uint32_t revents) {
        Item *x = container_of(i, Item, item);
        x->calls++;
        x->last = revents;
}

static void run(sd_event *e, int iterations) {
        for (int i = 0; i < iterations; i++)
                sd_event_run(e, 10 * 1000);
}

TEST(input_events_are_dropped_lazily) {
        sd_event *e = NULL;
        Poller *p = NULL;
        Item x = { .item = { .on_event = on_event } };
        int sv[2];
        char b[8];

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(poller_new(e, "test", &p));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        x.item.fd = sv[0];

        ASSERT_OK(poller_set_events(p, &x.item, EPOLLIN | EPOLLRDHUP));
        ASSERT_EQ(x.item.events, EPOLLIN | EPOLLRDHUP);
        /* Reading paused: the set keeps EPOLLIN for now. */
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLRDHUP));
        ASSERT_EQ(x.item.events, EPOLLIN | EPOLLRDHUP);
        ASSERT_EQ(x.item.wanted, EPOLLRDHUP);
        /* Reading again costs nothing either. */
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLIN | EPOLLRDHUP));
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLRDHUP));

        /* Data while unwanted: the owner does not hear of it, and the set drops EPOLLIN now (no spin). */
        ASSERT_EQ(write(sv[1], "ab", 2), 2);
        run(e, 3);
        ASSERT_EQ(x.calls, 0U);
        ASSERT_EQ(x.item.events, EPOLLRDHUP);

        /* Wanted again: at once, and the waiting data is reported. */
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLIN | EPOLLRDHUP));
        ASSERT_EQ(x.item.events, EPOLLIN | EPOLLRDHUP);
        run(e, 1);
        ASSERT_EQ(x.calls, 1U);
        ASSERT_TRUE(x.last & EPOLLIN);
        ASSERT_EQ(read(sv[0], b, sizeof b), 2);

        /* A hang-up while only EPOLLRDHUP is wanted is reported as that alone. */
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLRDHUP));
        ASSERT_OK(shutdown(sv[1], SHUT_WR));
        x.calls = 0;
        run(e, 1);
        ASSERT_EQ(x.calls, 1U);
        ASSERT_EQ(x.last, (uint32_t) EPOLLRDHUP);
        ASSERT_EQ(x.item.events, EPOLLRDHUP);

        /* EPOLLOUT is dropped at once (a socket is nearly always writable), and so is everything. */
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLIN | EPOLLOUT));
        ASSERT_EQ(x.item.events, EPOLLIN | EPOLLOUT);
        ASSERT_OK(poller_set_events(p, &x.item, EPOLLIN));
        ASSERT_EQ(x.item.events, EPOLLIN);
        ASSERT_OK(poller_set_events(p, &x.item, 0));
        ASSERT_EQ(x.item.events, 0U);
        x.calls = 0;
        run(e, 2);
        ASSERT_EQ(x.calls, 0U);

        close(sv[0]);
        close(sv[1]);
        poller_free(p);
        sd_event_unref(e);
}

