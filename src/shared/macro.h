/* Small macros shared by all of gate: cleanup attributes, ownership transfer, array sizes. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _pure_ __attribute__((pure))
#define _warn_unused_result_ __attribute__((warn_unused_result))

/* The struct that contains member m (of type type) at p. */
#define container_of(p, type, m) ((type *) ((char *) (p) - offsetof(type, m)))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#undef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#undef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define STRLEN(s) (sizeof("" s "") - 1)

/* Take ownership of a pointer or fd: returns the value and resets the variable, so a cleanup
 * attribute on it no longer frees what was handed on. */
#define TAKE_PTR(p)                                   \
        ({                                            \
                __typeof__(p) _ptr_ = (p);            \
                (p) = NULL;                           \
                _ptr_;                                \
        })
#define TAKE_FD(fd)                                   \
        ({                                            \
                int _fd_ = (fd);                      \
                (fd) = -EBADF;                        \
                _fd_;                                 \
        })

/* Frees p and returns NULL, for "x = mfree(x);". */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}
static inline void closep(int *fd) {
        safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Defines a pointer-to-pointer cleanup wrapper for a destructor that accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)       \
        static inline void func##p(type *p) {         \
                if (*p)                               \
                        func(*p);                     \
        }

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)
#define strcaseeq(a, b) (strcasecmp((a), (b)) == 0)

static inline bool isempty(const char *s) {
        return !s || !*s;
}

/* Clamp-free errno returner for syscalls: -errno, never 0 by accident. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

#define zero(x) memset(&(x), 0, sizeof(x))
#define new0(t, n) ((t *) calloc((n), sizeof(t)))
#define new(t, n) ((t *) malloc((n) * sizeof(t)))

#define USEC_PER_SEC ((uint64_t) 1000000ULL)
#define USEC_PER_MSEC ((uint64_t) 1000ULL)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)
typedef uint64_t usec_t;
#define USEC_INFINITY ((usec_t) UINT64_MAX)
