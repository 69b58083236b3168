/* libFuzzer target: arbitrary bytes from the client side into a TLS server stream over a MemStream. */
#include <stdio.h>
#include <stdlib.h>

#include "net/tls.h"
#include "shared/macro.h"
#include "tests/memstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A throwaway self-signed ECDSA P-256 pair for "fuzz.test" (certtool, 100 years), test use only. */
static const char fuzz_key[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIAJXDDTHhl6G1C0mRXy4f3gM9jdmTWWZhCNZE6klCTOeoAoGCCqGSM49\n"
        "AwEHoUQDQgAEAa81T30w4jBqNmgto5hP+rGmNYPSdAsGhFbxoJxwgdns1kQUrpRV\n"
        "/uQXewKF/vbRBSYPBBe1dpAsvAGyjEqslA==\n"
        "-----END EC PRIVATE KEY-----\n";

static const char fuzz_crt[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBgjCCASmgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDEwlmdXp6LnRl\n"
        "c3QwIBcNMjYxMTI3MDkwOTM1WhgPMjEyNjExMDMwOTA5MzVaMBQxEjAQBgNVBAMT\n"
        "CWZ1enoudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABAGvNU99MOIwajZo\n"
        "LaOYT/qxpjWD0nQLBoRW8aCccIHZ7NZEFK6UVf7kF3sChf720QUmDwQXtXaQLLwB\n"
        "soxKrJSjajBoMAwGA1UdEwEB/wQCMAAwFAYDVR0RBA0wC4IJZnV6ei50ZXN0MBMG\n"
        "A1UdJQQMMAoGCCsGAQUFBwMBMA4GA1UdDwEB/wQEAwIHgDAdBgNVHQ4EFgQU4s3M\n"
        "wwHUKs96d3BtrgqZ/sTyGbYwCgYIKoZIzj0EAwIDRwAwRAIgLuQCHWqnPGcGEsGR\n"
        "XLya3lpm+Z9isSKMBpvXX+bfJXcCIGl1OtPDs4UPMBTBhzOG9AS2B0rwZoYUlKEs\n"
        "+3QGGFK1\n"
        "-----END CERTIFICATE-----\n";

static int write_file(const char *dir, const char *name, const char *s) {
        char path[4096];
        FILE *f;
        int r = 0;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        if (fputs(s, f) < 0)
                r = -EIO;
        if (fclose(f) != 0 && r == 0)
                r = -errno;
        return r;
}

/* The credentials are loaded once, through the same code the daemon uses, from a scratch directory. */
static TlsCredentials *fuzz_credentials(void) {
        char dir[] = "/tmp/fuzz-tls-XXXXXX";
        char p[sizeof dir + 32];
        TlsCredentials *c = NULL;
        TlsLoadReport rep;
        int r;

        if (!mkdtemp(dir))
                abort();
        r = write_file(dir, "fuzz.test.crt", fuzz_crt);
        if (r >= 0)
                r = write_file(dir, "fuzz.test.key", fuzz_key);
        if (r >= 0)
                r = tls_credentials_load_dir(dir, NULL, NULL, &c, &rep);
        if (r < 0 || rep.loaded != 1) {
                fprintf(stderr, "fuzz-tls: cannot load the test credentials: %s\n%s", strerror(-r),
                        rep.errors ?: "");
                abort();
        }
        tls_load_report_done(&rep);
        snprintf(p, sizeof p, "%s/fuzz.test.crt", dir);
        (void) unlink(p);
        snprintf(p, sizeof p, "%s/fuzz.test.key", dir);
        (void) unlink(p);
        (void) rmdir(dir);
        return c;
}

typedef struct FuzzUpper {
        Stream *s;
        size_t got;
} FuzzUpper;

static ssize_t fuzz_on_read(void *userdata, const uint8_t *p, size_t n) {
        FuzzUpper *u = userdata;
        u->got += n;
        /* Echo a little, so output after the handshake is exercised as well. */
        (void) stream_write(u->s, p, MIN(n, (size_t) 64));
        return (ssize_t) n;
}

static void fuzz_on_writable(void *userdata) {
}

static void fuzz_on_close(void *userdata, int error) {
}

static const StreamUpper fuzz_upper = {
        .on_read = fuzz_on_read,
        .on_writable = fuzz_on_writable,
        .on_close = fuzz_on_close,
};

static void fuzz_on_handshake(Stream *tls, void *userdata) {
        FuzzUpper *u = userdata;
        u->s = tls;
        stream_attach(tls, &fuzz_upper, u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static TlsCredentials *creds = NULL;
        FuzzUpper u = {};
        MemStream m;
        Stream *tls;

        if (!creds)
                creds = fuzz_credentials();

        memstream_init(&m, NULL);
        if (tls_stream_new(&m.stream, creds, &tls) < 0)
                abort();
        tls_stream_set_handshake_callback(tls, fuzz_on_handshake, &u);

        /* In two pieces, so that records and handshake messages split across reads are covered too. */
        size_t half = size / 2;
        (void) memstream_feed(&m, data, half);
        (void) memstream_feed(&m, data + half, size - half);

        /* Whatever state it reached, the peer going away must free it. */
        memstream_hangup(&m, 0);
        memstream_done(&m);
        return 0;
}
