/* UpstreamTrust: the CA bundle that upstream TLS trusts, parsed once, and checks of a server's chain. */
#include <errno.h>
#include <stdio.h>

#include "proxy/trust.h"
#include "shared/gnutls-dl.h"
#include "shared/log.h"
#include "shared/util.h"

/* A longer chain than any public CA issues; more is refused rather than allocated. */
#define CHAIN_MAX 16

/* The verification profile of the sessions libcurl makes. gnutls_certificate_verify_peers(), the check libcurl
 * ran, adds the session's profile to its flags; a trust list knows of no session, so it is named here. curl
 * 7.88's GnuTLS back end (lib/vtls/gtls.c) starts every priority string with "NORMAL", which sets
 * GNUTLS_PROFILE_LOW: 80-bit security, i.e. RSA (and DSA) keys of 1024 bits and more, EC keys of 160 bits
 * and more, in every certificate of the chain and in the trusted CA that signs it. Without it the trust
 * list took a 512-bit RSA key. Certificate signatures with SHA-1 or MD5 GnuTLS refuses with or without a
 * profile, and the system-wide configuration (/etc/gnutls/config: min-verification-profile,
 * insecure-sig-for-cert, ...) it applies to both checks by itself. */
#define SESSION_PROFILE GNUTLS_PROFILE_LOW
#define SESSION_SEC_PARAM GNUTLS_SEC_PARAM_LOW
/* And the flag libcurl gives its check: a v1 CA certificate in the bundle still counts as a CA. */
#define VERIFY_FLAGS (GNUTLS_VERIFY_ALLOW_X509_V1_CA_CRT | GNUTLS_PROFILE_TO_VFLAGS(SESSION_PROFILE))

struct UpstreamTrust {
        gnutls_x509_trust_list_t list;
        unsigned n_cas;
};

int upstream_trust_load(const char *path, UpstreamTrust **ret) {
        UpstreamTrust *t;
        int r;

        r = dlopen_gnutls();
        if (r < 0)
                return r;
        t = new0(UpstreamTrust, 1);
        if (!t)
                return -ENOMEM;
        r = gnutls_x509_trust_list_init(&t->list, 0);
        if (r < 0) {
                free(t);
                return -ENOMEM;
        }
        r = gnutls_x509_trust_list_add_trust_file(t->list, path, NULL, GNUTLS_X509_FMT_PEM, 0, 0);
        if (r <= 0) {
                upstream_trust_free(t);
                return r == 0 ? -ENOENT : -EBADMSG;
        }
        t->n_cas = (unsigned) r;
        *ret = t;
        return 0;
}

UpstreamTrust *upstream_trust_free(UpstreamTrust *t) {
        if (!t)
                return NULL;
        if (t->list)
                gnutls_x509_trust_list_deinit(t->list, 1);
        free(t);
        return NULL;
}

unsigned upstream_trust_count(const UpstreamTrust *t) {
        return t ? t->n_cas : 0;
}

/* A certificate's subject for the log. It is the server's to choose, trusted or not, and GnuTLS leaves control
 * characters in it as they are: a newline would start a log line of the server's making. */
static bool subject_of(gnutls_x509_crt_t crt, char *buf, size_t size) {
        gnutls_datum_t dn = {};

        if (gnutls_x509_crt_get_dn2(crt, &dn) < 0 || !dn.data) {
                (void) snprintf(buf, size, "?");
                return false;
        }
        for (unsigned i = 0; i < dn.size; i++)
                if (dn.data[i] < 0x20 || dn.data[i] == 0x7f)
                        dn.data[i] = '?';
        (void) snprintf(buf, size, "%.*s", (int) dn.size, (const char *) dn.data);
        gnutls_free(dn.data);
        return true;
}

static void name_mismatch_reason(gnutls_x509_crt_t leaf, const char *host, char *reason, size_t reason_size) {
        char subject[256];

        if (subject_of(leaf, subject, sizeof subject))
                (void) snprintf(reason, reason_size, "SSL: certificate for %s does not match host name '%s'", subject,
                                host);
        else
                (void) snprintf(reason, reason_size, "SSL: certificate does not match host name '%s'", host);
}

/* GNUTLS_CERT_INSECURE_ALGORITHM says only that something in the chain is weak: names the first certificate
 * (of those the server sent, then the trusted CA they end in) whose key is below the profile, or whose
 * signature GnuTLS does not accept in a certificate. False when none is found (e.g. a system-wide profile
 * above gate's), and the caller says it GnuTLS's way. Runs for a refused chain only. */
static bool insecure_reason(const UpstreamTrust *t, gnutls_x509_crt_t *chain, unsigned n, char *reason,
                            size_t reason_size) {
        for (unsigned i = 0; i <= n; i++) {
                gnutls_x509_crt_t crt = i < n ? chain[i] : NULL;
                char what[320], subject[256];
                unsigned bits = 0;
                int pk, sign;

                if (!crt && gnutls_x509_trust_list_get_issuer(t->list, chain[n - 1], &crt, 0) < 0)
                        break;
                subject_of(crt, subject, sizeof subject);
                if (i < n)
                        (void) snprintf(what, sizeof what, "certificate %u of the chain (%s)", i + 1, subject);
                else
                        (void) snprintf(what, sizeof what, "the trusted CA (%s)", subject);

                pk = gnutls_x509_crt_get_pk_algorithm(crt, &bits);
                /* bits 0: a size GnuTLS could not tell, not a weak key. */
                if (pk > 0 && bits > 0 && gnutls_pk_bits_to_sec_param(pk, bits) < SESSION_SEC_PARAM) {
                        (void) snprintf(reason, reason_size, "SSL peer certificate not OK: %s has a %u-bit %s key, "
                                        "weaker than GnuTLS's LOW profile allows (%u bits)", what, bits,
                                        gnutls_pk_get_name(pk), gnutls_sec_param_to_pk_bits(pk, SESSION_SEC_PARAM));
                        return true;
                }
                /* A trusted or self-signed certificate's own signature is never checked. */
                if (i == n || gnutls_x509_crt_check_issuer(crt, crt))
                        continue;
                sign = gnutls_x509_crt_get_signature_algorithm(crt);
                if (sign >= 0 && !gnutls_sign_is_secure2(sign, GNUTLS_SIGN_FLAG_SECURE_FOR_CERTS)) {
                        const char *name = gnutls_sign_get_name(sign);

                        (void) snprintf(reason, reason_size, "SSL peer certificate not OK: %s is signed with %s, "
                                        "which GnuTLS does not accept in certificates", what,
                                        name ?: "an unknown algorithm");
                        return true;
                }
        }
        return false;
}

/* ---- stapled OCSP responses ----
 *
 * What GnuTLS's own peer check (gnutls_certificate_verify_peers(), which libcurl called) does with the OCSP
 * responses a server staples, so that moving the check into gate changed nothing: for each certificate of
 * the chain that has one, the response must be about that certificate, signed by a trusted CA or by one of
 * the certificates after it in the chain, say it is not revoked, and be current; a certificate that demands
 * stapling (RFC 7633 TLS feature status_request) must have one (GnuTLS clients ask for it by default). */

/* GnuTLS's limit for a response without a next update. */
#define OCSP_VALIDITY_USEC (3 * 24 * 3600 * USEC_PER_SEC)

static bool must_staple(gnutls_x509_crt_t crt) {
        gnutls_x509_tlsfeatures_t f;
        bool found = false;

        if (gnutls_x509_tlsfeatures_init(&f) < 0)
                return false;
        if (gnutls_x509_crt_get_tlsfeatures(crt, f, 0, NULL) >= 0)
                for (unsigned i = 0;; i++) {
                        unsigned feature;

                        if (gnutls_x509_tlsfeatures_get(f, i, &feature) < 0)
                                break;
                        if (feature == 5) {     /* status_request */
                                found = true;
                                break;
                        }
                }
        gnutls_x509_tlsfeatures_deinit(f);
        return found;
}

static unsigned ocsp_response_status(const UpstreamTrust *t, const gnutls_datum_t *d, gnutls_x509_crt_t crt,
                                     gnutls_x509_crt_t *issuers, unsigned n_issuers) {
        gnutls_ocsp_resp_t resp;
        unsigned status = GNUTLS_CERT_INVALID_OCSP_STATUS, verify = 0, cert_status = 0;
        time_t this_update, next_update, revoked_at;
        int r;

        if (gnutls_ocsp_resp_init(&resp) < 0)
                return GNUTLS_CERT_INVALID_OCSP_STATUS;
        if (gnutls_ocsp_resp_import(resp, d) < 0 || gnutls_ocsp_resp_check_crt(resp, 0, crt) < 0)
                goto finish;
        r = gnutls_ocsp_resp_verify(resp, t->list, &verify, VERIFY_FLAGS);
        for (unsigned i = 0; (r < 0 || verify != 0) && i < n_issuers; i++)
                r = gnutls_ocsp_resp_verify_direct(resp, issuers[i], &verify, VERIFY_FLAGS);
        if (r < 0 || verify != 0)
                goto finish;
        if (gnutls_ocsp_resp_get_single(resp, 0, NULL, NULL, NULL, NULL, &cert_status, &this_update,
                                        &next_update, &revoked_at, NULL) < 0)
                goto finish;
        if (cert_status == GNUTLS_OCSP_CERT_REVOKED)
                status = GNUTLS_CERT_REVOKED;
        else {
                usec_t now = now_usec(CLOCK_REALTIME), this_u = (usec_t) this_update * USEC_PER_SEC;
                bool stale = next_update == (time_t) -1 ? now > this_u && now - this_u > OCSP_VALIDITY_USEC :
                                                          (usec_t) next_update * USEC_PER_SEC < now;
                status = stale ? GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED : 0;
        }
finish:
        gnutls_ocsp_resp_deinit(resp);
        return status;
}

static unsigned ocsp_status(const UpstreamTrust *t, gnutls_session_t session, gnutls_x509_crt_t *chain, unsigned n) {
        unsigned status = 0;

        for (unsigned i = 0; i < n; i++) {
                gnutls_datum_t d = {};

                if (gnutls_ocsp_status_request_get2(session, i, &d) < 0 || !d.data || d.size == 0) {
                        if (must_staple(chain[i]))
                                status |= GNUTLS_CERT_MISSING_OCSP_STATUS;
                        continue;
                }
                status |= ocsp_response_status(t, &d, chain[i], chain + i + 1, n - i - 1);
        }
        return status;
}

int upstream_trust_verify(const UpstreamTrust *t, void *session, const char *host, char *reason, size_t reason_size) {
        gnutls_x509_crt_t chain[CHAIN_MAX] = {};
        const gnutls_datum_t *peers;
        unsigned n_peers = 0, n = 0, status = 0;
        int r;

        /* Also after a resumed handshake: GnuTLS keeps the server's chain in the session it resumes. */
        peers = gnutls_certificate_get_peers(session, &n_peers);
        if (!peers || n_peers == 0) {
                (void) snprintf(reason, reason_size, "SSL: the server sent no certificate");
                return -EPERM;
        }
        if (n_peers > CHAIN_MAX) {
                (void) snprintf(reason, reason_size, "SSL: the server sent a chain of %u certificates (at most %u)",
                                n_peers, CHAIN_MAX);
                return -EPERM;
        }
        for (; n < n_peers; n++) {
                if (gnutls_x509_crt_init(&chain[n]) < 0) {
                        r = -ENOMEM;
                        (void) snprintf(reason, reason_size, "SSL: out of memory checking the certificate");
                        goto finish;
                }
                if (gnutls_x509_crt_import(chain[n], &peers[n], GNUTLS_X509_FMT_DER) < 0) {
                        n++;
                        r = -EPERM;
                        (void) snprintf(reason, reason_size, "SSL: the server's certificate %u cannot be parsed", n);
                        goto finish;
                }
        }

        gnutls_typed_vdata_st data[] = {
                { .type = GNUTLS_DT_DNS_HOSTNAME, .data = (unsigned char *) host },
                { .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (unsigned char *) GNUTLS_KP_TLS_WWW_SERVER },
        };
        r = gnutls_x509_trust_list_verify_crt2(t->list, chain, n, data, ELEMENTSOF(data), VERIFY_FLAGS, &status,
                                               NULL);
        if (r >= 0)
                status |= ocsp_status(t, session, chain, n);
        if (r < 0) {
                (void) snprintf(reason, reason_size, "SSL: certificate check failed: %s", gnutls_strerror(r));
                r = -EPERM;
        } else if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
                name_mismatch_reason(chain[0], host, reason, reason_size);
                r = -EPERM;
        } else if ((status & GNUTLS_CERT_INSECURE_ALGORITHM) && insecure_reason(t, chain, n, reason, reason_size)) {
                r = -EPERM;
        } else if (status != 0) {
                gnutls_datum_t out = {};

                if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0 && out.data) {
                        int len = (int) out.size;

                        /* GnuTLS ends each sentence with a space. */
                        while (len > 0 && (out.data[len - 1] == ' ' || out.data[len - 1] == 0))
                                len--;
                        (void) snprintf(reason, reason_size, "SSL peer certificate not OK: %.*s", len,
                                        (const char *) out.data);
                        gnutls_free(out.data);
                } else
                        (void) snprintf(reason, reason_size, "SSL peer certificate not OK (status 0x%x)", status);
                r = -EPERM;
        } else
                r = 0;
finish:
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(chain[i]);
        return r;
}
