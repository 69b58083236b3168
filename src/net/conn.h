/* Conn: a Stream over a connected kernel socket: nonblocking I/O on sd-event, buffers, lingering close. */
#pragma once

#include "net/stream.h"

typedef struct Conn Conn;

/* Called once when the connection is gone and freed (for the owner's counters). */
typedef void (*ConnFreeCallback)(Conn *c, void *userdata);

/* Takes ownership of fd (connected, any blocking mode). listener must be a static string. peer: the
 * address accept() returned, or NULL to ask the socket. */
int conn_new(sd_event *event, int fd, const char *listener, const struct sockaddr *peer, socklen_t peer_len,
             ConnFreeCallback on_free, void *userdata, Conn **ret);
Stream *conn_stream(Conn *c);
/* Reads what has arrived already, as if the socket had become readable, for a connection just accepted
 * and attached: a client has usually sent its request by then (always on loopback), and it is served now
 * instead of a loop iteration later. May free c (a connection that failed): use nothing of it after. */
void conn_read_now(Conn *c);
/* The key the owner used to count this connection (per-address limits); opaque to Conn. */
void conn_set_owner_key(Conn *c, const void *key, size_t len);
const void *conn_owner_key(Conn *c, size_t *ret_len);
