/* Logging: to the journal with structured fields when stderr is journald's, else stderr with <N> prefixes. */
#pragma once

#include <syslog.h>

#include "macro.h"

void log_setup(void);                   /* reads GATE_LOG / SYSTEMD_LOG_LEVEL, detects the journal */
void log_set_max_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s); /* "debug", "info", ..., or a digit; -EINVAL */

/* Logs and returns -abs(error) (or 0 when error is 0 and the level is not an error level),
 * so callers can write "return log_error_errno(r, ...)". "%m" expands to strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

/* Structured variant: extra journal fields ("KEY=value" strings, NULL-terminated) go with the message
 * when logging to the journal, and are dropped on stderr. */
int log_struct_internal(int level, int error, const char *const *fields, const char *format, ...)
        _printf_(4, 5);

#define log_full_errno(level, error, ...)                                                   \
        ({                                                                                  \
                int _l = (level), _e = (error);                                             \
                (log_get_max_level() >= _l) ?                                               \
                        log_internal(_l, _e, __FILE__, __LINE__, __func__, __VA_ARGS__) :   \
                        -abs(_e);                                                           \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
