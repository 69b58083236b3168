/* An incremental server-sent events parser: bytes split anywhere in, whole events out, bounded memory. */
#pragma once

#include "shared/buf.h"

/* Called once per complete event: the event name ("" when there was none) and the data lines joined by
 * '\n' (NUL-terminated, n bytes). A negative return stops the feed and is passed on. */
typedef int (*SseEventHandler)(void *userdata, const char *event, const char *data, size_t n);

typedef struct SseParser {
        Buf line;                       /* the current, incomplete line */
        Buf data;                       /* data lines of the current event */
        char event[64];                 /* event name; longer names are cut (none we read are that long) */
        bool has_data;
        bool skip_lf;                   /* the last line ended with CR: an LF right after belongs to it */
        bool started;                   /* past a leading byte order mark */
        size_t max;                     /* bound on line + event bytes */
} SseParser;

void sse_parser_init(SseParser *p, size_t max);
void sse_parser_done(SseParser *p);
/* -E2BIG when a line or an event grows beyond max, or the handler's error. */
int sse_parser_feed(SseParser *p, const void *data, size_t n, SseEventHandler h, void *userdata);
/* End of input: a last line without its newline and an event without its blank line are taken as complete
 * (servers that close right after their last "data:" line lose nothing). */
int sse_parser_finish(SseParser *p, SseEventHandler h, void *userdata);
