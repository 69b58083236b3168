"""TLS on the https listener: ALPN h2/http1.1, SNI pairs from the cert dir, hot swap on SIGHUP, bad pairs."""
import os
import shutil
import signal
import socket
import ssl

from gatetest import CertAuthority, Gate, curl, finish, free_port, test

CA = CertAuthority()


def install(certdir, name, pair):
    os.makedirs(certdir, exist_ok=True)
    for src, suffix in zip(pair, (".crt", ".key")):
        tmp = os.path.join(certdir, "." + name + suffix)
        shutil.copy(src, tmp)
        os.rename(tmp, os.path.join(certdir, name + suffix))


def peer_org(port, name, sock=None):
    ctx = ssl.create_default_context(cafile=CA.crt)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=name)
    cert = s.getpeercert()
    s.close()
    subject = dict(x[0] for x in cert["subject"])
    return subject["organizationName"]


A1 = CA.issue("a.test", "first")
A2 = CA.issue("a.test", "second")
B1 = CA.issue("b.test", "bee")

tls_port = free_port()
g = Gate(config="[tls]\nbind = 127.0.0.1:%d\ndefault_name = a.test\n" % tls_port)
certdir = os.path.join(g.state, "certs")
install(certdir, "a.test", A1)
install(certdir, "b.test", B1)
g.start()
CACERT = CA.crt


def https(name, *args):
    return curl("--cacert", CACERT, "--resolve", "%s:%d:127.0.0.1" % (name, tls_port), "-i", *args,
                "https://%s:%d/health" % (name, tls_port))


@test
def h2_over_tls_by_alpn():
    rc, out, err = https("a.test", "--http2")
    assert rc == 0, err
    assert out.startswith("HTTP/2 200"), out


@test
def http11_over_tls():
    rc, out, err = https("a.test", "--http1.1")
    assert rc == 0, err
    assert out.startswith("HTTP/1.1 200"), out


@test
def sni_picks_the_pair():
    assert peer_org(tls_port, "a.test") == "first"
    assert peer_org(tls_port, "b.test") == "bee"


@test
def plain_http_still_served():
    rc, out, _ = curl("-i", g.url("/health"))
    assert out.startswith("HTTP/1.1 200"), out


@test
def swap_on_sighup_keeps_live_session():
    ctx = ssl.create_default_context(cafile=CACERT)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port)), server_hostname="a.test")
    s.sendall(b"GET /health HTTP/1.1\r\nHost: a.test\r\n\r\n")
    first = s.recv(65536)
    assert b"200 OK" in first, first
    install(certdir, "a.test", A2)
    n = len(g.notify.messages)
    g.signal(signal.SIGHUP)
    g.notify.wait_for("READY=1", after=n)
    # The old session goes on with its credentials ...
    s.sendall(b"GET /health HTTP/1.1\r\nHost: a.test\r\n\r\n")
    second = s.recv(65536)
    assert b"200 OK" in second, second
    assert dict(x[0] for x in s.getpeercert()["subject"])["organizationName"] == "first"
    s.close()
    # ... and a new handshake sees the new certificate.
    assert peer_org(tls_port, "a.test") == "second"


@test
def mismatched_pair_is_refused_and_old_kept():
    # b.test's certificate with a.test's key: must be refused, b.test keeps its pair.
    os.makedirs(certdir, exist_ok=True)
    shutil.copy(A1[1], os.path.join(certdir, "b.test.key"))
    n = len(g.notify.messages)
    g.signal(signal.SIGHUP)
    g.notify.wait_for("READY=1", after=n)
    assert peer_org(tls_port, "b.test") == "bee"
    assert "b.test" in g.log()
    install(certdir, "b.test", B1)


@test
def truncated_certificate_is_refused():
    with open(os.path.join(certdir, "a.test.crt"), "r+") as f:
        data = f.read()
        f.seek(0)
        f.truncate()
        f.write(data[: len(data) // 2])
    n = len(g.notify.messages)
    g.signal(signal.SIGHUP)
    g.notify.wait_for("READY=1", after=n)
    assert peer_org(tls_port, "a.test") == "second"
    install(certdir, "a.test", A2)


@test
def no_usable_pair_keeps_http_running():
    port2 = free_port()
    g2 = Gate(config="[tls]\nbind = 127.0.0.1:%d\n" % port2)
    with g2:
        g2.start()
        rc, out, _ = curl("-i", g2.url("/health"))
        assert out.startswith("HTTP/1.1 200"), out
        assert "HTTPS stays off" in g2.log(), g2.log()
        rc, out, err = curl("--cacert", CACERT, "https://127.0.0.1:%d/health" % port2)
        assert rc != 0


g.stop()
CA.remove()
finish()
