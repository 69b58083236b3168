/* sse-load: opens N concurrent SSE streams (HTTP/1.1, or h2c with M per connection); reports TTFT, gaps, stalls as JSON. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A gap between two data events longer than this is a stall (the definition); --stall-ms changes it
 * for slower pacing. */
#define STALL_USEC_DEFAULT 1000000ULL
/* The response head is collected whole before the body is parsed; no real server sends more. */
#define HEAD_MAX 16384
#define MAX_ERROR_KINDS 32

typedef enum StreamState {
        STATE_IDLE,             /* not started yet (ramp) */
        STATE_QUEUED,           /* h2: due, waiting for its connection's SETTINGS or a free stream slot */
        STATE_CONNECTING,
        STATE_SENDING,
        STATE_HEAD,
        STATE_BODY,
        STATE_DONE,
} StreamState;

/* How the body is framed (RFC 9112 section 6.3). */
typedef enum BodyFraming {
        FRAMING_LENGTH,
        FRAMING_CHUNKED,
        FRAMING_CLOSE,
} BodyFraming;

/* Chunked transfer decoding, one byte at a time so any split of the input works. */
typedef enum ChunkState {
        CHUNK_SIZE,             /* hex digits */
        CHUNK_EXT,              /* ";ext" up to CRLF */
        CHUNK_SIZE_LF,
        CHUNK_DATA,
        CHUNK_DATA_CR,
        CHUNK_DATA_LF,
        CHUNK_TRAILER,          /* trailer lines after the last chunk, up to an empty line */
        CHUNK_TRAILER_LF,
        CHUNK_END,
} ChunkState;

typedef struct Conn Conn;

typedef struct Stream {
        int fd;                 /* HTTP/1.1 only */
        Conn *conn;             /* h2 only */
        int32_t id;             /* h2 stream id, 0 before it was submitted */
        bool open;              /* h2: submitted and not closed yet (counted in its connection's active) */
        StreamState state;
        size_t sent;            /* bytes of the request (h2: of the body) written */
        uint64_t t_sent;        /* when the request went out (µs, CLOCK_MONOTONIC) */
        uint64_t t_last;        /* last data event, 0 none yet */
        char *head;             /* response head being collected */
        size_t head_len;
        unsigned status;

        BodyFraming framing;
        uint64_t remaining;     /* FRAMING_LENGTH: body bytes left; CHUNK_DATA: chunk bytes left */
        ChunkState chunk;
        bool chunk_size_seen;
        unsigned trailer_line_len;

        /* SSE: only what is needed to recognise "data:" lines and the end of an event. */
        char line[8];           /* first bytes of the current line */
        unsigned line_len;      /* bytes in the current line (saturating) */
        bool line_cr;           /* last byte was CR: a following LF belongs to the same line end */
        bool event_has_data;
        bool event_is_done;     /* the event's data is "[DONE]" */
        unsigned events;
} Stream;

typedef struct Samples {
        uint32_t *v;
        size_t n, size;
} Samples;

/* An h2c connection: the streams l->streams[first..end) go over it. */
struct Conn {
        struct Load *load;
        int fd;
        nghttp2_session *session;
        unsigned first, end;
        unsigned next;          /* first of its streams not submitted yet */
        unsigned marked;        /* its streams below this were counted as waiting for a slot already */
        unsigned active;        /* submitted and not closed */
        unsigned left;          /* not finished */
        bool opened, connecting;
        bool ready;             /* the server's SETTINGS arrived: its stream limit is known */
        bool goaway;
        int32_t goaway_last_id;
        uint32_t events;        /* the epoll mask set now */
        int sys_error;          /* errno of a failed send(), for the error kind */
        int fatal;              /* a negative errno a callback hit (out of memory): ends the tool */
        char error[64];         /* set: the connection is gone or refuses new streams; their error kind */
};

typedef struct Load {
        int epoll_fd;
        struct sockaddr_storage addr;
        socklen_t addr_len;
        char *request;
        size_t request_len;
        Stream *streams;
        unsigned n_streams;

        /* h2c: streams per connection (0: HTTP/1.1), the request head shared by all streams, the body. */
        unsigned h2;
        Conn *conns;
        unsigned n_conns;
        nghttp2_nv *nv;
        size_t n_nv;
        char **nv_strings;      /* what nv points to */
        const char *body;
        size_t body_len;
        uint64_t now;           /* when the bytes being fed to nghttp2 were read */
        unsigned queued;        /* streams that waited for a free slot (the server's stream limit) */
        uint32_t peer_max_streams; /* the lowest SETTINGS_MAX_CONCURRENT_STREAMS seen, 0 none yet */

        unsigned started, finished, ok;
        Samples ttft, gaps;
        uint64_t stall_usec;
        uint64_t stalls, chunks;
        struct {
                char name[64];
                unsigned count;
        } errors[MAX_ERROR_KINDS];
        unsigned n_errors;
} Load;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static int samples_add(Samples *s, uint64_t v) {
        if (s->n == s->size) {
                size_t size = s->size ? s->size * 2 : 4096;
                uint32_t *p = realloc(s->v, size * sizeof *p);
                if (!p)
                        return -ENOMEM;
                s->v = p;
                s->size = size;
        }
        s->v[s->n++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t) v;
        return 0;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile over sorted samples. */
static uint32_t percentile(const Samples *s, unsigned p) {
        size_t rank = (s->n * p + 99) / 100;
        return s->v[rank > 0 ? rank - 1 : 0];
}

static void print_samples(const char *name, Samples *s) {
        if (s->n == 0) {
                printf("\"%s\":{\"p50\":null,\"p99\":null,\"max\":null}", name);
                return;
        }
        qsort(s->v, s->n, sizeof *s->v, cmp_u32);
        printf("\"%s\":{\"p50\":%" PRIu32 ",\"p99\":%" PRIu32 ",\"max\":%" PRIu32 "}", name, percentile(s, 50),
               percentile(s, 99), s->v[s->n - 1]);
}

static void count_error(Load *l, const char *name) {
        for (unsigned i = 0; i < l->n_errors; i++)
                if (strcmp(l->errors[i].name, name) == 0) {
                        l->errors[i].count++;
                        return;
                }
        if (l->n_errors == MAX_ERROR_KINDS)
                name = "other";
        if (l->n_errors < MAX_ERROR_KINDS) {
                snprintf(l->errors[l->n_errors].name, sizeof l->errors[l->n_errors].name, "%s", name);
                l->errors[l->n_errors++].count = 1;
        }
}

static void stream_close(Load *l, Stream *s) {
        if (s->fd >= 0) {
                /* No epoll_ctl(DEL): close() drops the registration, one syscall less per stream. */
                close(s->fd);
                s->fd = -1;
        }
        free(s->head);
        s->head = NULL;
        if (s->state != STATE_DONE) {
                s->state = STATE_DONE;
                l->finished++;
                if (s->conn)
                        s->conn->left--;
        }
}

static void stream_fail(Load *l, Stream *s, const char *what) {
        count_error(l, what);
        stream_close(l, s);
}

static void stream_fail_errno(Load *l, Stream *s, const char *op, int error) {
        char name[64];

        snprintf(name, sizeof name, "%s: %s", op, strerrorname_np(error) ?: "unknown");
        stream_fail(l, s, name);
}

/* A complete, successful response: it counts as ok when it had a 200 status. */
static void stream_complete(Load *l, Stream *s) {
        if (s->status == 200) {
                if (s->events == 0)
                        count_error(l, "no data events");
                else
                        l->ok++;
        }
        stream_close(l, s);
}

static int stream_start(Load *l, Stream *s) {
        int fd, one = 1;

        fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                stream_fail_errno(l, s, "socket", errno);
                return 0;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->fd = fd;
        s->state = STATE_CONNECTING;
        if (connect(fd, (struct sockaddr *) &l->addr, l->addr_len) < 0 && errno != EINPROGRESS) {
                stream_fail_errno(l, s, "connect", errno);
                return 0;
        }
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = s };
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        return 0;
}

/* One data event arrived (the event ended with an empty line). */
static int stream_event(Load *l, Stream *s, uint64_t now) {
        int r;

        if (s->event_is_done)
                return 0; /* "[DONE]" ends the stream; it is no token */
        if (s->events == 0)
                r = samples_add(&l->ttft, now - s->t_sent);
        else {
                uint64_t gap = now - s->t_last;
                if (gap > l->stall_usec)
                        l->stalls++;
                r = samples_add(&l->gaps, gap);
        }
        s->events++;
        s->t_last = now;
        l->chunks++;
        return r;
}

/* Feeds decoded body bytes to the SSE line scanner. */
static int stream_sse(Load *l, Stream *s, const char *p, size_t n, uint64_t now) {
        for (size_t i = 0; i < n; i++) {
                char ch = p[i];

                if (ch == '\n' && s->line_cr) {
                        s->line_cr = false;
                        continue; /* CRLF: the CR ended the line already */
                }
                s->line_cr = ch == '\r';
                if (ch != '\r' && ch != '\n') {
                        if (s->line_len < sizeof s->line)
                                s->line[s->line_len] = ch;
                        if (s->line_len < UINT32_MAX)
                                s->line_len++;
                        continue;
                }
                /* End of a line. */
                if (s->line_len == 0) {
                        if (s->event_has_data) {
                                int r = stream_event(l, s, now);
                                if (r < 0)
                                        return r;
                        }
                        s->event_has_data = false;
                        s->event_is_done = false;
                        continue;
                }
                if (s->line_len >= 5 && memcmp(s->line, "data:", 5) == 0) {
                        s->event_has_data = true;
                        /* "data: [DONE]" is 12 bytes; only its first 8 are kept, enough to tell. */
                        s->event_is_done = s->line_len >= 11 && s->line_len <= 12 &&
                                           (memcmp(s->line + 5, " [D", 3) == 0 || memcmp(s->line + 5, "[DO", 3) == 0);
                }
                s->line_len = 0;
        }
        return 0;
}

/* Body bytes as they came off the wire: removes the chunked framing. Returns 1 when the body ended. */
static int stream_body(Load *l, Stream *s, const char *p, size_t n, uint64_t now) {
        int r;

        if (s->framing == FRAMING_CLOSE)
                return stream_sse(l, s, p, n, now);
        if (s->framing == FRAMING_LENGTH) {
                size_t take = n < s->remaining ? n : (size_t) s->remaining;
                r = stream_sse(l, s, p, take, now);
                if (r < 0)
                        return r;
                s->remaining -= take;
                if (take < n)
                        return -EPROTO; /* more than Content-Length */
                return s->remaining == 0;
        }

        for (size_t i = 0; i < n; i++) {
                char ch = p[i];

                switch (s->chunk) {
                case CHUNK_SIZE: {
                        int d = ch >= '0' && ch <= '9' ? ch - '0' :
                                ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
                                ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                        if (d >= 0) {
                                if (s->remaining > (UINT64_MAX >> 4))
                                        return -EPROTO;
                                s->remaining = (s->remaining << 4) | (uint64_t) d;
                                s->chunk_size_seen = true;
                        } else if (!s->chunk_size_seen)
                                return -EPROTO;
                        else if (ch == ';' || ch == ' ' || ch == '\t')
                                s->chunk = CHUNK_EXT;
                        else if (ch == '\r')
                                s->chunk = CHUNK_SIZE_LF;
                        else
                                return -EPROTO;
                        break;
                }
                case CHUNK_EXT:
                        if (ch == '\r')
                                s->chunk = CHUNK_SIZE_LF;
                        break;
                case CHUNK_SIZE_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        s->chunk_size_seen = false;
                        if (s->remaining == 0) {
                                s->chunk = CHUNK_TRAILER;
                                s->trailer_line_len = 0;
                        } else
                                s->chunk = CHUNK_DATA;
                        break;
                case CHUNK_DATA: {
                        size_t take = n - i < s->remaining ? n - i : (size_t) s->remaining;
                        r = stream_sse(l, s, p + i, take, now);
                        if (r < 0)
                                return r;
                        s->remaining -= take;
                        i += take - 1;
                        if (s->remaining == 0)
                                s->chunk = CHUNK_DATA_CR;
                        break;
                }
                case CHUNK_DATA_CR:
                        if (ch != '\r')
                                return -EPROTO;
                        s->chunk = CHUNK_DATA_LF;
                        break;
                case CHUNK_DATA_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        s->chunk = CHUNK_SIZE;
                        break;
                case CHUNK_TRAILER:
                        if (ch == '\r')
                                s->chunk = CHUNK_TRAILER_LF;
                        else
                                s->trailer_line_len++;
                        break;
                case CHUNK_TRAILER_LF:
                        if (ch != '\n')
                                return -EPROTO;
                        if (s->trailer_line_len == 0) {
                                s->chunk = CHUNK_END;
                                return 1;
                        }
                        s->trailer_line_len = 0;
                        s->chunk = CHUNK_TRAILER;
                        break;
                case CHUNK_END:
                        return -EPROTO; /* bytes after the end of the body */
                }
        }
        return 0;
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value) {
        size_t nl = strlen(name);

        if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
                return false;
        line += nl + 1;
        while (*line == ' ' || *line == '\t')
                line++;
        *ret_value = line;
        return true;
}

/* The whole head is in s->head (NUL-terminated, ending in an empty line): status and framing. */
static int stream_parse_head(Stream *s) {
        char *line = s->head, *end;
        bool chunked = false, have_length = false;
        unsigned major, minor, status;
        uint64_t length = 0;

        if (sscanf(line, "HTTP/%u.%u %3u", &major, &minor, &status) != 3 || major != 1)
                return -EPROTO;
        s->status = status;
        while ((end = strstr(line, "\r\n")) && end != line) {
                const char *v;
                size_t len = (size_t) (end - line);

                *end = 0;
                if (header_is(line, len, "transfer-encoding", &v))
                        chunked = strcasestr(v, "chunked") != NULL;
                else if (header_is(line, len, "content-length", &v)) {
                        char *e;
                        errno = 0;
                        unsigned long long x = strtoull(v, &e, 10);
                        if (errno != 0 || e == v || *v == '-')
                                return -EPROTO;
                        length = x;
                        have_length = true;
                }
                line = end + 2;
        }
        if (chunked)
                s->framing = FRAMING_CHUNKED;
        else if (have_length)
                s->framing = FRAMING_LENGTH;
        else
                s->framing = FRAMING_CLOSE;
        s->remaining = chunked ? 0 : length;
        s->chunk = CHUNK_SIZE;
        return 0;
}

/* Input for a stream waiting for its head or reading its body. */
static int stream_input(Load *l, Stream *s, const char *p, size_t n, uint64_t now) {
        int r;

        if (s->state == STATE_HEAD) {
                size_t take = n < HEAD_MAX - s->head_len ? n : HEAD_MAX - s->head_len;
                char *e;

                if (!s->head) {
                        s->head = malloc(HEAD_MAX + 1);
                        if (!s->head)
                                return -ENOMEM;
                }
                memcpy(s->head + s->head_len, p, take);
                s->head_len += take;
                s->head[s->head_len] = 0;
                e = strstr(s->head, "\r\n\r\n");
                if (!e) {
                        if (s->head_len == HEAD_MAX) {
                                stream_fail(l, s, "response head too large");
                                return 0;
                        }
                        return 0;
                }
                size_t head_bytes = (size_t) (e + 4 - s->head);
                size_t rest = head_bytes <= s->head_len ? s->head_len - head_bytes : 0;
                /* What followed the head in this read: the body's first bytes. */
                p = p + take - rest;
                n = rest + (n - take);
                e[2] = 0;
                if (stream_parse_head(s) < 0) {
                        stream_fail(l, s, "malformed response head");
                        return 0;
                }
                if (s->status >= 100 && s->status < 200) {
                        /* An interim answer: the real head follows. */
                        s->head_len = 0;
                        return n > 0 ? stream_input(l, s, p, n, now) : 0;
                }
                free(s->head);
                s->head = NULL;
                s->state = STATE_BODY;
                if (s->status != 200) {
                        char name[32];
                        snprintf(name, sizeof name, "status %u", s->status);
                        stream_fail(l, s, name);
                        return 0;
                }
                if (s->framing == FRAMING_LENGTH && s->remaining == 0) {
                        stream_complete(l, s);
                        return 0;
                }
                if (n == 0)
                        return 0;
        }

        r = stream_body(l, s, p, n, now);
        if (r == -EPROTO) {
                stream_fail(l, s, "malformed body framing");
                return 0;
        }
        if (r < 0)
                return r;
        if (r > 0)
                stream_complete(l, s);
        return 0;
}

static int stream_send(Load *l, Stream *s) {
        while (s->sent < l->request_len) {
                ssize_t k = send(s->fd, l->request + s->sent, l->request_len - s->sent, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        stream_fail_errno(l, s, "send", errno);
                        return 0;
                }
                s->sent += (size_t) k;
        }
        s->state = STATE_HEAD;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
                return -errno;
        return 0;
}

static int stream_on_event(Load *l, Stream *s, char *buf, size_t size) {
        if (s->state == STATE_CONNECTING) {
                int error = 0;
                socklen_t len = sizeof error;
                if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        stream_fail_errno(l, s, "connect", error);
                        return 0;
                }
                s->state = STATE_SENDING;
                s->t_sent = now_usec();
        }
        if (s->state == STATE_SENDING)
                return stream_send(l, s);

        /* One read per wakeup: level-triggered epoll comes back for the rest, and every stream gets
         * its turn, as a server's clients would. */
        ssize_t k = recv(s->fd, buf, size, 0);
        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                stream_fail_errno(l, s, "recv", errno);
                return 0;
        }
        if (k == 0) {
                if (s->state == STATE_BODY && s->framing == FRAMING_CLOSE)
                        stream_complete(l, s);
                else
                        stream_fail(l, s, s->state == STATE_HEAD ? "closed before response" :
                                                                    "closed before end of body");
                return 0;
        }
        return stream_input(l, s, buf, (size_t) k, now_usec());
}

/* ---- h2c: M streams per connection, prior knowledge (the connection preface straight away) ---- */

static void conn_close(Conn *c) {
        nghttp2_session_del(c->session);
        c->session = NULL;
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        c->connecting = c->ready = false;
        if (c->error[0] == 0)
                snprintf(c->error, sizeof c->error, "connection closed");
}

/* The connection is gone: its streams that are due and not finished fail. kind NULL: each by how far it got,
 * with the names the HTTP/1.1 mode uses. Streams the ramp starts later fail with c->error. */
static void conn_fail(Load *l, Conn *c, const char *kind) {
        unsigned due = l->started < c->end ? l->started : c->end;

        if (kind && c->error[0] == 0)
                snprintf(c->error, sizeof c->error, "%s", kind);
        conn_close(c);
        for (unsigned i = c->first; i < due; i++) {
                Stream *s = &l->streams[i];
                if (s->state == STATE_DONE)
                        continue;
                stream_fail(l, s, kind ? c->error :
                                  s->state == STATE_HEAD ? "closed before response" :
                                  s->state == STATE_BODY ? "closed before end of body" : c->error);
        }
}

static void conn_fail_errno(Load *l, Conn *c, const char *op, int error) {
        char name[64];

        snprintf(name, sizeof name, "%s: %s", op, strerrorname_np(error) ?: "unknown");
        conn_fail(l, c, name);
}

static void conn_fail_h2(Load *l, Conn *c, int lib_error) {
        char name[64];

        snprintf(name, sizeof name, "h2: %s", nghttp2_strerror(lib_error));
        conn_fail(l, c, name);
}

static Stream *conn_stream(Load *l, Conn *c, int32_t id) {
        Stream *s = nghttp2_session_get_stream_user_data(c->session, id);

        if (s)
                return s;
        /* Not open (a HEADERS frame that was never sent): look it up by id. */
        for (unsigned i = c->first; i < c->next; i++)
                if (l->streams[i].id == id)
                        return &l->streams[i];
        return NULL;
}

static void stream_h2_ended(Stream *s) {
        if (s->open) {
                s->open = false;
                s->conn->active--;
        }
}

static ssize_t h2_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags, void *userdata) {
        Conn *c = userdata;
        ssize_t k = send(c->fd, data, length, MSG_NOSIGNAL);

        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return NGHTTP2_ERR_WOULDBLOCK;
                c->sys_error = errno;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return k;
}

static ssize_t h2_body_read(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *userdata) {
        Stream *s = source->ptr;
        Load *l = s->conn->load;
        size_t take = l->body_len - s->sent < length ? l->body_len - s->sent : length;

        memcpy(buf, l->body + s->sent, take);
        s->sent += take;
        if (s->sent == l->body_len)
                *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) take;
}

static int h2_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags, void *userdata) {
        Stream *s;

        if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || memcmp(name, ":status", 7) != 0)
                return 0;
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!s || s->state != STATE_HEAD)
                return 0;
        /* nghttp2 checked it is three digits. */
        s->status = 0;
        for (size_t i = 0; i < valuelen; i++)
                s->status = s->status * 10 + (unsigned) (value[i] - '0');
        return 0;
}

static int h2_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *userdata) {
        Conn *c = userdata;
        Load *l = c->load;
        Stream *s;

        switch (frame->hd.type) {
        case NGHTTP2_SETTINGS: {
                if (frame->hd.flags & NGHTTP2_FLAG_ACK)
                        break;
                uint32_t max = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
                if (l->peer_max_streams == 0 || max < l->peer_max_streams)
                        l->peer_max_streams = max;
                c->ready = true;
                break;
        }
        case NGHTTP2_GOAWAY:
                /* Streams above last_stream_id are closed by nghttp2 (on_stream_close, below); those not
                 * submitted yet can no longer be. */
                c->goaway = true;
                c->goaway_last_id = frame->goaway.last_stream_id;
                if (c->error[0] == 0)
                        snprintf(c->error, sizeof c->error, "GOAWAY %s",
                                 nghttp2_http2_strerror(frame->goaway.error_code));
                break;
        case NGHTTP2_HEADERS:
                s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
                if (!s || s->state == STATE_DONE)
                        break;
                if (s->state == STATE_HEAD) {
                        if (s->status >= 100 && s->status < 200) {
                                s->status = 0; /* an interim answer: the real head follows */
                                break;
                        }
                        s->state = STATE_BODY;
                        if (s->status != 200) {
                                char name[32];
                                snprintf(name, sizeof name, "status %u", s->status);
                                stream_fail(l, s, name);
                                if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                                        (void) nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
                                                                         frame->hd.stream_id, NGHTTP2_CANCEL);
                                break;
                        }
                }
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                        stream_complete(l, s);
                break;
        case NGHTTP2_DATA:
                s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
                if (s && s->state == STATE_BODY && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                        stream_complete(l, s);
                break;
        }
        return 0;
}

/* DATA payloads are the body as it is: no chunked framing in h2. */
static int h2_on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                      void *userdata) {
        Conn *c = userdata;
        Stream *s = nghttp2_session_get_stream_user_data(session, id);
        int r;

        if (!s || s->state != STATE_BODY)
                return 0;
        r = stream_sse(c->load, s, (const char *) data, len, c->load->now);
        if (r < 0) {
                c->fatal = r;
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
}

static int h2_on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *userdata) {
        Conn *c = userdata;
        Stream *s = conn_stream(c->load, c, id);
        char name[64];

        if (!s)
                return 0;
        stream_h2_ended(s);
        if (s->state == STATE_DONE)
                return 0;
        if (c->goaway && id > c->goaway_last_id)
                snprintf(name, sizeof name, "%s", c->error);
        else if (error_code != NGHTTP2_NO_ERROR)
                snprintf(name, sizeof name, "RST_STREAM %s", nghttp2_http2_strerror(error_code));
        else
                snprintf(name, sizeof name, "%s", s->state == STATE_HEAD ? "closed before response" :
                                                                         "closed before end of body");
        stream_fail(c->load, s, name);
        return 0;
}

/* A request nghttp2 could not send (after a GOAWAY, say): it never opened, so no on_stream_close. */
static int h2_on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                                void *userdata) {
        Conn *c = userdata;
        Stream *s;
        char name[64];

        if (frame->hd.type != NGHTTP2_HEADERS || !(s = conn_stream(c->load, c, frame->hd.stream_id)))
                return 0;
        stream_h2_ended(s);
        if (s->state != STATE_DONE) {
                snprintf(name, sizeof name, "not sent: %s", nghttp2_strerror(lib_error_code));
                stream_fail(c->load, s, name);
        }
        return 0;
}

/* Sends what nghttp2 has, and waits for writability only while some of it is left. */
static int conn_flush(Load *l, Conn *c) {
        uint32_t events;
        int r;

        r = nghttp2_session_send(c->session);
        if (r < 0) {
                if (c->fatal < 0)
                        return c->fatal;
                if (r == NGHTTP2_ERR_CALLBACK_FAILURE && c->sys_error)
                        conn_fail_errno(l, c, "send", c->sys_error);
                else
                        conn_fail_h2(l, c, r);
                return 0;
        }
        if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
                /* After a GOAWAY, both ways, once its last streams closed. */
                conn_fail(l, c, NULL);
                return 0;
        }
        events = EPOLLIN | (nghttp2_session_want_write(c->session) ? EPOLLOUT : 0);
        if (events != c->events) {
                struct epoll_event ev = { .events = events, .data.ptr = c };
                if (epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                        return -errno;
                c->events = events;
        }
        return 0;
}

/* Submits the due streams while the server's stream limit allows; the rest wait for streams to close. */
static int conn_pump(Load *l, Conn *c) {
        unsigned due = l->started < c->end ? l->started : c->end;
        uint32_t limit;

        if (!c->session)
                return 0;
        if (c->error[0]) {
                /* GOAWAY: nothing new may start on this connection. */
                for (; c->next < due; c->next++)
                        if (l->streams[c->next].state != STATE_DONE)
                                stream_fail(l, &l->streams[c->next], c->error);
        }
        else if (c->ready) {
                limit = nghttp2_session_get_remote_settings(c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
                for (; c->next < due && c->active < limit; c->next++) {
                        Stream *s = &l->streams[c->next];
                        nghttp2_data_provider dp = { .source.ptr = s, .read_callback = h2_body_read };
                        int32_t id;

                        if (s->state != STATE_QUEUED)
                                continue;
                        s->t_sent = now_usec();
                        id = nghttp2_submit_request(c->session, NULL, l->nv, l->n_nv, &dp, s);
                        if (id < 0) {
                                char name[64];
                                snprintf(name, sizeof name, "submit: %s", nghttp2_strerror(id));
                                stream_fail(l, s, name);
                                continue;
                        }
                        s->id = id;
                        s->open = true;
                        s->state = STATE_HEAD;
                        c->active++;
                }
                for (unsigned i = c->next > c->marked ? c->next : c->marked; i < due; i++)
                        l->queued++;
                if (due > c->marked)
                        c->marked = due;
        }
        return conn_flush(l, c);
}

static int conn_open(Load *l, Conn *c) {
        int fd, one = 1;

        c->opened = true;
        fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                conn_fail_errno(l, c, "socket", errno);
                return 0;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        c->connecting = true;
        if (connect(fd, (struct sockaddr *) &l->addr, l->addr_len) < 0 && errno != EINPROGRESS) {
                conn_fail_errno(l, c, "connect", errno);
                return 0;
        }
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
        if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -errno;
        c->events = EPOLLOUT;
        return 0;
}

/* Connected: the session, our SETTINGS (windows so large the client never holds the server back). */
static int conn_connected(Load *l, Conn *c) {
        static const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, NGHTTP2_MAX_WINDOW_SIZE },
        };
        nghttp2_session_callbacks *cb;
        int r;

        if (nghttp2_session_callbacks_new(&cb) != 0)
                return -ENOMEM;
        nghttp2_session_callbacks_set_send_callback(cb, h2_send);
        nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_stream_close);
        nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, h2_on_frame_not_send);
        r = nghttp2_session_client_new(&c->session, cb, c);
        nghttp2_session_callbacks_del(cb);
        if (r != 0)
                return -ENOMEM;
        c->connecting = false;
        r = nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, sizeof settings / sizeof settings[0]);
        if (r == 0)
                r = nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_MAX_WINDOW_SIZE);
        if (r != 0) {
                conn_fail_h2(l, c, r);
                return 0;
        }
        return conn_flush(l, c);
}

/* The ramp made stream s due: it waits on its connection, which is opened with its first stream. */
static int stream_start_h2(Load *l, Stream *s) {
        Conn *c = s->conn;

        s->state = STATE_QUEUED;
        if (!c->opened)
                return conn_open(l, c);
        if (c->fd < 0 && c->error[0]) {
                stream_fail(l, s, c->error);
                return 0;
        }
        return conn_pump(l, c);
}

static int conn_on_event(Load *l, Conn *c, char *buf, size_t size) {
        int r;

        if (c->connecting) {
                int error = 0;
                socklen_t len = sizeof error;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        conn_fail_errno(l, c, "connect", error);
                        return 0;
                }
                return conn_connected(l, c);
        }

        /* One read per wakeup, as in the HTTP/1.1 mode: every connection gets its turn. */
        ssize_t k = recv(c->fd, buf, size, 0);
        if (k < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return conn_flush(l, c); /* EPOLLOUT */
                conn_fail_errno(l, c, "recv", errno);
                return 0;
        }
        if (k == 0) {
                conn_fail(l, c, NULL);
                return 0;
        }
        l->now = now_usec();
        ssize_t n = nghttp2_session_mem_recv(c->session, (const uint8_t *) buf, (size_t) k);
        if (n < 0) {
                if (c->fatal < 0)
                        return c->fatal;
                conn_fail_h2(l, c, (int) n);
                return 0;
        }
        /* Closed streams freed slots; SETTINGS may have made the connection ready. */
        r = conn_pump(l, c);
        if (r < 0)
                return r;
        if (c->left == 0 && c->next == c->end && c->session)
                conn_close(c); /* all its streams finished */
        return 0;
}

/* One header of the h2 request; names lowercased, as h2 wants them. The strings live as long as l. */
static int nv_add(Load *l, size_t *n, const char *name, const char *value) {
        char *nm = strdup(name), *v = strdup(value);

        if (!nm || !v) {
                free(nm);
                free(v);
                return -ENOMEM;
        }
        for (char *p = nm; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        l->nv_strings[2 * *n] = nm;
        l->nv_strings[2 * *n + 1] = v;
        l->nv[(*n)++] = (nghttp2_nv) { (uint8_t *) nm, (uint8_t *) v, strlen(nm), strlen(v),
                                       NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE };
        return 0;
}

/* The head every stream sends: pseudo-headers, content-length, the defaults and --header ones, names
 * lowercased as h2 wants them. */
static int build_h2_headers(Load *l, const char *host, const char *path, char **headers, size_t n_headers) {
        static const char *const forbidden[] = { "connection", "keep-alive", "proxy-connection",
                                                 "transfer-encoding", "upgrade", "content-length" };
        bool have_ct = false, have_accept = false;
        const char *authority = host;
        size_t n = 0;
        char length[32];
        int r;

        snprintf(length, sizeof length, "%zu", l->body_len);
        l->nv = calloc(n_headers + 8, sizeof *l->nv);
        l->nv_strings = calloc(2 * n_headers + 16, sizeof *l->nv_strings);
        if (!l->nv || !l->nv_strings)
                return -ENOMEM;

        for (size_t i = 0; i < n_headers; i++) {
                const char *colon = strchr(headers[i], ':'), *v = colon + 1;
                size_t nl = (size_t) (colon - headers[i]);

                while (*v == ' ' || *v == '\t')
                        v++;
                if (nl == 4 && strncasecmp(headers[i], "host", 4) == 0) {
                        authority = v;
                        continue;
                }
                for (size_t j = 0; j < sizeof forbidden / sizeof forbidden[0]; j++)
                        if (strlen(forbidden[j]) == nl && strncasecmp(headers[i], forbidden[j], nl) == 0) {
                                fprintf(stderr, "sse-load: --header \"%s\" cannot be sent over h2 (connection-"
                                                "specific, or set by sse-load).\n", headers[i]);
                                return -EINVAL;
                        }
        }

        for (size_t i = 0; i < n_headers; i++) {
                have_ct = have_ct || strncasecmp(headers[i], "content-type:", 13) == 0;
                have_accept = have_accept || strncasecmp(headers[i], "accept:", 7) == 0;
        }
        const char *fixed[][2] = {
                { ":method", "POST" },
                { ":scheme", "http" },
                { ":authority", authority },
                { ":path", path },
                { "content-length", length },
                { have_ct ? NULL : "content-type", "application/json" },
                { have_accept ? NULL : "accept", "text/event-stream" },
        };
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
                if (!fixed[i][0])
                        continue;
                r = nv_add(l, &n, fixed[i][0], fixed[i][1]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < n_headers; i++) {
                char name[256];
                const char *colon = strchr(headers[i], ':'), *v = colon + 1;
                size_t nl = (size_t) (colon - headers[i]);

                if (nl == 4 && strncasecmp(headers[i], "host", 4) == 0)
                        continue;
                if (nl == 0 || nl >= sizeof name) {
                        fprintf(stderr, "sse-load: --header \"%s\" has no usable name.\n", headers[i]);
                        return -EINVAL;
                }
                memcpy(name, headers[i], nl);
                name[nl] = 0;
                while (*v == ' ' || *v == '\t')
                        v++;
                r = nv_add(l, &n, name, v);
                if (r < 0)
                        return r;
        }
        l->n_nv = n;
        return 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
        FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
        char *data = NULL;
        size_t len = 0, size = 0;

        if (!f)
                return -errno;
        for (;;) {
                if (size - len < 4096) {
                        char *p = realloc(data, size ? size * 2 : 8192);
                        if (!p) {
                                free(data);
                                if (f != stdin)
                                        fclose(f);
                                return -ENOMEM;
                        }
                        data = p;
                        size = size ? size * 2 : 8192;
                }
                size_t k = fread(data + len, 1, size - len, f);
                len += k;
                if (k == 0)
                        break;
        }
        bool bad = ferror(f);
        if (f != stdin)
                fclose(f);
        if (bad) {
                free(data);
                return -EIO;
        }
        *ret = data;
        *ret_len = len;
        return 0;
}

/* http://HOST[:PORT]/PATH: resolves HOST once (numeric addresses need no DNS). */
static int parse_url(const char *url, Load *l, char **ret_host, char **ret_path) {
        const char *h, *slash;
        char host[256], port[8] = "80";
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
        size_t hl;

        if (strncmp(url, "http://", 7) != 0)
                return -EPROTONOSUPPORT;
        h = url + 7;
        slash = strchr(h, '/');
        hl = slash ? (size_t) (slash - h) : strlen(h);
        if (hl == 0 || hl >= sizeof host)
                return -EINVAL;
        memcpy(host, h, hl);
        host[hl] = 0;
        *ret_host = strdup(host);
        *ret_path = strdup(slash ? slash : "/");
        if (!*ret_host || !*ret_path)
                return -ENOMEM;

        char *name = host, *colon;
        if (host[0] == '[') {
                char *close = strchr(host, ']');
                if (!close)
                        return -EINVAL;
                *close = 0;
                name = host + 1;
                colon = close[1] == ':' ? close + 1 : NULL;
        } else
                colon = strrchr(host, ':');
        if (colon) {
                *colon = 0;
                if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port)
                        return -EINVAL;
                strcpy(port, colon + 1);
        }
        if (getaddrinfo(name, port, &hints, &ai) != 0 || !ai)
                return -EADDRNOTAVAIL;
        memcpy(&l->addr, ai->ai_addr, ai->ai_addrlen);
        l->addr_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

static int build_request(Load *l, const char *host, const char *path, char **headers, size_t n_headers,
                         const char *body, size_t body_len) {
        bool have_ct = false, have_accept = false;
        size_t size = 512 + strlen(host) + strlen(path) + body_len;
        char *p;
        int k;

        for (size_t i = 0; i < n_headers; i++) {
                size += strlen(headers[i]) + 2;
                have_ct = have_ct || strncasecmp(headers[i], "content-type:", 13) == 0;
                have_accept = have_accept || strncasecmp(headers[i], "accept:", 7) == 0;
        }
        p = l->request = malloc(size);
        if (!p)
                return -ENOMEM;
        k = snprintf(p, size, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n%s%s", path, host, body_len,
                     have_ct ? "" : "Content-Type: application/json\r\n",
                     have_accept ? "" : "Accept: text/event-stream\r\n");
        p += k;
        for (size_t i = 0; i < n_headers; i++)
                p += sprintf(p, "%s\r\n", headers[i]);
        p += sprintf(p, "\r\n");
        memcpy(p, body, body_len);
        l->request_len = (size_t) (p - l->request) + body_len;
        return 0;
}

/* Each stream needs an fd: raise the soft limit to the hard one, and the hard one too if we may. */
static int raise_nofile(unsigned need) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur >= need)
                return 0;
        rl.rlim_cur = rl.rlim_max = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -EMFILE;
        return 0;
}

static void help(void) {
        printf("sse-load --url URL --streams N --body-file F [--header 'K: V']... [--ramp-ms M] [--timeout S]\n"
               "         [--stall-ms T] [--h2 M]\n\n"
               "Opens N concurrent HTTP/1.1 streams (one connection each) that POST the body in F, reads\n"
               "their SSE answers and prints one JSON object: streams, ok, failed, errors, ttft_us, gap_us,\n"
               "stalls (gaps over --stall-ms), chunks (data events, \"[DONE]\" not counted), elapsed_s, protocol\n"
               "and connections.\n"
               "  --ramp-ms M   start the streams evenly over M ms (default 0: all at once)\n"
               "  --timeout S   give up on streams still open after S seconds (default 120)\n"
               "  --stall-ms T  a gap between data events over T ms is a stall (default 1000)\n"
               "  --h2 M        h2c with prior knowledge, M streams per connection (default 0: HTTP/1.1);\n"
               "                streams beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS wait for a slot\n"
               "                (counted in queued_for_slot, TTFT from when each was sent)\n"
               "Exits 0 whenever it printed its JSON, failed streams included.\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "url", required_argument, NULL, 'u' },
                { "streams", required_argument, NULL, 'n' },
                { "body-file", required_argument, NULL, 'b' },
                { "header", required_argument, NULL, 'H' },
                { "ramp-ms", required_argument, NULL, 'r' },
                { "timeout", required_argument, NULL, 't' },
                { "h2", required_argument, NULL, 'm' },
                { "stall-ms", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *url = NULL, *body_path = NULL;
        char **headers = NULL, *host = NULL, *path = NULL, *body = NULL;
        size_t n_headers = 0, body_len = 0;
        unsigned long n = 0, ramp_ms = 0, timeout_s = 120, h2 = 0, stall_ms = STALL_USEC_DEFAULT / 1000;
        Load l = { .epoll_fd = -1 };
        char *buf;
        int c, r;

        while ((c = getopt_long(argc, argv, "hu:n:b:H:r:t:m:s:", options, NULL)) >= 0) {
                char *e = NULL;
                switch (c) {
                case 'u':
                        url = optarg;
                        break;
                case 'b':
                        body_path = optarg;
                        break;
                case 'H': {
                        char **h = realloc(headers, (n_headers + 1) * sizeof *h);
                        if (!h)
                                return EXIT_FAILURE;
                        headers = h;
                        if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n")) {
                                fprintf(stderr, "sse-load: --header wants 'Name: value', got \"%s\".\n", optarg);
                                return EXIT_FAILURE;
                        }
                        headers[n_headers++] = optarg;
                        break;
                }
                case 'n':
                case 'r':
                case 't':
                case 'm':
                case 's': {
                        errno = 0;
                        unsigned long v = strtoul(optarg, &e, 10);
                        if (errno != 0 || e == optarg || *e || optarg[0] == '-') {
                                fprintf(stderr, "sse-load: --%s wants a number, got \"%s\".\n",
                                        c == 'n' ? "streams" : c == 'r' ? "ramp-ms" : c == 't' ? "timeout" :
                                        c == 'm' ? "h2" : "stall-ms",
                                        optarg);
                                return EXIT_FAILURE;
                        }
                        if (c == 'n')
                                n = v;
                        else if (c == 'r')
                                ramp_ms = v;
                        else if (c == 't')
                                timeout_s = v;
                        else if (c == 'm')
                                h2 = v;
                        else
                                stall_ms = v;
                        break;
                }
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        }
        if (optind < argc || !url || !body_path || n == 0) {
                fprintf(stderr, "Usage: sse-load --url URL --streams N --body-file F [--header 'K: V']... "
                                "[--ramp-ms M] [--timeout S] [--h2 M] [--stall-ms T]\n");
                return EXIT_FAILURE;
        }
        if (n > 1000000 || timeout_s == 0 || timeout_s > 86400 || ramp_ms > 3600000 || h2 > 1000000 ||
            stall_ms == 0 || stall_ms > 3600000) {
                fprintf(stderr, "sse-load: --streams must be 1..1000000, --timeout 1..86400, --ramp-ms at most "
                                "3600000, --h2 at most 1000000, --stall-ms 1..3600000.\n");
                return EXIT_FAILURE;
        }
        r = parse_url(url, &l, &host, &path);
        if (r < 0) {
                fprintf(stderr, "sse-load: cannot use URL \"%s\" (plain http://HOST[:PORT]/PATH only): %s\n", url,
                        strerror(-r));
                return EXIT_FAILURE;
        }
        r = read_file(body_path, &body, &body_len);
        if (r < 0) {
                fprintf(stderr, "sse-load: cannot read body file \"%s\": %s\n", body_path, strerror(-r));
                return EXIT_FAILURE;
        }
        l.h2 = (unsigned) h2;
        l.stall_usec = (uint64_t) stall_ms * 1000;
        l.body = body;
        l.body_len = body_len;
        l.n_conns = h2 > 0 ? (unsigned) ((n + h2 - 1) / h2) : (unsigned) n;
        if (h2 > 0)
                r = build_h2_headers(&l, host, path, headers, n_headers);
        else
                r = build_request(&l, host, path, headers, n_headers, body, body_len);
        if (r < 0)
                return EXIT_FAILURE;
        r = raise_nofile(l.n_conns + 16);
        if (r < 0) {
                fprintf(stderr, "sse-load: %u connections need %u file descriptors; RLIMIT_NOFILE is lower and cannot "
                                "be raised.\n", l.n_conns, l.n_conns + 16);
                return EXIT_FAILURE;
        }
        signal(SIGPIPE, SIG_IGN);

        l.n_streams = (unsigned) n;
        l.streams = calloc(n, sizeof *l.streams);
        buf = malloc(65536);
        l.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (h2 > 0)
                l.conns = calloc(l.n_conns, sizeof *l.conns);
        if (!l.streams || !buf || l.epoll_fd < 0 || (h2 > 0 && !l.conns)) {
                fprintf(stderr, "sse-load: out of memory or fds.\n");
                return EXIT_FAILURE;
        }
        for (unsigned i = 0; i < n; i++)
                l.streams[i].fd = -1;
        /* h2: connection k carries the streams k*M..(k+1)*M-1, so the ramp opens connections as it goes. */
        for (unsigned k = 0; h2 > 0 && k < l.n_conns; k++) {
                Conn *cn = &l.conns[k];
                cn->load = &l;
                cn->fd = -1;
                cn->first = cn->next = cn->marked = k * l.h2;
                cn->end = cn->first + l.h2 < l.n_streams ? cn->first + l.h2 : l.n_streams;
                cn->left = cn->end - cn->first;
                for (unsigned i = cn->first; i < cn->end; i++)
                        l.streams[i].conn = cn;
        }

        uint64_t t0 = now_usec(), deadline = t0 + timeout_s * 1000000ULL;
        struct epoll_event events[1024];

        while (l.finished < l.n_streams) {
                uint64_t now = now_usec();
                int wait_ms;

                /* Streams due by the ramp (all of them at once without one). */
                while (l.started < l.n_streams &&
                       (ramp_ms == 0 || now - t0 >= (uint64_t) ramp_ms * 1000 * l.started / l.n_streams)) {
                        Stream *s = &l.streams[l.started++];
                        r = l.h2 > 0 ? stream_start_h2(&l, s) : stream_start(&l, s);
                        if (r < 0) {
                                fprintf(stderr, "sse-load: starting a stream failed: %s\n", strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
                if (now >= deadline)
                        break;
                if (l.started < l.n_streams) {
                        uint64_t next = t0 + (uint64_t) ramp_ms * 1000 * l.started / l.n_streams;
                        wait_ms = next > now ? (int) ((next - now + 999) / 1000) : 0;
                } else
                        wait_ms = (int) ((deadline - now + 999) / 1000);

                int k = epoll_wait(l.epoll_fd, events, (int) (sizeof events / sizeof events[0]), wait_ms);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "sse-load: epoll_wait failed: %m\n");
                        return EXIT_FAILURE;
                }
                for (int i = 0; i < k; i++) {
                        if (l.h2 > 0) {
                                Conn *cn = events[i].data.ptr;
                                if (cn->fd < 0)
                                        continue; /* closed by an earlier event of this batch */
                                r = conn_on_event(&l, cn, buf, 65536);
                        } else {
                                Stream *s = events[i].data.ptr;
                                if (s->state == STATE_DONE)
                                        continue; /* closed by an earlier event of this batch */
                                r = stream_on_event(&l, s, buf, 65536);
                        }
                        if (r < 0) {
                                fprintf(stderr, "sse-load: %s\n", strerror(-r));
                                return EXIT_FAILURE;
                        }
                }
        }
        double elapsed = (double) (now_usec() - t0) / 1e6;

        for (unsigned i = 0; i < l.n_streams; i++)
                if (l.streams[i].state != STATE_DONE)
                        stream_fail(&l, &l.streams[i], "timeout");
        for (unsigned k = 0; h2 > 0 && k < l.n_conns; k++)
                conn_close(&l.conns[k]);

        printf("{\"streams\":%u,\"ok\":%u,\"failed\":%u,\"errors\":{", l.n_streams, l.ok, l.n_streams - l.ok);
        for (unsigned i = 0; i < l.n_errors; i++)
                printf("%s\"%s\":%u", i ? "," : "", l.errors[i].name, l.errors[i].count);
        printf("},");
        print_samples("ttft_us", &l.ttft);
        printf(",");
        print_samples("gap_us", &l.gaps);
        printf(",\"stalls\":%" PRIu64 ",\"chunks\":%" PRIu64 ",\"elapsed_s\":%.3f", l.stalls, l.chunks, elapsed);
        printf(",\"protocol\":\"%s\",\"connections\":%u", h2 > 0 ? "h2c" : "http/1.1", l.n_conns);
        if (h2 > 0) {
                /* Unannounced (unlimited) or never received: null. */
                printf(",\"streams_per_connection\":%u,\"queued_for_slot\":%u,\"peer_max_concurrent_streams\":",
                       l.h2, l.queued);
                if (l.peer_max_streams == 0 || l.peer_max_streams == UINT32_MAX)
                        printf("null");
                else
                        printf("%" PRIu32, l.peer_max_streams);
        }
        printf("}\n");

        free(l.ttft.v);
        free(l.gaps.v);
        free(l.streams);
        free(l.conns);
        free(l.nv);
        for (size_t i = 0; l.nv_strings && l.nv_strings[i]; i++)
                free(l.nv_strings[i]);
        free(l.nv_strings);
        free(l.request);
        free(buf);
        free(body);
        free(host);
        free(path);
        free(headers);
        close(l.epoll_fd);
        /* Failed streams are results, not errors of this tool: they are in the JSON. */
        return EXIT_SUCCESS;
}
