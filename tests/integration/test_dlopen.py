"""libcurl and GnuTLS are loaded on first need: a plain-HTTP gate maps neither; a broken library fails only its users."""
import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile

from gatetest import Gate, curl, finish, free_port, test
from mocktest import Mock

CURL_LIB = "/libcurl-gnutls.so"
GNUTLS_LIB = "/libgnutls.so"


def mapped(pid):
    """The shared objects mapped into pid, by path."""
    with open("/proc/%d/maps" % pid) as f:
        return {line.split()[-1] for line in f if len(line.split()) >= 6}


def has(pid, lib):
    return any(lib in path for path in mapped(pid))


def post(g, model):
    """Returns (status, headers, body text) of a small chat completion."""
    rc, out, err = curl("-i", "-H", "content-type: application/json",
                        "-d", json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                        g.url("/v1/chat/completions"))
    assert rc == 0, err
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def provider(name, base_url, models, priority=0):
    return ("\n[provider.%s]\ntype = openai-compatible\nbase_url = %s\nmodels = %s\napi_key = sk-test\n"
            "priority = %d\nconnect_timeout = 2s\n" % (name, base_url, models, priority))


def reload(g, config):
    g.write_config(config)
    n = len(g.notify.messages)
    g.signal(signal.SIGHUP)
    i = g.notify.wait_for("READY=1", after=n)
    assert "Reload failed" not in g.notify.messages[i], g.notify.messages[i]


def broken_lib_dir(soname):
    """A directory holding a file named soname that is no ELF object: dlopen() finds it first through
    LD_LIBRARY_PATH and fails, as it would on a damaged installation."""
    d = tempfile.mkdtemp(prefix="gate-brokenlib-")
    atexit.register(shutil.rmtree, d, True)
    with open(os.path.join(d, soname), "wb") as f:
        f.write(b"this is not a shared object\n" * 64)
    return d


def self_signed(certdir, name):
    os.makedirs(certdir, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(certdir, name + ".key"), "-out", os.path.join(certdir, name + ".crt"),
                    "-days", "1", "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True)


@test
def plain_http_gate_maps_neither_until_curl_is_needed():
    mock = Mock().start()
    try:
        conf = "[proxy]\nbuiltin_client = %s\n" + provider("local", mock.base_url + "/v1", "mock-*")
        g = Gate(config=conf % "true")
        with g:
            g.start()
            pid = g.proc.pid
            assert not has(pid, CURL_LIB) and not has(pid, GNUTLS_LIB), sorted(mapped(pid))
            # Served by gate's own HTTP/1.1 client: still neither library.
            for _ in range(3):
                status, headers, body = post(g, "mock-1")
                assert status == 200 and headers["x-gate-provider"] == "local", (status, body)
            assert not has(pid, CURL_LIB) and not has(pid, GNUTLS_LIB), sorted(mapped(pid))
            # A reload that sends upstreams through libcurl does not load it yet ...
            reload(g, "[server]\nbind = 127.0.0.1:%d\n" % g.port + conf % "false")
            assert not has(pid, CURL_LIB), sorted(mapped(pid))
            # ... the first request that needs it does (and GnuTLS with it: libcurl-gnutls links it).
            status, headers, body = post(g, "mock-1")
            assert status == 200 and headers["x-gate-provider"] == "local", (status, body)
            assert has(pid, CURL_LIB) and has(pid, GNUTLS_LIB), sorted(mapped(pid))
            assert "Loaded libcurl-gnutls.so.4." in g.log(), g.log()[-2000:]
            status, _, body = post(g, "mock-2")
            assert status == 200, (status, body)
            assert g.log().count("Loaded libcurl-gnutls.so.4.") == 1
            assert "cannot be loaded" not in g.log()
    finally:
        mock.stop()


@test
def broken_libcurl_fails_only_the_upstreams_that_need_it():
    mock = Mock().start()
    try:
        # "remote" has a host name, so it needs libcurl; "local" is on an IP literal (gate's own client).
        # For shared-* the remote comes first (priority 0) and the local one is the failover.
        conf = ("[proxy]\nbuiltin_client = true\n" +
                provider("remote", "http://upstream.invalid/v1", "remote-*, shared-*", 0) +
                provider("local", mock.base_url + "/v1", "mock-*, shared-*", 1))
        g = Gate(config=conf, env={"LD_LIBRARY_PATH": broken_lib_dir("libcurl-gnutls.so.4")})
        with g:
            g.start()
            status, _, body = post(g, "remote-1")
            assert status == 502, (status, body)
            message = json.loads(body)["error"]["message"]
            assert "remote" in message and "libcurl-gnutls.so.4 cannot be loaded" in message, message
            assert "HTTPS and host-name upstreams are unavailable" in message, message
            # The daemon serves the rest: the plain-HTTP provider, and the failover from the broken one.
            status, headers, body = post(g, "mock-1")
            assert status == 200 and headers["x-gate-provider"] == "local", (status, body)
            status, headers, body = post(g, "shared-1")
            assert status == 200 and headers["x-gate-provider"] == "local", (status, body)
            # The failure is kept (same answer, no second load attempt) and logged once, as an error.
            status, _, body = post(g, "remote-2")
            assert status == 502 and "libcurl-gnutls.so.4 cannot be loaded" in body, (status, body)
            log = g.log()
            lines = [line for line in log.splitlines() if "libcurl-gnutls.so.4 cannot be loaded" in line
                     and "Upstream remote failed" not in line]
            assert len(lines) == 1 and lines[0].startswith("<3>"), lines
            # Each request it failed (remote-1, shared-1's first try, remote-2) is an upstream failure that
            # says why: a warning, then, within 5 s for the same provider, at debug level only.
            failed = [line for line in log.splitlines() if "Upstream remote failed" in line]
            assert len(failed) == 3 and failed[0].startswith("<4>"), failed
            assert all(line.startswith("<7>") and "cannot be loaded" in line for line in failed[1:]), failed
            assert g.proc.poll() is None
            assert not has(g.proc.pid, CURL_LIB)
    finally:
        mock.stop()


@test
def tls_listener_loads_gnutls_at_start_and_certificates_on_reload():
    tls_port = free_port()
    g = Gate(config="[tls]\nbind = 127.0.0.1:%d\n" % tls_port)
    with g:
        g.start()
        pid = g.proc.pid
        # No certificates yet: HTTPS is off, but GnuTLS is loaded (config apply time); libcurl is not.
        assert has(pid, GNUTLS_LIB) and not has(pid, CURL_LIB), sorted(mapped(pid))
        rc, _, _ = curl("-k", "https://127.0.0.1:%d/health" % tls_port, timeout=3)
        assert rc != 0
        self_signed(os.path.join(g.state, "certs"), "a.test")
        n = len(g.notify.messages)
        g.signal(signal.SIGHUP)
        g.notify.wait_for("READY=1", after=n)
        rc, out, err = curl("-k", "-i", "https://127.0.0.1:%d/health" % tls_port)
        assert rc == 0 and " 200" in out.split("\n")[0], (rc, out, err)
        assert not has(pid, CURL_LIB), sorted(mapped(pid))


@test
def broken_gnutls_refuses_a_tls_listener_and_nothing_else():
    broken = broken_lib_dir("libgnutls.so.30")
    g = Gate(config="[tls]\nbind = 127.0.0.1:%d\n" % free_port(), env={"LD_LIBRARY_PATH": broken})
    with g:
        g.start(wait_ready=False)
        rc = g.wait()
        assert rc != 0, rc
        log = g.log()
        assert "Refusing to start with a TLS listener: libgnutls.so.30 cannot be loaded" in log, log[-2000:]
        assert "the TLS listener is unavailable" in log, log[-2000:]
    # Without a TLS listener the same broken library is never touched: gate starts and serves.
    with Gate(env={"LD_LIBRARY_PATH": broken}) as g:
        g.start()
        rc, out, err = curl(g.url("/health"))
        assert rc == 0, err
        assert not has(g.proc.pid, GNUTLS_LIB)


finish()
