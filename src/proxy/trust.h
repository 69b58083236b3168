/* UpstreamTrust: the CA bundle that upstream TLS trusts, parsed once, and checks of a server's chain. */
#pragma once

#include <stddef.h>

#include "shared/macro.h"

typedef struct UpstreamTrust UpstreamTrust;

/* Parses the PEM bundle at path into a GnuTLS trust list (loads GnuTLS). -ENOENT when it holds no CA. */
int upstream_trust_load(const char *path, UpstreamTrust **ret);
UpstreamTrust *upstream_trust_free(UpstreamTrust *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(UpstreamTrust *, upstream_trust_free);

unsigned upstream_trust_count(const UpstreamTrust *t);

/* Checks the certificate chain the server of a GnuTLS client session (gnutls_session_t) sent: signed up
 * to a trusted CA, in its validity period, for host (a DNS name or an IP literal, without brackets), and
 * for TLS server use; with its stapled OCSP responses checked as GnuTLS's own peer check does. 0 when it
 * passes; else -EPERM with a one-line reason in reason (like curl's, for the log). */
int upstream_trust_verify(const UpstreamTrust *t, void *session, const char *host, char *reason, size_t reason_size);
