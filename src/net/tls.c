/* TLS: GnuTLS server sessions over a Stream, and refcounted credentials loaded from the cert directory. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <time.h>

#include "net/tls.h"
#include "shared/buf.h"
#include "shared/errors.h"
#include "shared/gnutls-dl.h"
#include "shared/log.h"
#include "shared/util.h"

/* A cert or key file larger than this is not a cert or key file. */
#define TLS_FILE_MAX (1024U * 1024U)
/* Plaintext decrypted but not yet taken by the upper (or held before an upper is attached). Past this
 * the peer is sending faster than anyone reads, and the session is ended rather than buffering more. */
#define TLS_PLAINTEXT_MAX (1024U * 1024U)
/* The largest plaintext one TLS record carries. */
#define TLS_RECORD_MAX 16384U
/* Non-fatal GnuTLS results (warning alerts, renegotiation attempts) tolerated in a row. */
#define TLS_NONFATAL_MAX 16U

#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"

/* ---------------------------------------------------------------------------------------------------- */
/* Credentials */

typedef struct TlsPair {
        unsigned n_ref;
        char *name;                     /* as in the file name; matched case-insensitively */
        gnutls_pcert_st *pcerts;        /* the chain, leaf first */
        unsigned n_pcerts;
        gnutls_privkey_t key;
        usec_t not_after;               /* of the leaf */
} TlsPair;

struct TlsCredentials {
        unsigned n_ref;
        TlsPair **pairs;                /* sorted by name */
        size_t n_pairs;
        TlsPair *default_pair;          /* for clients without SNI or with a name we do not serve */
        char **names;
        usec_t not_after;
        /* Holds no key itself: the retrieve callback hands out the pair chosen by SNI. */
        gnutls_certificate_credentials_t cred;
        gnutls_priority_t priority;
};

static TlsPair *tls_pair_unref(TlsPair *p) {
        if (!p)
                return NULL;
        if (--p->n_ref > 0)
                return NULL;
        for (unsigned i = 0; i < p->n_pcerts; i++)
                gnutls_pcert_deinit(&p->pcerts[i]);
        free(p->pcerts);
        if (p->key)
                gnutls_privkey_deinit(p->key);
        free(p->name);
        free(p);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsPair *, tls_pair_unref);

static TlsPair *tls_pair_ref(TlsPair *p) {
        if (p)
                p->n_ref++;
        return p;
}

static void x509_crt_list_free(gnutls_x509_crt_t *crts, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
}

static void gnutls_pubkey_deinitp(gnutls_pubkey_t *k) {
        if (*k)
                gnutls_pubkey_deinit(*k);
}

static size_t count_substr(const char *hay, const char *needle) {
        size_t n = 0, l = strlen(needle);
        for (const char *p = hay; (p = strstr(p, needle)); p += l)
                n++;
        return n;
}

static void format_time(char *buf, size_t n, time_t t) {
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(buf, n, "@%lld", (long long) t);
}

/* Loads NAME.crt and NAME.key from dir. On failure *ret_why says what is wrong, for the report. On success
 * *ret_why may still carry a warning (an expired certificate is loaded, and said so). */
static int tls_pair_load(const char *dir, const char *name, TlsPair **ret, char **ret_why) {
        _cleanup_(tls_pair_unrefp) TlsPair *p = NULL;
        _cleanup_(gnutls_pubkey_deinitp) gnutls_pubkey_t pub = NULL;
        _cleanup_free_ char *crt_path = NULL, *key_path = NULL, *crt_data = NULL, *key_data = NULL;
        gnutls_x509_crt_t *crts = NULL;
        unsigned n_crts = 0;
        size_t crt_len, key_len;
        char *why = NULL;
        int r;

        *ret_why = NULL;

        if (asprintf(&crt_path, "%s/%s.crt", dir, name) < 0 ||
            asprintf(&key_path, "%s/%s.key", dir, name) < 0)
                return -ENOMEM;

        p = new0(TlsPair, 1);
        if (!p)
                return -ENOMEM;
        p->n_ref = 1;
        p->name = strdup(name);
        if (!p->name)
                return -ENOMEM;

        r = read_full_file(crt_path, TLS_FILE_MAX, &crt_data, &crt_len);
        if (r < 0) {
                if (asprintf(&why, "cannot read \"%s.crt\": %s", name, strerror(-r)) >= 0)
                        *ret_why = why;
                return r;
        }
        r = read_full_file(key_path, TLS_FILE_MAX, &key_data, &key_len);
        if (r < 0) {
                if (asprintf(&why, "cannot read \"%s.key\": %s", name, strerror(-r)) >= 0)
                        *ret_why = why;
                return r;
        }

        /* GnuTLS drops a PEM block that lacks its END line, so a chain cut short would load as a shorter
         * chain: compare what was imported with the number of blocks that were begun. */
        size_t begun = count_substr(crt_data, "-----BEGIN CERTIFICATE-----");
        gnutls_datum_t d = { .data = (unsigned char *) crt_data, .size = (unsigned) crt_len };
        r = gnutls_x509_crt_list_import2(&crts, &n_crts, &d, GNUTLS_X509_FMT_PEM,
                                         GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
        if (r < 0) {
                if (asprintf(&why, "cannot parse certificate \"%s.crt\": %s%s", name, gnutls_error_string(r),
                             r == GNUTLS_E_CERTIFICATE_LIST_UNSORTED ? " (the leaf must come first)" : "") >= 0)
                        *ret_why = why;
                return errno_from_gnutls(r);
        }
        if (n_crts == 0 || begun != n_crts) {
                x509_crt_list_free(crts, n_crts);
                if (asprintf(&why, "certificate \"%s.crt\" is truncated: %zu certificate(s) begun, %u complete",
                             name, begun, n_crts) >= 0)
                        *ret_why = why;
                return -EBADMSG;
        }

        time_t not_after = gnutls_x509_crt_get_expiration_time(crts[0]);
        time_t not_before = gnutls_x509_crt_get_activation_time(crts[0]);

        p->pcerts = new0(gnutls_pcert_st, n_crts);
        if (!p->pcerts) {
                x509_crt_list_free(crts, n_crts);
                return -ENOMEM;
        }
        unsigned n = n_crts;
        r = gnutls_pcert_import_x509_list(p->pcerts, crts, &n, 0);
        x509_crt_list_free(crts, n_crts);
        if (r < 0) {
                if (asprintf(&why, "cannot use certificate \"%s.crt\": %s", name, gnutls_error_string(r)) >= 0)
                        *ret_why = why;
                return errno_from_gnutls(r);
        }
        p->n_pcerts = n;

        r = gnutls_privkey_init(&p->key);
        if (r < 0)
                return errno_from_gnutls(r);
        d = (gnutls_datum_t) { .data = (unsigned char *) key_data, .size = (unsigned) key_len };
        /* Takes PKCS#8 (unencrypted) as well as PKCS#1 and SEC1. */
        r = gnutls_privkey_import_x509_raw(p->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                if (asprintf(&why, "cannot parse key \"%s.key\": %s", name, gnutls_error_string(r)) >= 0)
                        *ret_why = why;
                return errno_from_gnutls(r);
        }

        /* A key that does not belong to the certificate would fail every handshake: refuse it here, where
         * the previous pair can still be kept. */
        uint8_t id_key[64], id_crt[64];
        size_t l_key = sizeof id_key, l_crt = sizeof id_crt;
        r = gnutls_pubkey_init(&pub);
        if (r >= 0)
                r = gnutls_pubkey_import_privkey(pub, p->key, 0, 0);
        if (r >= 0)
                r = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, id_key, &l_key);
        if (r >= 0)
                r = gnutls_pubkey_get_key_id(p->pcerts[0].pubkey, GNUTLS_KEYID_USE_SHA256, id_crt, &l_crt);
        if (r < 0) {
                if (asprintf(&why, "cannot compare key \"%s.key\" with its certificate: %s", name,
                             gnutls_error_string(r)) >= 0)
                        *ret_why = why;
                return errno_from_gnutls(r);
        }
        if (l_key != l_crt || memcmp(id_key, id_crt, l_key) != 0) {
                if (asprintf(&why, "key \"%s.key\" does not match certificate \"%s.crt\"", name, name) >= 0)
                        *ret_why = why;
                return errno_from_gnutls(GNUTLS_E_CERTIFICATE_KEY_MISMATCH);
        }

        p->not_after = not_after == (time_t) -1 ? 0 : (usec_t) not_after * USEC_PER_SEC;

        /* Served anyway: an expired certificate is better than none for clients that were told to accept
         * it, and the report makes it visible. */
        time_t now = time(NULL);
        char when[64];
        if (not_after != (time_t) -1 && not_after < now) {
                format_time(when, sizeof when, not_after);
                if (asprintf(&why, "warning: certificate expired on %s", when) >= 0)
                        *ret_why = why;
        } else if (not_before != (time_t) -1 && not_before > now) {
                format_time(when, sizeof when, not_before);
                if (asprintf(&why, "warning: certificate not valid before %s", when) >= 0)
                        *ret_why = why;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

void tls_load_report_done(TlsLoadReport *r) {
        if (!r)
                return;
        free(r->errors);
        *r = (TlsLoadReport) {};
}

static TlsCredentials *tls_credentials_free(TlsCredentials *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_pairs; i++)
                tls_pair_unref(c->pairs[i]);
        free(c->pairs);
        strv_free(c->names);
        if (c->cred)
                gnutls_certificate_free_credentials(c->cred);
        if (c->priority)
                gnutls_priority_deinit(c->priority);
        free(c);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsCredentials *, tls_credentials_free);

TlsCredentials *tls_credentials_ref(TlsCredentials *c) {
        if (c)
                c->n_ref++;
        return c;
}

TlsCredentials *tls_credentials_unref(TlsCredentials *c) {
        if (!c)
                return NULL;
        if (--c->n_ref > 0)
                return NULL;
        return tls_credentials_free(c);
}

uint64_t tls_credentials_not_after(const TlsCredentials *c) {
        return c ? c->not_after : 0;
}

char *const *tls_credentials_names(const TlsCredentials *c) {
        static char *const empty[] = { NULL };
        return c && c->names ? c->names : empty;
}

static TlsPair *tls_credentials_find(const TlsCredentials *c, const char *name) {
        if (!c || isempty(name))
                return NULL;
        for (size_t i = 0; i < c->n_pairs; i++)
                if (strcasecmp(c->pairs[i]->name, name) == 0)
                        return c->pairs[i];
        return NULL;
}

/* Exact name first, then "*.parent" for one label below, then the default pair. */
static TlsPair *tls_credentials_pick(const TlsCredentials *c, const char *sni) {
        TlsPair *p;

        if (!isempty(sni)) {
                p = tls_credentials_find(c, sni);
                if (p)
                        return p;

                const char *dot = strchr(sni, '.');
                if (dot && dot != sni && dot[1])
                        for (size_t i = 0; i < c->n_pairs; i++)
                                if (c->pairs[i]->name[0] == '*' && strcasecmp(c->pairs[i]->name + 1, dot) == 0)
                                        return c->pairs[i];
        }
        return c->default_pair;
}

static int report_line(Buf *b, const char *name, const char *what, const char *suffix) {
        return buf_printf(b, "%s: %s%s\n", name, what, suffix ?: "");
}

/* File names become report lines and SNI keys: nothing that could break a line or a lookup. */
static bool pair_name_valid(const char *s, size_t n) {
        if (n == 0 || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return true;
}

static int strcmp_ptr(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int tls_retrieve_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                             const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                             gnutls_pcert_st **pcert, unsigned *pcert_length, gnutls_privkey_t *privkey);

static int list_dir(const char *dir, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d)
                return -errno;

        for (;;) {
                struct dirent *de;
                size_t l;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = -errno;
                        break;
                }
                l = strlen(de->d_name);
                if (endswith(de->d_name, ".crt") || endswith(de->d_name, ".key"))
                        l -= 4;
                else
                        continue;
                if (!pair_name_valid(de->d_name, l)) {
                        log_debug("Ignoring \"%s\" in the certificate directory.", de->d_name);
                        continue;
                }
                _cleanup_free_ char *s = strndup(de->d_name, l);
                if (!s) {
                        r = -ENOMEM;
                        break;
                }
                r = strv_extend(&names, &n, s);
                if (r < 0)
                        break;
        }
        closedir(d);
        if (r < 0)
                return r;

        if (n > 1) {
                /* NAME.crt and NAME.key both name NAME once. */
                qsort(names, n, sizeof(char *), strcmp_ptr);
                size_t k = 1;
                for (size_t i = 1; i < n; i++) {
                        if (streq(names[i], names[k - 1]))
                                free(names[i]);
                        else
                                names[k++] = names[i];
                }
                names[k] = NULL;
        }
        *ret = TAKE_PTR(names);
        return 0;
}

int tls_credentials_load_dir(const char *dir, const char *default_name, TlsCredentials *previous,
                             TlsCredentials **ret, TlsLoadReport *report) {
        _cleanup_(tls_credentials_freep) TlsCredentials *c = NULL;
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(buf_done) Buf errors = {};
        TlsLoadReport rep = {};
        size_t n_names = 0;
        int r;

        if (report)
                *report = (TlsLoadReport) {};

        /* The first TLS work of the process: GnuTLS is loaded here, not when gate starts. */
        r = dlopen_gnutls();
        if (r < 0)
                return r;

        r = list_dir(dir, &names);
        if (r < 0)
                return log_debug_errno(r, "Failed to read certificate directory \"%s\": %m", dir);

        c = new0(TlsCredentials, 1);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;

        for (char **n = names; n && *n; n++) {
                _cleanup_(tls_pair_unrefp) TlsPair *p = NULL;
                _cleanup_free_ char *why = NULL;

                r = tls_pair_load(dir, *n, &p, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        TlsPair *old = tls_credentials_find(previous, *n);

                        log_debug_errno(r, "Refusing TLS pair \"%s\": %s", *n, why ?: "unknown error");
                        if (old) {
                                rep.kept++;
                                p = tls_pair_ref(old);
                        } else
                                rep.failed++;
                        r = report_line(&errors, *n, why ?: "cannot load",
                                        old ? ", keeping the previous pair" : NULL);
                        if (r < 0)
                                return r;
                        if (!p)
                                continue;
                } else {
                        rep.loaded++;
                        if (why) {
                                r = report_line(&errors, *n, why, NULL);
                                if (r < 0)
                                        return r;
                        }
                }

                TlsPair **a = realloc(c->pairs, sizeof(TlsPair *) * (c->n_pairs + 1));
                if (!a)
                        return -ENOMEM;
                c->pairs = a;
                c->pairs[c->n_pairs++] = TAKE_PTR(p);
                r = strv_extend(&c->names, &n_names, *n);
                if (r < 0)
                        return r;
        }

        if (c->n_pairs == 0) {
                if (report) {
                        rep.errors = buf_empty(&errors) ? NULL : buf_steal_str(&errors, NULL);
                        *report = rep;
                }
                return log_debug_errno(ENOKEY, "No usable TLS pair in \"%s\".", dir);
        }

        if (!isempty(default_name)) {
                c->default_pair = tls_credentials_find(c, default_name);
                if (!c->default_pair) {
                        _cleanup_free_ char *why = NULL;
                        if (asprintf(&why, "no such pair for the default name, using \"%s\" instead",
                                     c->pairs[0]->name) < 0)
                                return -ENOMEM;
                        r = report_line(&errors, default_name, why, NULL);
                        if (r < 0)
                                return r;
                }
        }
        /* The only pair, else the first in lexical order (pairs follow the sorted file names). */
        if (!c->default_pair)
                c->default_pair = c->pairs[0];

        c->not_after = 0;
        for (size_t i = 0; i < c->n_pairs; i++)
                if (c->pairs[i]->not_after > 0 &&
                    (c->not_after == 0 || c->pairs[i]->not_after < c->not_after))
                        c->not_after = c->pairs[i]->not_after;

        r = gnutls_certificate_allocate_credentials(&c->cred);
        if (r < 0)
                return errno_from_gnutls(r);
        gnutls_certificate_set_retrieve_function2(c->cred, tls_retrieve_cert);

        r = gnutls_priority_init(&c->priority, TLS_PRIORITY, NULL);
        if (r < 0)
                return log_debug_errno(errno_from_gnutls(r), "Failed to set up TLS priorities: %s",
                                       gnutls_error_string(r));

        if (report) {
                rep.errors = buf_empty(&errors) ? NULL : buf_steal_str(&errors, NULL);
                *report = rep;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Sessions */

/*
 * The TLS stream sits between a lower Stream (conn, or later a P2P channel) and the HTTP layer. GnuTLS
 * pulls ciphertext from the bytes the lower one is offering right now (on_read), and pushes records
 * straight into stream_write() of the lower one, which always queues: so GnuTLS never sees a short write,
 * and backpressure on output is the lower stream's pending() seen through ours.
 *
 * Any callback into the upper, or into the lower, may close us. Every entry point therefore holds the
 * object (busy) and the last one out frees it once it is dead.
 */

typedef struct TlsStream {
        Stream stream;                  /* what the upper sees; first, so Stream* casts back */
        Stream *lower;                  /* NULL once closed by us or ended by its owner */
        TlsCredentials *creds;
        gnutls_session_t session;

        /* The bytes the lower stream offers during on_read, for the pull function. */
        const uint8_t *in;
        size_t in_size, in_used;

        Buf plain_in;                   /* decrypted, not yet taken by the upper */
        Buf plain_out;                  /* written by the upper before the handshake completed */

        TlsHandshakeDone handshake_cb;
        void *handshake_userdata;

        sd_event_source *pump_source;   /* re-offers plain_in after the upper unpaused */

        unsigned busy;
        bool processing;
        bool handshake_done;
        bool read_paused;
        bool want_writable;
        bool dead;                      /* closed or ended: free when the last entry point returns */
} TlsStream;

static const StreamOps tls_stream_ops;

static TlsStream *tls_stream_free(TlsStream *t) {
        if (!t)
                return NULL;
        sd_event_source_disable_unref(t->pump_source);
        if (t->session)
                gnutls_deinit(t->session);
        tls_credentials_unref(t->creds);
        buf_done(&t->plain_in);
        buf_done(&t->plain_out);
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsStream *, tls_stream_free);

static TlsStream *tls_from_stream(Stream *s) {
        return (TlsStream *) s;
}

static void tls_enter(TlsStream *t) {
        t->busy++;
}

/* Returns true when t was freed. */
static bool tls_leave(TlsStream *t) {
        if (--t->busy > 0 || !t->dead)
                return false;
        tls_stream_free(t);
        return true;
}

static void tls_close_lower(TlsStream *t, bool flush) {
        Stream *lower = TAKE_PTR(t->lower);
        if (lower)
                stream_close(lower, flush);
}

/* Ends the session on an error: the upper hears of it through on_close, the lower is closed (flushing, so
 * an alert GnuTLS queued still reaches the peer). */
static void tls_fail(TlsStream *t, int error) {
        const StreamUpper *u = t->stream.upper;
        void *ud = t->stream.upper_data;

        if (t->dead)
                return;
        log_debug_errno(error, "TLS session failed%s: %m", t->handshake_done ? "" : " during the handshake");
        t->dead = true;
        t->stream.upper = NULL;
        t->stream.upper_data = NULL;
        tls_close_lower(t, true);
        if (u && u->on_close)
                u->on_close(ud, error);
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *p, size_t n) {
        TlsStream *t = ptr;
        int r;

        if (!t->lower) {
                gnutls_transport_set_errno(t->session, EPIPE);
                return -1;
        }
        r = stream_write(t->lower, p, n);
        if (r < 0) {
                gnutls_transport_set_errno(t->session, -r);
                return -1;
        }
        return (ssize_t) n;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *p, size_t n) {
        TlsStream *t = ptr;
        size_t k;

        if (!t->in || t->in_used >= t->in_size) {
                gnutls_transport_set_errno(t->session, EAGAIN);
                return -1;
        }
        k = MIN(n, t->in_size - t->in_used);
        memcpy(p, t->in + t->in_used, k);
        t->in_used += k;
        return (ssize_t) k;
}

/* GnuTLS asks this when it wants to wait for input; without our own function it would select() on a
 * socket that is not there. We never wait: the input is in the chunk being offered, or it is not. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms) {
        TlsStream *t = ptr;
        return t->in && t->in_used < t->in_size ? 1 : 0;
}

/* The server name the client asked for, lower case, or "" when it sent none or one we cannot use (too
 * long, or bytes that have no place in a DNS name: it selects a certificate and ends up in logs). */
static void tls_session_sni(gnutls_session_t session, char *buf, size_t size) {
        char sni[256];
        size_t l = sizeof sni;
        unsigned type;

        buf[0] = 0;
        if (gnutls_server_name_get(session, sni, &l, &type, 0) < 0 || type != GNUTLS_NAME_DNS ||
            l == 0 || l >= size)
                return;
        for (size_t i = 0; i < l; i++)
                if ((unsigned char) sni[i] <= 0x20 || (unsigned char) sni[i] >= 0x7f)
                        return;
        for (size_t i = 0; i < l; i++)
                buf[i] = (char) tolower((unsigned char) sni[i]);
        buf[l] = 0;
}

static int tls_retrieve_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                             const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                             gnutls_pcert_st **pcert, unsigned *pcert_length, gnutls_privkey_t *privkey) {
        TlsStream *t = gnutls_session_get_ptr(session);
        char sni[256];
        TlsPair *p;

        tls_session_sni(session, sni, sizeof sni);
        p = tls_credentials_pick(t->creds, sni);
        if (!p) {
                *pcert_length = 0;
                return 0;
        }
        /* GnuTLS neither frees nor changes these; the session's reference on creds keeps them alive. */
        *pcert = p->pcerts;
        *pcert_length = p->n_pcerts;
        *privkey = p->key;
        return 0;
}

/* Encrypts plaintext: push never fails short, so gnutls_record_send() takes everything. */
static int tls_send(TlsStream *t, const uint8_t *p, size_t n) {
        unsigned again = 0;

        while (n > 0) {
                ssize_t k = gnutls_record_send(t->session, p, n);
                /* Cannot happen with our push; retrying is what GnuTLS asks for if it ever does. */
                if ((k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED) && ++again < TLS_NONFATAL_MAX)
                        continue;
                if (k < 0)
                        return errno_from_gnutls((int) k);
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void tls_fill_info(TlsStream *t) {
        gnutls_datum_t alpn = {};

        if (t->lower)
                t->stream.info = t->lower->info;
        t->stream.info.secure = true;
        t->stream.info.alpn[0] = 0;
        t->stream.info.sni[0] = 0;

        if (gnutls_alpn_get_selected_protocol(t->session, &alpn) >= 0 && alpn.size > 0 &&
            alpn.size < sizeof t->stream.info.alpn) {
                memcpy(t->stream.info.alpn, alpn.data, alpn.size);
                t->stream.info.alpn[alpn.size] = 0;
        }

        tls_session_sni(t->session, t->stream.info.sni, sizeof t->stream.info.sni);
}

/* Returns 1 once the handshake is done, 0 while it needs more input, or a negative errno. */
static int tls_handshake_step(TlsStream *t) {
        unsigned nonfatal = 0;
        int r;

        for (;;) {
                r = gnutls_handshake(t->session);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
                        return 0;
                if (r >= 0)
                        break;
                if (!gnutls_error_is_fatal(r) && ++nonfatal < TLS_NONFATAL_MAX)
                        continue;
                log_debug("TLS handshake failed: %s", gnutls_error_string(r));
                (void) gnutls_alert_send_appropriate(t->session, r);
                return errno_from_gnutls(r);
        }

        t->handshake_done = true;
        tls_fill_info(t);
        log_debug("TLS handshake done: %s, ALPN \"%s\", SNI \"%s\".",
                  gnutls_protocol_get_name(gnutls_protocol_get_version(t->session)) ?: "?",
                  t->stream.info.alpn, t->stream.info.sni);

        if (t->handshake_cb)
                t->handshake_cb(&t->stream, t->handshake_userdata);
        if (t->dead)
                return 1;

        if (!buf_empty(&t->plain_out)) {
                r = tls_send(t, buf_data(&t->plain_out), buf_len(&t->plain_out));
                buf_done(&t->plain_out);
                if (r < 0)
                        return r;
        }
        if (t->want_writable && t->lower)
                stream_want_writable(t->lower);
        return 1;
}

/* Offers buffered plaintext to the upper. */
static int tls_deliver(TlsStream *t) {
        while (!t->dead && !t->read_paused && t->stream.upper && !buf_empty(&t->plain_in)) {
                size_t n = buf_len(&t->plain_in);
                ssize_t k = t->stream.upper->on_read(t->stream.upper_data, buf_data(&t->plain_in), n);
                if (k < 0)
                        return (int) k;
                if (t->dead)
                        return 0;
                if (k == 0)
                        break;
                buf_consume(&t->plain_in, MIN((size_t) k, n));
        }
        return 0;
}

/* Drives the handshake, then decrypts and delivers until GnuTLS wants more input or the upper wants no
 * more. Returns 1 when the peer ended the session (close_notify). */
static int tls_process(TlsStream *t) {
        unsigned nonfatal = 0;
        int r;

        if (!t->handshake_done) {
                r = tls_handshake_step(t);
                if (r <= 0)
                        return r;
                if (t->dead)
                        return 0;
        }

        for (;;) {
                r = tls_deliver(t);
                if (r < 0 || t->dead)
                        return r;
                /* Paused: stop decrypting, so the ciphertext stays below and backpressure reaches the
                 * peer. Records GnuTLS holds already are picked up by the pump on unpause. */
                if (t->read_paused)
                        return 0;
                if (buf_len(&t->plain_in) >= TLS_PLAINTEXT_MAX)
                        return log_debug_errno(ENOBUFS,
                                               "TLS plaintext not taken by the upper exceeds %u bytes.",
                                               TLS_PLAINTEXT_MAX);

                uint8_t *d = buf_reserve(&t->plain_in, TLS_RECORD_MAX);
                if (!d)
                        return -ENOMEM;
                ssize_t k = gnutls_record_recv(t->session, d, TLS_RECORD_MAX);
                if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
                        return 0;
                if (k == 0)
                        return 1;
                if (k == GNUTLS_E_REHANDSHAKE && ++nonfatal < TLS_NONFATAL_MAX) {
                        /* HTTP/2 forbids renegotiation and HTTP/1.1 clients have no use for it here. */
                        (void) gnutls_alert_send(t->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
                        continue;
                }
                if (k == GNUTLS_E_WARNING_ALERT_RECEIVED && ++nonfatal < TLS_NONFATAL_MAX)
                        continue;
                if (k < 0) {
                        log_debug("TLS record receive failed: %s", gnutls_error_string((int) k));
                        (void) gnutls_alert_send_appropriate(t->session, (int) k);
                        return errno_from_gnutls((int) k);
                }
                buf_commit(&t->plain_in, (size_t) k);
                nonfatal = 0;
        }
}

/* The peer said close_notify: what was decrypted has been offered, and this is the orderly end. */
static void tls_peer_closed(TlsStream *t) {
        const StreamUpper *u = t->stream.upper;
        void *ud = t->stream.upper_data;

        if (t->dead)
                return;
        t->dead = true;
        t->stream.upper = NULL;
        t->stream.upper_data = NULL;
        (void) gnutls_bye(t->session, GNUTLS_SHUT_WR);
        tls_close_lower(t, true);
        if (u && u->on_close)
                u->on_close(ud, 0);
}

static void tls_run(TlsStream *t) {
        int r;

        t->processing = true;
        r = tls_process(t);
        t->processing = false;
        /* Idle sessions hold no plaintext buffer: there may be many of them. */
        buf_shrink(&t->plain_in, 0);
        if (r < 0)
                tls_fail(t, r);
        else if (r > 0)
                tls_peer_closed(t);
}

static ssize_t tls_lower_on_read(void *userdata, const uint8_t *p, size_t n) {
        TlsStream *t = userdata;
        ssize_t k;

        if (t->dead)
                return (ssize_t) n;

        tls_enter(t);
        t->in = p;
        t->in_size = n;
        t->in_used = 0;
        tls_run(t);
        /* GnuTLS keeps whatever it pulled, so that much is consumed. Once dead, we have closed the lower
         * stream ourselves; all of it is ours to drop. */
        k = t->dead ? (ssize_t) n : (ssize_t) t->in_used;
        t->in = NULL;
        t->in_size = t->in_used = 0;
        tls_leave(t);
        return k;
}

static void tls_lower_on_writable(void *userdata) {
        TlsStream *t = userdata;

        tls_enter(t);
        if (!t->dead && t->handshake_done && t->want_writable && t->lower) {
                if (stream_pending(t->lower) > 0)
                        stream_want_writable(t->lower);
                else {
                        t->want_writable = false;
                        if (t->stream.upper && t->stream.upper->on_writable)
                                t->stream.upper->on_writable(t->stream.upper_data);
                }
        }
        tls_leave(t);
}

static void tls_lower_on_close(void *userdata, int error) {
        TlsStream *t = userdata;
        const StreamUpper *u = t->stream.upper;
        void *ud = t->stream.upper_data;

        tls_enter(t);
        /* The lower stream is gone: its owner frees it, we must not touch it again. */
        t->lower = NULL;
        if (!t->dead) {
                t->dead = true;
                t->stream.upper = NULL;
                t->stream.upper_data = NULL;
                if (u && u->on_close)
                        u->on_close(ud, error);
        }
        tls_leave(t);
}

static const StreamUpper tls_lower_upper = {
        .on_read = tls_lower_on_read,
        .on_writable = tls_lower_on_writable,
        .on_close = tls_lower_on_close,
};

static int tls_pump_handler(sd_event_source *s, void *userdata) {
        TlsStream *t = userdata;

        tls_enter(t);
        if (!t->dead && !t->read_paused)
                tls_run(t);
        tls_leave(t);
        return 0;
}

/* Plaintext (or records) may wait in us after a pause, with nothing more to come from below to trigger a
 * read: re-offer from the event loop, not from inside the upper's own call. */
static void tls_schedule_pump(TlsStream *t) {
        int r;

        if (t->processing)
                return;         /* the running loop sees the unpause itself */

        if (!t->stream.event) {
                /* No loop (tests, fuzzers): do it now, unless we are inside an upper callback. */
                if (t->busy == 0) {
                        tls_enter(t);
                        tls_run(t);
                        tls_leave(t);
                }
                return;
        }

        if (!t->pump_source) {
                r = sd_event_add_defer(t->stream.event, &t->pump_source, tls_pump_handler, t);
                if (r < 0) {
                        log_debug_errno(r, "Failed to add TLS pump event source: %m");
                        return;
                }
                (void) sd_event_source_set_description(t->pump_source, "tls-pump");
        }
        r = sd_event_source_set_enabled(t->pump_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_debug_errno(r, "Failed to enable TLS pump event source: %m");
}

static int tls_write(Stream *s, const void *p, size_t n) {
        TlsStream *t = tls_from_stream(s);
        int r;

        if (t->dead || !t->lower)
                return -EPIPE;
        if (n == 0)
                return 0;
        if (!t->handshake_done)
                return buf_append(&t->plain_out, p, n);

        tls_enter(t);
        r = tls_send(t, p, n);
        tls_leave(t);
        return r;
}

static size_t tls_pending(Stream *s) {
        TlsStream *t = tls_from_stream(s);
        return buf_len(&t->plain_out) + (t->lower ? stream_pending(t->lower) : 0);
}

static void tls_set_read_paused(Stream *s, bool paused) {
        TlsStream *t = tls_from_stream(s);

        if (t->dead)
                return;
        t->read_paused = paused;
        if (t->lower)
                stream_set_read_paused(t->lower, paused);
        if (!paused && t->handshake_done)
                tls_schedule_pump(t);
}

static void tls_want_writable(Stream *s) {
        TlsStream *t = tls_from_stream(s);

        if (t->dead)
                return;
        t->want_writable = true;
        /* Before the handshake is done, the post-handshake flush asks the lower stream. */
        if (t->handshake_done && t->lower)
                stream_want_writable(t->lower);
}

static void tls_close(Stream *s, bool flush) {
        TlsStream *t = tls_from_stream(s);

        t->stream.upper = NULL;
        t->stream.upper_data = NULL;
        if (t->dead)
                return;

        tls_enter(t);
        t->dead = true;
        /* close_notify only on an orderly close: after an abort it would make a truncated response look
         * complete to the client. */
        if (flush && t->handshake_done && t->lower)
                (void) gnutls_bye(t->session, GNUTLS_SHUT_WR);
        tls_close_lower(t, flush);
        tls_leave(t);
}

static const StreamOps tls_stream_ops = {
        .write = tls_write,
        .pending = tls_pending,
        .set_read_paused = tls_set_read_paused,
        .want_writable = tls_want_writable,
        .close = tls_close,
};

int tls_stream_new(Stream *lower, TlsCredentials *creds, Stream **ret) {
        static const gnutls_datum_t alpn[] = {
                { .data = (unsigned char *) "h2", .size = STRLEN("h2") },
                { .data = (unsigned char *) "http/1.1", .size = STRLEN("http/1.1") },
        };
        _cleanup_(tls_stream_freep) TlsStream *t = NULL;
        int r;

        if (!lower || !creds || !ret)
                return -EINVAL;

        t = new0(TlsStream, 1);
        if (!t)
                return -ENOMEM;
        t->creds = tls_credentials_ref(creds);

        r = gnutls_init(&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK);
        if (r < 0) {
                t->session = NULL;
                return errno_from_gnutls(r);
        }
        r = gnutls_priority_set(t->session, creds->priority);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE, creds->cred);
        if (r < 0)
                return errno_from_gnutls(r);
        gnutls_certificate_server_set_request(t->session, GNUTLS_CERT_IGNORE);
        r = gnutls_alpn_set_protocols(t->session, alpn, ELEMENTSOF(alpn), GNUTLS_ALPN_SERVER_PRECEDENCE);
        if (r < 0)
                return errno_from_gnutls(r);

        gnutls_session_set_ptr(t->session, t);
        gnutls_transport_set_ptr(t->session, t);
        gnutls_transport_set_push_function(t->session, tls_push);
        gnutls_transport_set_pull_function(t->session, tls_pull);
        gnutls_transport_set_pull_timeout_function(t->session, tls_pull_timeout);
        /* The caller's header timeout covers the handshake: GnuTLS has no clock of ours to run one on. */
        gnutls_handshake_set_timeout(t->session, 0);

        t->stream.ops = &tls_stream_ops;
        t->stream.event = lower->event;
        t->stream.info = lower->info;
        t->stream.info.secure = false;
        t->stream.info.alpn[0] = 0;
        t->stream.info.sni[0] = 0;
        t->lower = lower;
        stream_attach(lower, &tls_lower_upper, t);

        *ret = &TAKE_PTR(t)->stream;
        return 0;
}

void tls_stream_set_handshake_callback(Stream *s, TlsHandshakeDone cb, void *userdata) {
        TlsStream *t = tls_from_stream(s);

        t->handshake_cb = cb;
        t->handshake_userdata = userdata;
}
