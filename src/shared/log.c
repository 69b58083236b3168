/* Logging: to the journal with structured fields when stderr is journald's, else stderr with <N> prefixes. */
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static bool to_journal = false;
static bool prefix = true;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        if (isempty(s))
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == 0)
                return s[0] - '0';
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int) i;
        /* Friendly aliases, in the spirit of RUST_LOG. */
        if (strcasecmp(s, "error") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
        if (strcasecmp(s, "trace") == 0)
                return LOG_DEBUG;
        return -EINVAL;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

void log_setup(void) {
        const char *e;
        int l;

        e = getenv("GATE_LOG");
        if (isempty(e))
                e = getenv("SYSTEMD_LOG_LEVEL");
        if (!isempty(e)) {
                l = log_level_from_string(e);
                if (l >= 0)
                        max_level = l;
        }
        to_journal = stderr_is_journal();
        /* A terminal reader does not want "<6>" in front of every line. */
        prefix = !isatty(STDERR_FILENO);
}

static int log_dispatch(int level, int error, const char *file, int line, const char *func,
                        const char *const *fields, const char *format, va_list ap) {
        char buf[2048];

        /* "%m" in the format means the error passed in, not whatever errno happens to be. */
        errno = abs(error);
        vsnprintf(buf, sizeof buf, format, ap);

        if (to_journal) {
                struct iovec iov[16];
                char pbuf[32], fbuf[256], lbuf[32], ebuf[32], mbuf[2100];
                size_t n = 0;

                snprintf(mbuf, sizeof mbuf, "MESSAGE=%s", buf);
                iov[n++] = (struct iovec){ mbuf, strlen(mbuf) };
                snprintf(pbuf, sizeof pbuf, "PRIORITY=%i", level);
                iov[n++] = (struct iovec){ pbuf, strlen(pbuf) };
                if (file) {
                        snprintf(fbuf, sizeof fbuf, "CODE_FILE=%s", file);
                        iov[n++] = (struct iovec){ fbuf, strlen(fbuf) };
                        snprintf(lbuf, sizeof lbuf, "CODE_LINE=%i", line);
                        iov[n++] = (struct iovec){ lbuf, strlen(lbuf) };
                }
                if (error != 0) {
                        snprintf(ebuf, sizeof ebuf, "ERRNO=%i", abs(error));
                        iov[n++] = (struct iovec){ ebuf, strlen(ebuf) };
                }
                for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                        iov[n++] = (struct iovec){ (char *) fields[i], strlen(fields[i]) };
                (void) func;
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return -abs(error);
                /* Fall through to stderr when the journal socket is gone. */
        }

        if (prefix)
                fprintf(stderr, "<%i>%s\n", level, buf);
        else
                fprintf(stderr, "%s\n", buf);
        return -abs(error);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = log_dispatch(level, error, file, line, func, NULL, format, ap);
        va_end(ap);
        return r;
}

int log_struct_internal(int level, int error, const char *const *fields, const char *format, ...) {
        va_list ap;
        int r;

        if (level > max_level)
                return -abs(error);
        va_start(ap, format);
        r = log_dispatch(level, error, NULL, 0, NULL, fields, format, ap);
        va_end(ap);
        return r;
}
