/* Listeners: sockets passed by systemd (by name) or bound from the configuration. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "core/listen.h"
#include "shared/log.h"
#include "shared/util.h"

static const char *const listener_kind_table[_LISTENER_KIND_MAX] = {
        [LISTENER_HTTP] = "http",
        [LISTENER_HTTPS] = "https",
        [LISTENER_P2P] = "p2p",
};

const char *listener_kind_to_string(ListenerKind k) {
        if (k < 0 || k >= _LISTENER_KIND_MAX)
                return NULL;
        return listener_kind_table[k];
}

ListenerKind listener_kind_from_string(const char *s) {
        for (int i = 0; i < _LISTENER_KIND_MAX; i++)
                if (s && streq(s, listener_kind_table[i]))
                        return (ListenerKind) i;
        return _LISTENER_KIND_INVALID;
}

void listen_format_address(int fd, char *buf, size_t n) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;

        if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0) {
                snprintf(buf, n, "fd:%i", fd);
                return;
        }
        format_socket_address((struct sockaddr *) &ss, len, buf, n);
}

static int fd_set_flags(int fd) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        fl = fcntl(fd, F_GETFD);
        if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

int listen_fds_from_systemd(ListenFd **ret, size_t *ret_n) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_free_ ListenFd *fds = NULL;
        size_t n_fds = 0;
        int n, r;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %m");
        if (n > 0) {
                fds = new0(ListenFd, (size_t) n);
                if (!fds)
                        return log_oom();
        }

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "unknown";
                ListenerKind k = listener_kind_from_string(name);

                if (k < 0) {
                        log_warning("Ignoring socket fd %i with unexpected name '%s', closing it.", fd, name);
                        safe_close(fd);
                        continue;
                }
                r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
                if (r <= 0) {
                        log_warning("Ignoring fd %i named '%s': not a listening stream socket, closing it.",
                                    fd, name);
                        safe_close(fd);
                        continue;
                }
                /* Several fds may carry one name (a unit with two ListenStream= lines): all serve. */
                r = fd_set_flags(fd);
                if (r < 0) {
                        log_warning_errno(r, "Failed to make fd %i non-blocking, closing it: %m", fd);
                        safe_close(fd);
                        continue;
                }
                fds[n_fds] = (ListenFd){ .kind = k, .fd = fd, .activated = true };
                listen_format_address(fd, fds[n_fds].address, sizeof fds[n_fds].address);
                log_debug("Got socket '%s' (fd %i) on %s from systemd.", name, fd, fds[n_fds].address);
                n_fds++;
        }

        *ret = TAKE_PTR(fds);
        *ret_n = n_fds;
        return n;
}

int listen_bind(const char *address, int backlog) {
        struct sockaddr_storage ss;
        socklen_t len;
        _cleanup_close_ int fd = -EBADF;
        int one = 1, zero = 0;

        if (parse_socket_address(address, &ss, &len) < 0)
                return -EINVAL;

        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
                return -errno;
        if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const void *) &ss;
                /* The wildcard serves IPv4 too; a specific v6 address only itself. */
                int v6only = IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) ? zero : one;
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        }
        if (bind(fd, (struct sockaddr *) &ss, len) < 0)
                return -errno;
        if (listen(fd, backlog) < 0)
                return -errno;
        return TAKE_FD(fd);
}
