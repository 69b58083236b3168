/* Unit tests for net/tls: loading the cert directory, SNI selection, and sessions driven in memory. */
#include <dirent.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "net/tls.h"
#include "shared/buf.h"
#include "shared/errors.h"
#include "shared/util.h"
#include "tests.h"
#include "tests/memstream.h"

/* ---------------------------------------------------------------------------------------------------- */
/* Certificates, made with the GnuTLS API so that validity dates can be chosen freely. */

static gnutls_x509_privkey_t ca_key;
static gnutls_x509_crt_t ca_crt;

static int write_file(const char *dir, const char *name, const void *p, size_t n) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        if (n > 0 && fwrite(p, 1, n, f) != n) {
                fclose(f);
                return -EIO;
        }
        return fclose(f) == 0 ? 0 : -errno;
}

static int read_dir_file(const char *dir, const char *name, char **ret, size_t *ret_len) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        return read_full_file(path, 1 << 20, ret, ret_len);
}

static void rm_rf(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        char path[4096];

        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' || (!streq(de->d_name, ".") && !streq(de->d_name, ".."))) {
                        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                        (void) unlink(path);
                }
        closedir(d);
        (void) rmdir(dir);
}

static char *make_tmpdir(void) {
        char *t = strdup("/tmp/test-tls-XXXXXX");
        if (!t || !mkdtemp(t)) {
                free(t);
                return NULL;
        }
        return t;
}

static int gen_key(gnutls_pk_algorithm_t algo, gnutls_x509_privkey_t *ret) {
        gnutls_x509_privkey_t k;
        int r;

        r = gnutls_x509_privkey_init(&k);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_x509_privkey_generate(k, algo,
                                         algo == GNUTLS_PK_RSA ? 2048 :
                                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
        if (r < 0) {
                gnutls_x509_privkey_deinit(k);
                return errno_from_gnutls(r);
        }
        *ret = k;
        return 0;
}

static int gen_crt(const char *cn, unsigned serial, time_t not_after, gnutls_x509_privkey_t key, bool ca,
                   gnutls_x509_crt_t *ret) {
        gnutls_x509_crt_t c;
        uint8_t ser[4] = { 0x01, (uint8_t) (serial >> 16), (uint8_t) (serial >> 8), (uint8_t) serial };
        int r;

        r = gnutls_x509_crt_init(&c);
        if (r < 0)
                return errno_from_gnutls(r);
        if ((r = gnutls_x509_crt_set_version(c, 3)) < 0 ||
            (r = gnutls_x509_crt_set_serial(c, ser, sizeof ser)) < 0 ||
            (r = gnutls_x509_crt_set_activation_time(c, time(NULL) - 3600)) < 0 ||
            (r = gnutls_x509_crt_set_expiration_time(c, not_after)) < 0 ||
            (r = gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn))) < 0 ||
            (r = gnutls_x509_crt_set_key(c, key)) < 0 ||
            (r = gnutls_x509_crt_set_basic_constraints(c, ca, -1)) < 0)
                goto fail;
        if (ca)
                r = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
        else {
                r = gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT);
                if (r >= 0)
                        r = gnutls_x509_crt_set_key_purpose_oid(c, GNUTLS_KP_TLS_WWW_SERVER, 0);
                if (r >= 0)
                        r = gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, cn, strlen(cn),
                                                                 GNUTLS_FSAN_SET);
        }
        if (r < 0)
                goto fail;
        r = gnutls_x509_crt_sign2(c, ca ? c : ca_crt, ca ? key : ca_key, GNUTLS_DIG_SHA256, 0);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        gnutls_x509_crt_deinit(c);
        return errno_from_gnutls(r);
}

static int ensure_ca(void) {
        int r;

        if (ca_crt)
                return 0;
        r = gen_key(GNUTLS_PK_ECDSA, &ca_key);
        if (r < 0)
                return r;
        return gen_crt("gate test CA", 1, time(NULL) + 3650 * 86400, ca_key, true, &ca_crt);
}

enum {
        KEY_SEC1,       /* "EC PRIVATE KEY" */
        KEY_PKCS8,      /* "PRIVATE KEY" */
        KEY_RSA,        /* PKCS#1 "RSA PRIVATE KEY" */
};

/* Writes NAME.crt (leaf + CA) and NAME.key, the leaf for cn signed by the test CA. */
static int gen_pair(const char *dir, const char *name, const char *cn, unsigned serial, time_t not_after,
                    int key_format) {
        gnutls_x509_privkey_t k = NULL;
        gnutls_x509_crt_t c = NULL;
        gnutls_datum_t d1 = {}, d2 = {}, d3 = {};
        char file[512];
        int r;

        r = ensure_ca();
        if (r < 0)
                return r;
        r = gen_key(key_format == KEY_RSA ? GNUTLS_PK_RSA : GNUTLS_PK_ECDSA, &k);
        if (r < 0)
                return r;
        r = gen_crt(cn, serial, not_after, k, false, &c);
        if (r < 0)
                goto finish;

        r = gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d1);
        if (r >= 0)
                r = gnutls_x509_crt_export2(ca_crt, GNUTLS_X509_FMT_PEM, &d2);
        if (r >= 0)
                r = key_format == KEY_PKCS8 ?
                        gnutls_x509_privkey_export2_pkcs8(k, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d3) :
                        gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d3);
        if (r < 0) {
                r = errno_from_gnutls(r);
                goto finish;
        }

        Buf chain = {};
        if (buf_append(&chain, d1.data, d1.size) < 0 || buf_append(&chain, d2.data, d2.size) < 0) {
                buf_done(&chain);
                r = -ENOMEM;
                goto finish;
        }
        snprintf(file, sizeof file, "%s.crt", name);
        r = write_file(dir, file, buf_data(&chain), buf_len(&chain));
        buf_done(&chain);
        if (r < 0)
                goto finish;
        snprintf(file, sizeof file, "%s.key", name);
        r = write_file(dir, file, d3.data, d3.size);

finish:
        gnutls_free(d1.data);
        gnutls_free(d2.data);
        gnutls_free(d3.data);
        if (c)
                gnutls_x509_crt_deinit(c);
        gnutls_x509_privkey_deinit(k);
        return r;
}

static time_t in_days(int days) {
        return time(NULL) + (time_t) days * 86400;
}

/* ---------------------------------------------------------------------------------------------------- */
/* An in-memory client and a recording upper. */

typedef struct Client {
        gnutls_session_t session;
        gnutls_certificate_credentials_t cred;
        Buf out;        /* client -> server, not fed yet */
        Buf in;         /* server -> client, not read yet */
} Client;

static ssize_t client_push(gnutls_transport_ptr_t p, const void *d, size_t n) {
        Client *c = p;
        if (buf_append(&c->out, d, n) < 0) {
                gnutls_transport_set_errno(c->session, ENOMEM);
                return -1;
        }
        return (ssize_t) n;
}

static ssize_t client_pull(gnutls_transport_ptr_t p, void *d, size_t n) {
        Client *c = p;
        size_t k = MIN(n, buf_len(&c->in));
        if (k == 0) {
                gnutls_transport_set_errno(c->session, EAGAIN);
                return -1;
        }
        memcpy(d, buf_data(&c->in), k);
        buf_consume(&c->in, k);
        return (ssize_t) k;
}

static int client_pull_timeout(gnutls_transport_ptr_t p, unsigned ms) {
        return buf_len(&((Client *) p)->in) > 0;
}

/* alpn: comma-separated or NULL; priority NULL for the default. */
static int client_init(Client *c, const char *sni, const char *alpn, const char *priority) {
        int r;

        *c = (Client) {};
        r = ensure_ca();
        if (r < 0)
                return r;
        if ((r = gnutls_certificate_allocate_credentials(&c->cred)) < 0 ||
            (r = gnutls_certificate_set_x509_trust(c->cred, &ca_crt, 1)) < 0 ||
            (r = gnutls_init(&c->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0 ||
            (r = priority ? gnutls_priority_set_direct(c->session, priority, NULL) :
                            gnutls_set_default_priority(c->session)) < 0 ||
            (r = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->cred)) < 0)
                return errno_from_gnutls(r);
        if (sni && (r = gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, sni, strlen(sni))) < 0)
                return errno_from_gnutls(r);
        if (alpn) {
                gnutls_datum_t p[4];
                unsigned n = 0;
                const char *s = alpn;
                while (*s && n < ELEMENTSOF(p)) {
                        size_t l = strcspn(s, ",");
                        p[n++] = (gnutls_datum_t) { .data = (unsigned char *) s, .size = (unsigned) l };
                        s += l + (s[l] == ',');
                }
                if ((r = gnutls_alpn_set_protocols(c->session, p, n, 0)) < 0)
                        return errno_from_gnutls(r);
        }
        /* Chain only: which leaf was chosen is checked by its CN. */
        gnutls_session_set_verify_cert(c->session, NULL, 0);
        gnutls_transport_set_ptr(c->session, c);
        gnutls_transport_set_push_function(c->session, client_push);
        gnutls_transport_set_pull_function(c->session, client_pull);
        gnutls_transport_set_pull_timeout_function(c->session, client_pull_timeout);
        return 0;
}

static void client_done(Client *c) {
        if (c->session)
                gnutls_deinit(c->session);
        if (c->cred)
                gnutls_certificate_free_credentials(c->cred);
        buf_done(&c->out);
        buf_done(&c->in);
}

/* Moves the client's output to the server, and the server's output to the client. */
static int client_flush(Client *c, MemStream *m) {
        int r = 0;

        if (!buf_empty(&c->out)) {
                Buf b = c->out;
                c->out = (Buf) {};
                r = memstream_feed(m, buf_data(&b), buf_len(&b));
                buf_done(&b);
        }
        if (!buf_empty(&m->out)) {
                if (buf_append(&c->in, buf_data(&m->out), buf_len(&m->out)) < 0)
                        return -ENOMEM;
                buf_clear(&m->out);
        }
        return r;
}

/* Runs the client handshake to completion. Its last flight stays in c->out (not yet fed to the server),
 * so a test can add application data to the same chunk; client_flush() sends it. */
static int client_handshake(Client *c, MemStream *m) {
        for (unsigned i = 0; i < 32; i++) {
                int r = gnutls_handshake(c->session);
                if (r == 0)
                        return 0;
                if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
                        fprintf(stderr, "client handshake: %s\n", gnutls_strerror(r));
                        return errno_from_gnutls(r);
                }
                if (buf_empty(&c->out) && buf_empty(&m->out))
                        return -EPROTO;         /* stuck */
                r = client_flush(c, m);
                if (r < 0)
                        return r;
        }
        return -ELOOP;
}

static int client_send(Client *c, MemStream *m, const char *s) {
        size_t n = strlen(s);
        while (n > 0) {
                ssize_t k = gnutls_record_send(c->session, s, n);
                if (k < 0)
                        return errno_from_gnutls((int) k);
                s += k;
                n -= (size_t) k;
        }
        return m ? client_flush(c, m) : 0;
}

/* Reads what the server sent (all of it, after client_flush()); returns the byte count, 0 on close_notify. */
static ssize_t client_recv(Client *c, MemStream *m, Buf *into) {
        ssize_t total = 0;
        int r;

        r = client_flush(c, m);
        if (r < 0)
                return r;
        for (;;) {
                char d[16384];
                ssize_t k = gnutls_record_recv(c->session, d, sizeof d);
                if (k == GNUTLS_E_AGAIN)
                        return total;
                if (k == 0)
                        return total > 0 ? total : 0;
                if (k < 0)
                        return errno_from_gnutls((int) k);
                if (buf_append(into, d, (size_t) k) < 0)
                        return -ENOMEM;
                total += k;
        }
}

/* The common name of the certificate the server presented. */
static int client_peer_cn(Client *c, char *buf, size_t n) {
        const gnutls_datum_t *l;
        unsigned nl = 0;
        gnutls_x509_crt_t crt;
        int r;

        l = gnutls_certificate_get_peers(c->session, &nl);
        if (!l || nl == 0)
                return -ENOENT;
        r = gnutls_x509_crt_init(&crt);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_x509_crt_import(crt, &l[0], GNUTLS_X509_FMT_DER);
        if (r >= 0)
                r = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, buf, &n);
        gnutls_x509_crt_deinit(crt);
        return r < 0 ? errno_from_gnutls(r) : 0;
}

static unsigned client_peer_serial(Client *c) {
        const gnutls_datum_t *l;
        unsigned nl = 0;
        gnutls_x509_crt_t crt;
        uint8_t s[16];
        size_t n = sizeof s;
        unsigned v = 0;

        l = gnutls_certificate_get_peers(c->session, &nl);
        if (!l || nl == 0 || gnutls_x509_crt_init(&crt) < 0)
                return 0;
        if (gnutls_x509_crt_import(crt, &l[0], GNUTLS_X509_FMT_DER) >= 0 &&
            gnutls_x509_crt_get_serial(crt, s, &n) >= 0)
                for (size_t i = 1; i < n; i++)
                        v = (v << 8) | s[i];
        gnutls_x509_crt_deinit(crt);
        return v;
}

typedef struct Upper {
        Stream *s;
        Buf got;
        unsigned handshakes;
        char alpn[16];
        char sni[256];
        bool secure;
        bool closed;
        int close_error;
        unsigned writable;
        bool attach;            /* attach from the handshake callback */
        bool pause_after_read;
        size_t take_max;        /* consume at most this much per call (0: all) */
        int fail_with;
        char reply[64];         /* written back from on_read, once */
} Upper;

static ssize_t upper_on_read(void *userdata, const uint8_t *p, size_t n) {
        Upper *u = userdata;
        size_t k = u->take_max > 0 ? MIN(n, u->take_max) : n;

        if (u->fail_with)
                return -u->fail_with;
        if (buf_append(&u->got, p, k) < 0)
                return -ENOMEM;
        if (u->reply[0]) {
                int r = stream_write(u->s, u->reply, strlen(u->reply));
                if (r < 0)
                        return r;
                u->reply[0] = 0;
        }
        if (u->pause_after_read)
                stream_set_read_paused(u->s, true);
        return (ssize_t) k;
}

static void upper_on_writable(void *userdata) {
        ((Upper *) userdata)->writable++;
}

static void upper_on_close(void *userdata, int error) {
        Upper *u = userdata;
        u->closed = true;
        u->close_error = error;
}

static const StreamUpper upper_ops = {
        .on_read = upper_on_read,
        .on_writable = upper_on_writable,
        .on_close = upper_on_close,
};

static void on_handshake(Stream *tls, void *userdata) {
        Upper *u = userdata;

        u->handshakes++;
        u->s = tls;
        u->secure = tls->info.secure;
        snprintf(u->alpn, sizeof u->alpn, "%s", tls->info.alpn);
        snprintf(u->sni, sizeof u->sni, "%s", tls->info.sni);
        if (u->attach)
                stream_attach(tls, &upper_ops, u);
}

/* One server session over a MemStream, with its client. */
typedef struct Session {
        MemStream m;
        Stream *tls;
        Client c;
        Upper u;
} Session;

static int session_start(Session *s, sd_event *e, TlsCredentials *creds, const char *sni, const char *alpn,
                         const char *priority) {
        int r;

        *s = (Session) {};
        s->u.attach = true;
        memstream_init(&s->m, e);
        r = tls_stream_new(&s->m.stream, creds, &s->tls);
        if (r < 0)
                return r;
        tls_stream_set_handshake_callback(s->tls, on_handshake, &s->u);
        return client_init(&s->c, sni, alpn, priority);
}

static int session_handshake(Session *s) {
        int r = client_handshake(&s->c, &s->m);
        if (r < 0)
                return r;
        return client_flush(&s->c, &s->m);
}

/* Tears down whatever is left: closes the TLS stream unless it ended already. */
static void session_done(Session *s) {
        if (s->tls && !s->m.closed && !s->m.upper_gone)
                memstream_hangup(&s->m, 0);
        client_done(&s->c);
        memstream_done(&s->m);
        buf_done(&s->u.got);
}

static const char *nn(const char *s) {
        return s ?: "(null)";
}

static void close_on_handshake(Stream *tls, void *userdata) {
        stream_close(tls, false);
}

static char *cn_of(Session *s) {
        static char cn[256];
        cn[0] = 0;
        if (client_peer_cn(&s->c, cn, sizeof cn) < 0)
                return NULL;
        return cn;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Loading */

TEST(load_one_pair) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        TlsLoadReport rep;
        time_t na = in_days(30);

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "example.test", "example.test", 7, na, KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.kept, 0);
        ASSERT_EQ(rep.failed, 0);
        ASSERT_NULL(rep.errors);
        ASSERT_EQ(strv_length(tls_credentials_names(c)), 1);
        ASSERT_STREQ(tls_credentials_names(c)[0], "example.test");
        ASSERT_EQ(tls_credentials_not_after(c), (uint64_t) na * USEC_PER_SEC);
        tls_load_report_done(&rep);
        rm_rf(dir);
}

TEST(load_key_formats) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        TlsLoadReport rep;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "pkcs8.test", "pkcs8.test", 1, in_days(30), KEY_PKCS8));
        ASSERT_OK(gen_pair(dir, "rsa.test", "rsa.test", 2, in_days(30), KEY_RSA));
        ASSERT_OK(gen_pair(dir, "sec1.test", "sec1.test", 3, in_days(30), KEY_SEC1));
        /* Not pairs: ignored without a report line. */
        ASSERT_OK(write_file(dir, "README", "x", 1));
        ASSERT_OK(write_file(dir, ".hidden.crt", "x", 1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.loaded, 3);
        ASSERT_NULL(rep.errors);
        ASSERT_STREQ(tls_credentials_names(c)[0], "pkcs8.test");
        ASSERT_STREQ(tls_credentials_names(c)[1], "rsa.test");
        ASSERT_STREQ(tls_credentials_names(c)[2], "sec1.test");
        ASSERT_NULL(tls_credentials_names(c)[3]);
        tls_load_report_done(&rep);
        rm_rf(dir);
}

TEST(not_after_earliest_and_expired) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        TlsLoadReport rep;
        time_t early = in_days(10), late = in_days(90), past = time(NULL) - 60;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "a.test", "a.test", 1, late, KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "b.test", "b.test", 2, early, KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(tls_credentials_not_after(c), (uint64_t) early * USEC_PER_SEC);
        tls_load_report_done(&rep);
        c = tls_credentials_unref(c);

        /* Expired: loaded, but said so. */
        ASSERT_OK(gen_pair(dir, "old.test", "old.test", 3, past, KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.loaded, 3);
        ASSERT_EQ(rep.failed, 0);
        ASSERT_CONTAINS(rep.errors, "old.test: warning: certificate expired on ");
        ASSERT_EQ(tls_credentials_not_after(c), (uint64_t) past * USEC_PER_SEC);
        tls_load_report_done(&rep);
        ASSERT_EQ(tls_credentials_not_after(NULL), 0);
        rm_rf(dir);
}

TEST(mismatch_refused_previous_kept) {
        _cleanup_free_ char *dir = make_tmpdir(), *other = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *a = NULL, *b = NULL, *x = NULL;
        _cleanup_free_ char *key = NULL;
        size_t key_len;
        TlsLoadReport rep;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_NOT_NULL(other);
        ASSERT_OK(gen_pair(dir, "a.test", "a.test", 11, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "b.test", "b.test", 12, in_days(30), KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &a, &rep));
        tls_load_report_done(&rep);

        /* A renewal that went wrong: new cert for a.test, but the key of some other pair. */
        ASSERT_OK(gen_pair(other, "a.test", "a.test", 21, in_days(60), KEY_SEC1));
        ASSERT_OK(gen_pair(other, "z.test", "z.test", 22, in_days(60), KEY_SEC1));
        ASSERT_OK(read_dir_file(other, "z.test.key", &key, &key_len));
        ASSERT_OK(write_file(dir, "a.test.key", key, key_len));
        _cleanup_free_ char *crt = NULL;
        size_t crt_len;
        ASSERT_OK(read_dir_file(other, "a.test.crt", &crt, &crt_len));
        ASSERT_OK(write_file(dir, "a.test.crt", crt, crt_len));

        ASSERT_OK(tls_credentials_load_dir(dir, NULL, a, &b, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.kept, 1);
        ASSERT_EQ(rep.failed, 0);
        ASSERT_CONTAINS(rep.errors, "a.test: key \"a.test.key\" does not match certificate \"a.test.crt\", "
                                    "keeping the previous pair\n");
        ASSERT_STREQ(tls_credentials_names(b)[0], "a.test");
        ASSERT_STREQ(tls_credentials_names(b)[1], "b.test");
        tls_load_report_done(&rep);

        /* The kept pair is the old one (serial 11), served from the new set after the old set is gone. */
        a = tls_credentials_unref(a);
        ASSERT_OK(session_start(&s, NULL, b, "a.test", NULL, NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_EQ(client_peer_serial(&s.c), 11);
        session_done(&s);

        /* Without a previous set there is nothing to keep. */
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &x, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.failed, 1);
        ASSERT_CONTAINS(rep.errors, "a.test: key \"a.test.key\" does not match certificate \"a.test.crt\"\n");
        ASSERT_EQ(strv_length(tls_credentials_names(x)), 1);
        tls_load_report_done(&rep);
        x = tls_credentials_unref(x);

        rm_rf(other);
        rm_rf(dir);
}

TEST(only_bad_pair_is_enokey) {
        _cleanup_free_ char *dir = make_tmpdir(), *other = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        _cleanup_free_ char *key = NULL;
        size_t key_len;
        TlsLoadReport rep;

        ASSERT_NOT_NULL(dir);
        ASSERT_NOT_NULL(other);
        ASSERT_OK(gen_pair(dir, "a.test", "a.test", 1, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(other, "z.test", "z.test", 2, in_days(30), KEY_SEC1));
        ASSERT_OK(read_dir_file(other, "z.test.key", &key, &key_len));
        ASSERT_OK(write_file(dir, "a.test.key", key, key_len));
        ASSERT_ERROR(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep), ENOKEY);
        ASSERT_NULL(c);
        ASSERT_EQ(rep.failed, 1);
        ASSERT_CONTAINS(rep.errors, "does not match");
        tls_load_report_done(&rep);
        rm_rf(other);
        rm_rf(dir);
}

TEST(truncated_cert_refused) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        _cleanup_free_ char *crt = NULL;
        size_t crt_len;
        TlsLoadReport rep;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "t.test", "t.test", 1, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "ok.test", "ok.test", 2, in_days(30), KEY_SEC1));
        ASSERT_OK(read_dir_file(dir, "t.test.crt", &crt, &crt_len));

        /* Cut in the middle of the leaf. */
        ASSERT_OK(write_file(dir, "t.test.crt", crt, crt_len / 4));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.failed, 1);
        ASSERT_CONTAINS(rep.errors, "t.test: ");
        ASSERT_EQ(strv_length(tls_credentials_names(c)), 1);
        ASSERT_STREQ(tls_credentials_names(c)[0], "ok.test");
        tls_load_report_done(&rep);
        c = tls_credentials_unref(c);

        /* Cut in the middle of the second certificate of the chain: the leaf alone must not pass. */
        const char *second = strstr(crt + 1, "-----BEGIN CERTIFICATE-----");
        ASSERT_NOT_NULL(second);
        ASSERT_OK(write_file(dir, "t.test.crt", crt, (size_t) (second - crt) + 100));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.failed, 1);
        ASSERT_CONTAINS(rep.errors, "t.test: ");
        tls_load_report_done(&rep);
        c = tls_credentials_unref(c);

        /* Empty certificate file. */
        ASSERT_OK(write_file(dir, "t.test.crt", "", 0));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.failed, 1);
        ASSERT_CONTAINS(rep.errors, "t.test: ");
        tls_load_report_done(&rep);
        rm_rf(dir);
}

TEST(garbage_refused) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        static const uint8_t junk[] = { 0x30, 0x82, 0xff, 0x00, 0x13, 0x37, 'n', 'o', 't', ' ', 'P', 'E', 'M' };
        TlsLoadReport rep;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "ok.test", "ok.test", 1, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "g1.test", "g1.test", 2, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "g2.test", "g2.test", 3, in_days(30), KEY_SEC1));
        ASSERT_OK(write_file(dir, "g1.test.crt", junk, sizeof junk));
#define BAD_KEY "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
        ASSERT_OK(write_file(dir, "g2.test.key", BAD_KEY, STRLEN(BAD_KEY)));
        /* A key without its certificate. */
        ASSERT_OK(write_file(dir, "lonely.test.key", "x", 1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.failed, 3);
        ASSERT_CONTAINS(rep.errors, "g1.test: cannot parse certificate \"g1.test.crt\": ");
        ASSERT_CONTAINS(rep.errors, "g2.test: cannot parse key \"g2.test.key\": ");
        ASSERT_CONTAINS(rep.errors, "lonely.test: cannot read \"lonely.test.crt\": No such file or directory");
        ASSERT_EQ(strv_length(tls_credentials_names(c)), 1);
        tls_load_report_done(&rep);
        rm_rf(dir);
}

TEST(empty_and_missing_dir) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_free_ char *missing = NULL;
        TlsCredentials *c = NULL;
        TlsLoadReport rep;

        ASSERT_NOT_NULL(dir);
        ASSERT_ERROR(tls_credentials_load_dir(dir, NULL, NULL, &c, &rep), ENOKEY);
        ASSERT_NULL(c);
        ASSERT_EQ(rep.loaded + rep.kept + rep.failed, 0);
        ASSERT_NULL(rep.errors);
        tls_load_report_done(&rep);

        ASSERT_TRUE(asprintf(&missing, "%s/nope", dir) > 0);
        ASSERT_ERROR(tls_credentials_load_dir(missing, NULL, NULL, &c, &rep), ENOENT);
        ASSERT_NULL(c);
        tls_load_report_done(&rep);
        rm_rf(dir);
}

/* ---------------------------------------------------------------------------------------------------- */
/* Sessions */

static TlsCredentials *load_names(const char *dir, const char *default_name) {
        TlsCredentials *c = NULL;
        TlsLoadReport rep;
        if (tls_credentials_load_dir(dir, default_name, NULL, &c, &rep) < 0)
                c = NULL;
        if (rep.errors)
                fprintf(stderr, "load report: %s", rep.errors);
        tls_load_report_done(&rep);
        return c;
}

TEST(handshake_alpn_sni_data) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        _cleanup_(buf_done) Buf got = {};
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        /* The client prefers http/1.1, the server's order wins. */
        ASSERT_OK(session_start(&s, NULL, c, "API.test", "http/1.1,h2", NULL));
        ASSERT_FALSE(s.tls->info.secure);
        ASSERT_OK(client_handshake(&s.c, &s.m));
        ASSERT_EQ(s.u.handshakes, 0);
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_EQ(s.u.handshakes, 1);
        ASSERT_TRUE(s.u.secure);
        ASSERT_STREQ(s.u.alpn, "h2");
        ASSERT_STREQ(s.u.sni, "api.test");
        ASSERT_STREQ(s.tls->info.listener, "http");
        ASSERT_EQ(s.tls->info.peer.ss_family, AF_INET);
        ASSERT_STREQ(cn_of(&s), "api.test");

        /* Both ways. */
        snprintf(s.u.reply, sizeof s.u.reply, "pong");
        ASSERT_OK(client_send(&s.c, &s.m, "ping"));
        ASSERT_EQ(buf_len(&s.u.got), 4);
        ASSERT_TRUE(memcmp(buf_data(&s.u.got), "ping", 4) == 0);
        ASSERT_EQ(client_recv(&s.c, &s.m, &got), 4);
        ASSERT_TRUE(memcmp(buf_data(&got), "pong", 4) == 0);

        /* A large write is split into records and arrives whole. */
        size_t big = 100000;
        uint8_t *p = malloc(big);
        ASSERT_NOT_NULL(p);
        for (size_t i = 0; i < big; i++)
                p[i] = (uint8_t) (i * 7);
        buf_clear(&got);
        ASSERT_OK(stream_write(s.tls, p, big));
        ASSERT_EQ(client_recv(&s.c, &s.m, &got), (ssize_t) big);
        ASSERT_TRUE(memcmp(buf_data(&got), p, big) == 0);
        free(p);

        /* Orderly close from above: close_notify, then the lower one is closed with flush. */
        stream_close(s.tls, true);
        ASSERT_TRUE(s.m.closed);
        ASSERT_TRUE(s.m.close_flush);
        ASSERT_FALSE(s.u.closed);
        buf_clear(&got);
        ASSERT_EQ(client_recv(&s.c, &s.m, &got), 0);
        session_done(&s);
        rm_rf(dir);
}

TEST(alpn_variants_and_tls12) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_RSA));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        ASSERT_OK(session_start(&s, NULL, c, "api.test", "http/1.1", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_STREQ(s.u.alpn, "http/1.1");
        session_done(&s);

        ASSERT_OK(session_start(&s, NULL, c, NULL, NULL, NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_STREQ(s.u.alpn, "");
        ASSERT_STREQ(s.u.sni, "");
        ASSERT_STREQ(cn_of(&s), "api.test");
        session_done(&s);

        /* TLS 1.2 takes the certificate by SNI too. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", "NORMAL:-VERS-ALL:+VERS-TLS1.2"));
        ASSERT_OK(session_handshake(&s));
        ASSERT_EQ(gnutls_protocol_get_version(s.c.session), GNUTLS_TLS1_2);
        ASSERT_STREQ(s.u.alpn, "h2");
        ASSERT_OK(client_send(&s.c, &s.m, "hello"));
        ASSERT_EQ(buf_len(&s.u.got), 5);
        session_done(&s);
        rm_rf(dir);
}

TEST(sni_selection) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL, *d = NULL, *e = NULL, *f = NULL;
        static const struct {
                const char *sni, *cn;
        } cases[] = {
                { "a.test", "a.test" },
                { "b.test", "b.test" },
                { "B.Test", "b.test" },
                { "x.w.test", "*.w.test" },
                { "w.test", "a.test" },         /* the wildcard is one label below only */
                { "y.x.w.test", "a.test" },
                { "unknown.test", "a.test" },   /* the default */
                { NULL, "a.test" },
        };
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "a.test", "a.test", 1, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "b.test", "b.test", 2, in_days(30), KEY_SEC1));
        ASSERT_OK(gen_pair(dir, "*.w.test", "*.w.test", 3, in_days(30), KEY_SEC1));
        c = load_names(dir, "A.test");
        ASSERT_NOT_NULL(c);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ASSERT_OK(session_start(&s, NULL, c, cases[i].sni, "h2", NULL));
                ASSERT_OK(session_handshake(&s));
                if (!cn_of(&s) || !streq(cn_of(&s), cases[i].cn)) {
                        fprintf(stderr, "SNI \"%s\": got \"%s\", want \"%s\"\n", nn(cases[i].sni),
                                nn(cn_of(&s)), cases[i].cn);
                        session_done(&s);
                        TEST_FAIL("wrong certificate");
                }
                session_done(&s);
        }

        /* Without a default name, the first in lexical order ('*' sorts before letters). */
        f = load_names(dir, NULL);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(session_start(&s, NULL, f, NULL, "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_STREQ(cn_of(&s), "*.w.test");
        session_done(&s);

        /* Another default name. */
        d = load_names(dir, "b.test");
        ASSERT_NOT_NULL(d);
        ASSERT_OK(session_start(&s, NULL, d, NULL, "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_STREQ(cn_of(&s), "b.test");
        session_done(&s);

        /* A default name that names no pair is reported, and the first pair serves. */
        TlsLoadReport rep;
        ASSERT_OK(tls_credentials_load_dir(dir, "nope.test", NULL, &e, &rep));
        ASSERT_CONTAINS(rep.errors, "nope.test: no such pair for the default name, using \"*.w.test\" instead");
        tls_load_report_done(&rep);
        ASSERT_OK(session_start(&s, NULL, e, "unknown.test", "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_STREQ(cn_of(&s), "*.w.test");
        session_done(&s);
        rm_rf(dir);
}

TEST(data_with_final_flight) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        /* Finished and the first request in one chunk: the upper attached in the callback gets it. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_OK(client_handshake(&s.c, &s.m));
        ASSERT_OK(client_send(&s.c, NULL, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_EQ(s.u.handshakes, 1);
        ASSERT_EQ(buf_len(&s.u.got), 24);
        session_done(&s);

        /* No upper attached by the callback: held, and delivered once one attaches and asks. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        s.u.attach = false;
        ASSERT_OK(client_handshake(&s.c, &s.m));
        ASSERT_OK(client_send(&s.c, NULL, "early"));
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_OK(client_send(&s.c, &s.m, "+more"));
        ASSERT_EQ(s.u.handshakes, 1);
        ASSERT_EQ(buf_len(&s.u.got), 0);
        stream_attach(s.tls, &upper_ops, &s.u);
        stream_set_read_paused(s.tls, false);
        ASSERT_EQ(buf_len(&s.u.got), 10);
        ASSERT_TRUE(memcmp(buf_data(&s.u.got), "early+more", 10) == 0);
        session_done(&s);
        rm_rf(dir);
}

/* What the daemon does: the HTTP layer attaches right away, before the handshake, and reads info on its
 * first on_read. */
static ssize_t early_on_read(void *userdata, const uint8_t *p, size_t n) {
        Upper *u = userdata;
        if (u->handshakes == 0) {
                u->secure = u->s->info.secure;
                snprintf(u->alpn, sizeof u->alpn, "%s", u->s->info.alpn);
        }
        u->handshakes++;
        return upper_on_read(userdata, p, n);
}

static const StreamUpper early_ops = {
        .on_read = early_on_read,
        .on_writable = upper_on_writable,
        .on_close = upper_on_close,
};

TEST(upper_attached_before_handshake) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        tls_stream_set_handshake_callback(s.tls, NULL, NULL);
        s.u.s = s.tls;
        stream_attach(s.tls, &early_ops, &s.u);
        ASSERT_OK(client_handshake(&s.c, &s.m));
        ASSERT_OK(client_send(&s.c, NULL, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        ASSERT_EQ(buf_len(&s.u.got), 0);
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_EQ(buf_len(&s.u.got), 24);
        ASSERT_TRUE(s.u.secure);
        ASSERT_STREQ(s.u.alpn, "h2");
        session_done(&s);

        /* A failed handshake tells the attached upper, so it can free itself. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        s.u.s = s.tls;
        stream_attach(s.tls, &early_ops, &s.u);
        ASSERT_OK(memstream_feed(&s.m, "\x15\x03\x03\x00\x02\x02\x28", 7));    /* a fatal alert */
        ASSERT_TRUE(s.m.closed);
        ASSERT_TRUE(s.u.closed);
        ASSERT_TRUE(s.u.close_error < 0);
        ASSERT_EQ(buf_len(&s.u.got), 0);
        session_done(&s);

        /* So does the peer leaving before the handshake is done. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        s.u.s = s.tls;
        stream_attach(s.tls, &early_ops, &s.u);
        memstream_hangup(&s.m, -ECONNRESET);
        ASSERT_TRUE(s.u.closed);
        ASSERT_EQ(s.u.close_error, -ECONNRESET);
        session_done(&s);
        rm_rf(dir);
}

TEST(backpressure) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        ASSERT_OK(session_start(&s, e, c, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&s));

        /* Input: the upper pauses after each read; the pause reaches the lower stream, and records that
         * arrived in the same chunk wait until the upper resumes. */
        s.u.pause_after_read = true;
        ASSERT_OK(client_send(&s.c, NULL, "one"));
        ASSERT_OK(client_send(&s.c, NULL, "two"));
        ASSERT_OK(client_send(&s.c, NULL, "three"));
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_TRUE(s.m.read_paused);
        ASSERT_EQ(buf_len(&s.u.got), 3);

        s.u.pause_after_read = false;
        stream_set_read_paused(s.tls, false);
        ASSERT_FALSE(s.m.read_paused);
        ASSERT_EQ(buf_len(&s.u.got), 3);        /* from the loop, not from inside the upper's call */
        ASSERT_OK(sd_event_run(e, 0));
        ASSERT_OK(memstream_pump(&s.m));        /* what the lower does on unpause */
        ASSERT_EQ(buf_len(&s.u.got), 11);
        ASSERT_TRUE(memcmp(buf_data(&s.u.got), "onetwothree", 11) == 0);

        /* An upper that takes only part of what is offered gets the rest again. */
        s.u.take_max = 2;
        ASSERT_OK(client_send(&s.c, &s.m, "abcdef"));
        ASSERT_EQ(buf_len(&s.u.got), 17);
        s.u.take_max = 0;

        /* Output: pending() shows what the lower still holds; on_writable comes once it is drained. */
        s.m.hold_output = true;
        ASSERT_EQ(stream_pending(s.tls), 0);
        ASSERT_OK(stream_write(s.tls, "data", 4));
        ASSERT_TRUE(stream_pending(s.tls) > 4);
        stream_want_writable(s.tls);
        ASSERT_TRUE(s.m.want_writable);
        ASSERT_EQ(s.u.writable, 0);
        memstream_drain(&s.m);
        ASSERT_EQ(s.u.writable, 1);
        ASSERT_EQ(stream_pending(s.tls), 0);

        /* The lower ends: the upper hears it, and the TLS stream is gone (valgrind/ASan check the rest). */
        memstream_hangup(&s.m, -ECONNRESET);
        ASSERT_TRUE(s.u.closed);
        ASSERT_EQ(s.u.close_error, -ECONNRESET);
        session_done(&s);
        rm_rf(dir);
}

TEST(peer_close_notify) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_OK(client_send(&s.c, NULL, "last words"));
        ASSERT_EQ(gnutls_bye(s.c.session, GNUTLS_SHUT_WR), 0);
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_EQ(buf_len(&s.u.got), 10);
        ASSERT_TRUE(s.u.closed);
        ASSERT_EQ(s.u.close_error, 0);
        ASSERT_TRUE(s.m.closed);
        session_done(&s);
        rm_rf(dir);
}

TEST(session_failures) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        /* Plain HTTP on the TLS port: the lower one is closed, no callback ever runs. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_OK(memstream_feed(&s.m, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27));
        ASSERT_TRUE(s.m.closed);
        ASSERT_EQ(s.u.handshakes, 0);
        session_done(&s);

        /* A handshake cut short by the peer. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_EQ(gnutls_handshake(s.c.session), GNUTLS_E_AGAIN);
        ASSERT_OK(memstream_feed(&s.m, buf_data(&s.c.out), 40));
        ASSERT_FALSE(s.m.closed);
        memstream_hangup(&s.m, 0);
        ASSERT_EQ(s.u.handshakes, 0);
        session_done(&s);

        /* The upper kills the stream: it hears on_close with its error, the lower one is closed. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        s.u.fail_with = EBADMSG;
        ASSERT_OK(client_send(&s.c, &s.m, "bad request"));
        ASSERT_TRUE(s.u.closed);
        ASSERT_EQ(s.u.close_error, -EBADMSG);
        ASSERT_TRUE(s.m.closed);
        session_done(&s);

        /* A corrupted record after the handshake. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&s));
        ASSERT_OK(client_send(&s.c, NULL, "payload"));
        ASSERT_TRUE(buf_len(&s.c.out) > 10);
        s.c.out.data[s.c.out.tail - 3] ^= 0x55;
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_TRUE(s.u.closed);
        ASSERT_TRUE(s.u.close_error < 0);
        ASSERT_TRUE(s.m.closed);
        ASSERT_EQ(buf_len(&s.u.got), 0);
        session_done(&s);

        /* Plaintext nobody takes is bounded. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        s.u.attach = false;
        ASSERT_OK(session_handshake(&s));
        char chunk[16384];
        memset(chunk, 'x', sizeof chunk - 1);
        chunk[sizeof chunk - 1] = 0;
        for (unsigned i = 0; i < 80 && !s.m.closed; i++)
                ASSERT_OK(client_send(&s.c, &s.m, chunk));
        ASSERT_TRUE(s.m.closed);
        session_done(&s);
        rm_rf(dir);
}

TEST(close_from_handshake_callback) {
        _cleanup_free_ char *dir = make_tmpdir();
        _cleanup_(tls_credentials_unrefp) TlsCredentials *c = NULL;
        Session s;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 1, in_days(30), KEY_SEC1));
        c = load_names(dir, NULL);
        ASSERT_NOT_NULL(c);

        /* E.g. an ALPN the server does not serve: the callback closes at once, data or not. */
        ASSERT_OK(session_start(&s, NULL, c, "api.test", "h2", NULL));
        s.u.attach = false;
        tls_stream_set_handshake_callback(s.tls, close_on_handshake, NULL);
        ASSERT_OK(client_handshake(&s.c, &s.m));
        ASSERT_OK(client_send(&s.c, NULL, "data"));
        ASSERT_OK(client_flush(&s.c, &s.m));
        ASSERT_TRUE(s.m.closed);
        ASSERT_FALSE(s.m.close_flush);
        session_done(&s);
        rm_rf(dir);
}

TEST(credentials_swap_keeps_live_sessions) {
        _cleanup_free_ char *dir = make_tmpdir();
        TlsCredentials *current = NULL, *next = NULL;
        _cleanup_(buf_done) Buf got = {};
        TlsLoadReport rep;
        Session old, fresh;

        ASSERT_NOT_NULL(dir);
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 100, in_days(30), KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, NULL, &current, &rep));
        tls_load_report_done(&rep);

        ASSERT_OK(session_start(&old, NULL, current, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&old));
        ASSERT_EQ(client_peer_serial(&old.c), 100);

        /* Renewal: new files, a new set, and the manager drops its reference to the old one. */
        ASSERT_OK(gen_pair(dir, "api.test", "api.test", 200, in_days(90), KEY_SEC1));
        ASSERT_OK(tls_credentials_load_dir(dir, NULL, current, &next, &rep));
        ASSERT_EQ(rep.loaded, 1);
        ASSERT_EQ(rep.kept, 0);
        tls_load_report_done(&rep);
        tls_credentials_unref(current);
        current = next;

        /* The live session is undisturbed, both ways. */
        snprintf(old.u.reply, sizeof old.u.reply, "still here");
        ASSERT_OK(client_send(&old.c, &old.m, "hello?"));
        ASSERT_EQ(buf_len(&old.u.got), 6);
        ASSERT_EQ(client_recv(&old.c, &old.m, &got), 10);

        /* A new handshake sees the new certificate. */
        ASSERT_OK(session_start(&fresh, NULL, current, "api.test", "h2", NULL));
        ASSERT_OK(session_handshake(&fresh));
        ASSERT_EQ(client_peer_serial(&fresh.c), 200);
        session_done(&fresh);

        /* The old session, and with it the last reference to the old set, goes last. */
        stream_close(old.tls, true);
        session_done(&old);
        tls_credentials_unref(current);
        rm_rf(dir);
}

static void free_ca(void) {
        if (ca_crt)
                gnutls_x509_crt_deinit(ca_crt);
        if (ca_key)
                gnutls_x509_privkey_deinit(ca_key);
}

__attribute__((destructor)) static void test_tls_cleanup(void) {
        free_ca();
}
