/* Listeners: sockets passed by systemd (by name) or bound from the configuration. */
#pragma once

#include <sys/socket.h>

#include "shared/macro.h"

typedef enum ListenerKind {
        LISTENER_HTTP,
        LISTENER_HTTPS,
        LISTENER_P2P,
        _LISTENER_KIND_MAX,
        _LISTENER_KIND_INVALID = -EINVAL,
} ListenerKind;

const char *listener_kind_to_string(ListenerKind k);
ListenerKind listener_kind_from_string(const char *s);

typedef struct ListenFd {
        ListenerKind kind;
        int fd;
        bool activated;         /* passed by systemd rather than bound by us */
        char address[128];      /* for logs and D-Bus */
} ListenFd;

/* Takes the fds systemd passed (sd_listen_fds_with_names, unsetting the environment), validates and
 * sets them non-blocking and close-on-exec. Unknown names are warned about and closed. */
int listen_fds_from_systemd(ListenFd **ret, size_t *ret_n);

/* Binds and listens on one address ("127.0.0.1:31145", "[::]:4919"). IPv6 wildcard is dual-stack.
 * Returns the fd, or a negative errno (-EADDRINUSE, -EADDRNOTAVAIL, -EACCES ...). */
int listen_bind(const char *address, int backlog);

/* Formats the bound address of a listening fd. */
void listen_format_address(int fd, char *buf, size_t n);
