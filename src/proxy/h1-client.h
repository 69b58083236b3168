/* H1Client: gate's own HTTP/1.1 client for plain-HTTP upstreams on IP literals (local inference servers). */
#pragma once

#include <systemd/sd-event.h>

#include "shared/curl-dl.h"
#include "shared/macro.h"

/* libcurl costs about 100k instructions per proxied request; this client does the same job for the
 * upstreams it can serve (http:// on an IP literal or localhost: no TLS, no DNS) for a fraction, and
 * speaks curl's callback contract so the proxy drives either the same way:
 *   header(): each line of the response head as received (status line, fields, the blank line),
 *             1xx interim heads included; return the length, anything else aborts (CURLE_WRITE_ERROR);
 *   write():  body bytes, de-chunked; return the length, CURL_WRITEFUNC_PAUSE to be given the same
 *             bytes again after h1_transfer_resume(), anything else aborts;
 *   done():   once, with the result, never from inside header()/write() (but possibly from inside
 *             h1_transfer_resume(), as curl does on unpause). The transfer is gone when done() runs.
 * Connections are kept alive and reused per destination; a request that meets a closed pooled
 * connection before any byte of the answer is sent again once on a fresh one, as curl does. */

typedef struct H1Client H1Client;
typedef struct H1Transfer H1Transfer;

typedef struct H1Callbacks {
        size_t (*header)(char *line, size_t size, size_t n, void *userdata);
        size_t (*write)(char *data, size_t size, size_t n, void *userdata);
        void (*done)(CURLcode result, void *userdata);
        /* Optional: the bytes of one read (or one resume) were handed to write(), nothing else of this read
         * will come, and the transfer goes on: what the caller held back can go out now. Not called when
         * the read ends the transfer: done() follows at once instead, and the caller sends what it held
         * with the end. Never from inside the other callbacks; h1_transfer_cancel() is allowed. */
        void (*fed)(void *userdata);
} H1Callbacks;

typedef struct H1Request {
        const char *url;                        /* http://HOST[:PORT]/path */
        const char *method;                     /* "POST" or "GET" */
        const struct curl_slist *headers;       /* "Name: value"; "Name:" alone is skipped, as with curl */
        const void *body;                       /* kept valid by the caller until done() */
        size_t body_len;
        usec_t connect_timeout;                 /* 0: none */
        /* As curl's CURLOPT_ERRORBUFFER: CURL_ERROR_SIZE bytes the transfer may write a failure's own
         * account to before done() reports it ("Failed to connect to 127.0.0.1:8080: Connection refused");
         * emptied at the start. NULL: none. */
        char *error;
} H1Request;

int h1_client_new(sd_event *event, H1Client **ret);
H1Client *h1_client_free(H1Client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(H1Client *, h1_client_free);

/* Whether url is one this client serves (else use curl). */
bool h1_client_handles(const char *url);

/* Starts a transfer; -EPROTONOSUPPORT, before anything else, when the URL is not one h1_client_handles()
 * (so a caller can try this client first and fall back to curl without parsing the URL twice). */
int h1_transfer_start(H1Client *c, const H1Request *req, const H1Callbacks *cb, void *userdata,
                      H1Transfer **ret);
/* Ends a transfer without calling done(); the connection is closed unless the answer was complete.
 * Safe from inside the transfer's own callbacks. */
void h1_transfer_cancel(H1Transfer *t);
/* After write() returned CURL_WRITEFUNC_PAUSE: delivers what was held, then reads on. */
void h1_transfer_resume(H1Transfer *t);
/* The answer's status code, 0 before the status line. */
unsigned h1_transfer_status(const H1Transfer *t);

/* How long an idle connection is kept for reuse (default 60 s): servers close theirs after some time of
 * their own, and one that is about to is better not reused. */
void h1_client_set_idle_lifetime(H1Client *c, usec_t usec);
/* The most idle connections kept per destination (default 1024; 0: none, every request on a new
 * connection). Lowering it closes the oldest beyond it at once. */
void h1_client_set_idle_max(H1Client *c, size_t n);

/* Connections open (busy and idle), for tests and metrics. */
size_t h1_client_n_connections(const H1Client *c);
size_t h1_client_n_idle(const H1Client *c);
