/* TLS: GnuTLS server sessions over a Stream, and refcounted credentials loaded from the cert directory. */
#pragma once

#include "net/stream.h"
#include "shared/macro.h"

/*
 * The cert directory is flat: NAME.crt (PEM, full chain, leaf first) and NAME.key (PEM, PKCS#8 or
 * PKCS#1/SEC1) per name. NAME is the DNS name the pair serves (SNI), e.g. "example.org.crt"; a pair
 * named "*.example.org" serves one label below. Flat, so that a path unit watching the directory sees
 * every replacement.
 *
 * TlsCredentials is an immutable set of such pairs. A reload builds a new set and swaps the pointer;
 * each TLS session keeps a reference to the set it started with, so live sessions are never disturbed.
 */

typedef struct TlsCredentials TlsCredentials;

typedef struct TlsLoadReport {
        unsigned loaded;        /* pairs loaded fresh from disk */
        unsigned kept;          /* pairs that failed and were kept from the previous set */
        unsigned failed;        /* pairs that failed with nothing to keep */
        char *errors;           /* one line per problem: "NAME: what is wrong", or NULL */
} TlsLoadReport;

void tls_load_report_done(TlsLoadReport *r);

/* Loads every pair in dir. A pair that fails to parse, or whose key does not match its certificate,
 * is refused (reported) and, if previous has a pair of that name, the previous one is kept.
 * default_name (may be NULL) picks the pair for clients that send no SNI; without it, the only pair,
 * else the first in lexical order. Returns -ENOKEY (and still fills report) when no usable pair remains,
 * -ENOENT when dir does not exist, -ELIBACC or -ELIBBAD when GnuTLS cannot be loaded (dlopen_gnutls()). */
int tls_credentials_load_dir(const char *dir, const char *default_name, TlsCredentials *previous,
                             TlsCredentials **ret, TlsLoadReport *report);

TlsCredentials *tls_credentials_ref(TlsCredentials *c);
TlsCredentials *tls_credentials_unref(TlsCredentials *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsCredentials *, tls_credentials_unref);

/* Earliest notAfter of all pairs, in microseconds since the epoch (0 if none). */
uint64_t tls_credentials_not_after(const TlsCredentials *c);
/* Names of the pairs, NULL-terminated, owned by c. */
char *const *tls_credentials_names(const TlsCredentials *c);

/* Wraps lower in a TLS server session that uses creds (a reference is taken). The returned Stream is
 * what the HTTP layer attaches to; it carries info.secure, info.alpn ("h2" or "http/1.1") and info.sni
 * once the handshake is done, and nothing is delivered to its upper before that. ALPN offers h2 and
 * http/1.1. The TLS stream frees itself when closed from above or when the lower one ends (after
 * forwarding on_close). Handshake timeout: the HTTP header timeout covers it (set by the caller via
 * the lower stream's owner). */
int tls_stream_new(Stream *lower, TlsCredentials *creds, Stream **ret);

/* Called once the handshake completed: the place to attach the protocol (by ALPN). */
typedef void (*TlsHandshakeDone)(Stream *tls, void *userdata);
void tls_stream_set_handshake_callback(Stream *tls, TlsHandshakeDone cb, void *userdata);
