/* Small utilities: clocks, parsing of sizes, durations and numbers, string helpers. */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "util.h"

usec_t now_usec(int clock_id) {
        struct timespec ts;

        clock_gettime(clock_id, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

bool http_list_has_token(const char *v, size_t n, const char *token) {
        size_t l = strlen(token);

        for (size_t i = 0; i <= n;) {
                size_t j = i, a, b;

                while (j < n && v[j] != ',')
                        j++;
                a = i;
                b = j;
                while (a < b && (v[a] == ' ' || v[a] == '\t'))
                        a++;
                while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                        b--;
                if (b - a == l && strncasecmp(v + a, token, l) == 0)
                        return true;
                i = j + 1;
        }
        return false;
}

char *format_uint64(uint64_t v, char out[static 21]) {
        char tmp[20];
        size_t n = sizeof tmp;

        do {
                tmp[--n] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        memcpy(out, tmp + n, sizeof tmp - n);
        out[sizeof tmp - n] = 0;
        return out;
}

int parse_uint64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || !isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end != 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_uint32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r;

        r = parse_uint64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_bool(const char *s) {
        if (!s)
                return -EINVAL;
        if (streq(s, "true") || streq(s, "yes") || streq(s, "1") || streq(s, "on"))
                return 1;
        if (streq(s, "false") || streq(s, "no") || streq(s, "0") || streq(s, "off"))
                return 0;
        return -EINVAL;
}

/* Splits "123abc" into a number and a suffix; the suffix is looked up in a table. */
typedef struct SuffixFactor {
        const char *suffix;
        uint64_t factor;
} SuffixFactor;

static int parse_with_suffix(const char *s, const SuffixFactor *table,
                             size_t n_table, uint64_t default_factor, uint64_t *ret) {
        const char *p = s;
        uint64_t v = 0, factor = default_factor;
        bool any = false;

        if (isempty(s))
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        while (isdigit((unsigned char) *p)) {
                if (v > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
                p++;
                any = true;
        }
        if (!any)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        if (*p) {
                size_t i;
                for (i = 0; i < n_table; i++)
                        if (streq(p, table[i].suffix))
                                break;
                if (i >= n_table)
                        return -EINVAL;
                factor = table[i].factor;
        }
        if (factor != 0 && v > UINT64_MAX / factor)
                return -ERANGE;
        *ret = v * factor;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const SuffixFactor table[] = {
                { "B", 1 },
                { "K", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "k", 1ULL << 10 },
                { "M", 1ULL << 20 }, { "MiB", 1ULL << 20 },
                { "G", 1ULL << 30 }, { "GiB", 1ULL << 30 },
        };
        return parse_with_suffix(s, table, ELEMENTSOF(table), 1, ret);
}

int parse_timespan(const char *s, usec_t *ret) {
        static const SuffixFactor table[] = {
                { "us", 1 },
                { "ms", USEC_PER_MSEC },
                { "s", USEC_PER_SEC },     { "sec", USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
        };
        return parse_with_suffix(s, table, ELEMENTSOF(table), USEC_PER_SEC, ret);
}

int format_timespan(char *buf, size_t n, usec_t t) {
        if (t == USEC_INFINITY)
                return snprintf(buf, n, "infinity");
        if (t % USEC_PER_SEC == 0)
                return snprintf(buf, n, "%llus", (unsigned long long) (t / USEC_PER_SEC));
        if (t % USEC_PER_MSEC == 0)
                return snprintf(buf, n, "%llums", (unsigned long long) (t / USEC_PER_MSEC));
        return snprintf(buf, n, "%lluus", (unsigned long long) t);
}

int parse_socket_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char host[256];
        const char *port_s;
        uint32_t port;
        struct sockaddr_storage ss = {};

        if (isempty(s))
                return -EINVAL;

        if (s[0] == '[') {
                const char *e = strchr(s, ']');
                if (!e || e[1] != ':' || (size_t) (e - s - 1) >= sizeof host)
                        return -EINVAL;
                memcpy(host, s + 1, (size_t) (e - s - 1));
                host[e - s - 1] = 0;
                port_s = e + 2;
        } else {
                const char *c = strrchr(s, ':');
                if (!c) {
                        host[0] = 0;
                        port_s = s;
                } else {
                        if (strchr(s, ':') != c) /* bare IPv6 without brackets is ambiguous */
                                return -EINVAL;
                        if ((size_t) (c - s) >= sizeof host)
                                return -EINVAL;
                        memcpy(host, s, (size_t) (c - s));
                        host[c - s] = 0;
                        port_s = c + 1;
                }
        }

        if (parse_uint32(port_s, &port) < 0 || port > 65535)
                return -EINVAL;

        if (host[0] == 0 || streq(host, "*")) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
                a->sin6_family = AF_INET6;
                a->sin6_addr = in6addr_any;
                a->sin6_port = htons((uint16_t) port);
                *ret_len = sizeof *a;
        } else if (streq(host, "localhost")) {
                struct sockaddr_in *a = (struct sockaddr_in *) &ss;
                a->sin_family = AF_INET;
                a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a->sin_port = htons((uint16_t) port);
                *ret_len = sizeof *a;
        } else {
                struct sockaddr_in *a4 = (struct sockaddr_in *) &ss;
                struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &ss;
                if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
                        a4->sin_family = AF_INET;
                        a4->sin_port = htons((uint16_t) port);
                        *ret_len = sizeof *a4;
                } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
                        a6->sin6_family = AF_INET6;
                        a6->sin6_port = htons((uint16_t) port);
                        *ret_len = sizeof *a6;
                } else
                        return -EINVAL;
        }
        *ret = ss;
        return 0;
}

int format_socket_address(const struct sockaddr *sa, socklen_t len, char *buf, size_t n) {
        char h[INET6_ADDRSTRLEN];

        (void) len;
        if (sa->sa_family == AF_INET) {
                /* By hand, as inet_ntop() and snprintf() would write it: every usage row formats its client's
                 * address, and those two cost 2.7k instructions a row (callgrind, the usage writer). */
                const struct sockaddr_in *a = (const void *) sa;
                const uint8_t *b = (const uint8_t *) &a->sin_addr;
                char t[sizeof "255.255.255.255:65535"], d[8];
                size_t k = 0, m;

                for (unsigned i = 0; i < 4; i++) {
                        unsigned v = b[i];
                        if (v >= 100)
                                t[k++] = (char) ('0' + v / 100);
                        if (v >= 10)
                                t[k++] = (char) ('0' + v / 10 % 10);
                        t[k++] = (char) ('0' + v % 10);
                        t[k++] = i < 3 ? '.' : ':';
                }
                m = 0;
                for (unsigned v = ntohs(a->sin_port); m == 0 || v > 0; v /= 10)
                        d[m++] = (char) ('0' + v % 10);
                while (m > 0)
                        t[k++] = d[--m];
                if (n > 0) {
                        size_t c = MIN(k, n - 1);
                        memcpy(buf, t, c);
                        buf[c] = 0;
                }
                return (int) k;
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const void *) sa;
                inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof h);
                return snprintf(buf, n, "[%s]:%u", h, ntohs(a->sin6_port));
        }
        if (sa->sa_family == AF_UNIX)
                return snprintf(buf, n, "unix");
        return snprintf(buf, n, "unknown");
}

bool sockaddr_is_loopback(const struct sockaddr *sa) {
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *a = (const void *) sa;
                return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const void *) sa;
                if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
                        return true;
                if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
                        return a->sin6_addr.s6_addr[12] == 127;
                return false;
        }
        return sa->sa_family == AF_UNIX;
}

char *strdup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

char *strjoin_free(char *a, const char *b) {
        size_t la = a ? strlen(a) : 0, lb = strlen(b);
        char *r = realloc(a, la + lb + 1);
        if (!r) {
                free(a);
                return NULL;
        }
        memcpy(r + la, b, lb + 1);
        return r;
}

int strv_extend(char ***l, size_t *n, const char *s) {
        char *c, **nl;

        c = strdup(s);
        if (!c)
                return -ENOMEM;
        nl = realloc(*l, sizeof(char *) * (*n + 2));
        if (!nl) {
                free(c);
                return -ENOMEM;
        }
        nl[(*n)++] = c;
        nl[*n] = NULL;
        *l = nl;
        return 0;
}

void strv_free(char **l) {
        for (char **p = l; p && *p; p++)
                free(*p);
        free(l);
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

bool string_in_table(const char *s, const char *const *a, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq(s, a[i]))
                        return true;
        return false;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *d = NULL;
        size_t len = 0, alloc = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (alloc - len < 4096) {
                        if (alloc >= max + 1)
                                return -EFBIG;
                        size_t na = alloc ? alloc * 2 : 8192;
                        char *nd = realloc(d, na + 1);
                        if (!nd)
                                return -ENOMEM;
                        d = nd;
                        alloc = na;
                }
                ssize_t k = read(fd, d + len, alloc - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > max)
                        return -EFBIG;
        }
        if (!d) {
                d = malloc(1);
                if (!d)
                        return -ENOMEM;
        }
        d[len] = 0;
        *ret = TAKE_PTR(d);
        if (ret_len)
                *ret_len = len;
        return 0;
}

bool strv_equal(char *const *a, char *const *b) {
        size_t i;

        for (i = 0; a && a[i] && b && b[i]; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return (!a || !a[i]) && (!b || !b[i]);
}

int fd_table_reserve(unsigned n) {
        struct rlimit rl;
        int fd;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur != RLIM_INFINITY && n > rl.rlim_cur)
                n = (unsigned) rl.rlim_cur;
        if (n <= 1)
                return 0;
        /* F_DUPFD gives the lowest free fd at or above its argument: asking for n - 1 grows the table to
         * hold it; closing the copy keeps the table. */
        fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, (int) (n - 1));
        if (fd < 0)
                return -errno;
        (void) close(fd);
        return 0;
}
