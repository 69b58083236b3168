/* Small utilities: clocks, parsing of sizes, durations and numbers, string helpers. */
#pragma once

#include <sys/socket.h>

#include "macro.h"

usec_t now_usec(int clock_id);
static inline usec_t now_mono(void) {
        return now_usec(1 /* CLOCK_MONOTONIC */);
}

int parse_uint64(const char *s, uint64_t *ret);
/* The value of a hexadecimal digit, -1 for any other character. */
int unhexchar(char c);
/* Whether an HTTP list value ("a, b ,c") has token (case-insensitively) as one of its elements. */
bool http_list_has_token(const char *v, size_t n, const char *token);
/* Formats v in decimal into out (NUL-terminated); returns out. For hot paths where printf costs. */
char *format_uint64(uint64_t v, char out[static 21]);
int parse_uint32(const char *s, uint32_t *ret);
int parse_bool(const char *s);                        /* 1, 0 or -EINVAL */
int parse_size(const char *s, uint64_t *ret);         /* "32M", "1GiB", "4096", "64K" (base 1024) */
int parse_timespan(const char *s, usec_t *ret);       /* "30s", "500ms", "2min", "1h", plain seconds */
int format_timespan(char *buf, size_t n, usec_t t);

/* "host:port", "[v6]:port", "*:port", ":port" or "port". Host may be a name only if it resolves
 * to a literal: we never do DNS here. */
int parse_socket_address(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);
int format_socket_address(const struct sockaddr *sa, socklen_t len, char *buf, size_t n);
bool sockaddr_is_loopback(const struct sockaddr *sa);

char *strdup_or_null(const char *s);
bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);
char *strjoin_free(char *a, const char *b);     /* a + b, frees a; NULL on OOM (a freed) */
int strv_extend(char ***l, size_t *n, const char *s);
void strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)
size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
/* Whether s equals one of the n strings of a (a fixed table). */
bool string_in_table(const char *s, const char *const *a, size_t n);
#define STRING_IN_TABLE(s, a) string_in_table((s), (a), ELEMENTSOF(a))

int mkdir_p(const char *path, mode_t mode);
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_len);
bool strv_equal(char *const *a, char *const *b);

/* Grows the process's fd table to hold n fds (at most RLIMIT_NOFILE) now, while it has one thread. The
 * kernel doubles the table as fds are taken, and in a multi-threaded process each doubling waits for an
 * RCU grace period inside the accept() or socket() that needed it (expand_fdtable() calls
 * synchronize_rcu() when the table is shared). */
int fd_table_reserve(unsigned n);

/* Writes cp (at most U+10FFFF; the caller has ruled out what it must not encode) as UTF-8 into out;
 * returns the bytes written, 1 to 4. Inline: the JSON readers call it per escaped character. */
static inline size_t utf8_encode(uint32_t cp, char out[static 4]) {
        if (cp < 0x80) {
                out[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char) (0xc0 | (cp >> 6));
                out[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char) (0xe0 | (cp >> 12));
                out[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char) (0xf0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}
