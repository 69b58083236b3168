"""gate to an https:// upstream over real TLS: nginx (HTTP/2 over TLS, certificates from a throwaway CA)
in front of the mock upstream. Passthrough, streaming and translation over TLS, and the bad cases: a CA
gate does not trust, a certificate for another name, https:// to a plain-HTTP port, and the TLS server
dying mid-stream; after each, gate must go on serving. Also through an https_proxy from the environment,
honest and in the middle.

gate has no CA option: it trusts the system's CA bundle file. gate runs in a private mount namespace with
a file holding the test CA bound over /etc/ssl/certs/ca-certificates.crt, so the real /etc is never
touched. Debian's libcurl-gnutls (the flavour gate loads) is built with --with-ca-path=/etc/ssl/certs and
no CA bundle file (curl-config --ca is empty), and GnuTLS reads every file of that directory for each new
connection (strace: 289 opens, 27 ms); gate reads the bundle file instead, which
trust_is_the_bundle_file_not_the_loose_certificates checks. gate parses that bundle once and checks each new
connection's certificate chain itself (src/proxy/trust.c), where libcurl would parse it again for every
connection (8 ms): the bad-certificate cases below are what keep that check honest.

nginx is a required peer (tools/install-deps test installs nginx-light): without it this test fails."""
import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from gatetest import CertAuthority, Gate, finish, test, wait_for
from mocktest import Mock, sse_events

NGINX = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
if not NGINX:
    sys.stderr.write("test_upstream_tls needs nginx as its TLS server: install nginx-light "
                     "(tools/install-deps test)\n")
    sys.exit(1)

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
if not os.path.isfile(SYSTEM_BUNDLE):
    sys.stderr.write("test_upstream_tls binds the test CA over %s, which is missing: install "
                     "ca-certificates\n" % SYSTEM_BUNDLE)
    sys.exit(1)

UPSTREAM_KEY = "sk-tls-up"


class Nginx:
    """One nginx, unprivileged config, in the foreground without a master: a TLS (+h2) server per
    (port, crt, key), each proxying to the mock with no buffering, as a provider's edge would."""

    def __init__(self, upstream_port, servers, env=None):
        self.dir = tempfile.mkdtemp(prefix="gate-nginx-")
        self.env = env
        self.servers = servers
        self.ports = [s[0] for s in servers]
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        blocks = ""
        for port, crt, key, *rest in servers:
            h2 = rest[0] if rest else True
            extra = rest[1] if len(rest) > 1 else ""
            blocks += """
    server {
        listen 127.0.0.1:%d ssl%s;
        ssl_certificate %s;
        ssl_certificate_key %s;
        %s
        location / {
            proxy_pass http://127.0.0.1:%d;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
""" % (port, " http2" if h2 else "", crt, key, extra, upstream_port)
        with open(self.conf, "w") as f:
            f.write("""
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 256; }
http {
    log_format gate '$server_port $server_protocol $request_method $request_uri $status $connection';
    access_log %(d)s/access.log gate;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
%(blocks)s}
""" % {"d": self.dir, "blocks": blocks})
        self.proc = None

    def start(self):
        err = open(os.path.join(self.dir, "stderr"), "ab")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf, "-e", self.error_log,
                                      "-g", "daemon off; master_process off;"],
                                     stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                     env=dict(os.environ, **(self.env or {})))
        err.close()
        # Also when the test stops early (an assertion at module level): no nginx left behind.
        atexit.register(self.stop)
        for port in self.ports:
            wait_for("nginx on port %d (%s)" % (port, self.errors()), lambda: self._listening(port))
        return self

    def _listening(self, port):
        if self.proc.poll() is not None:
            raise AssertionError("nginx exited with %d: %s" % (self.proc.returncode, self.errors()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def errors(self):
        out = ""
        for name in ("stderr", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.read()[-2000:]
            except FileNotFoundError:
                pass
        return out

    def access(self):
        """The access log's lines, split: port, protocol, method, uri, status."""
        try:
            with open(self.access_log) as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the certificates: a trusted CA and a rogue one ----

CA = CertAuthority("gate upstream test CA")
ROGUE = CertAuthority("rogue CA")
GOOD = CA.issue("localhost", "good")            # what base_url https://localhost:PORT expects
OTHER = CA.issue("other.test", "other")         # trusted, but for another name
UNTRUSTED = ROGUE.issue("localhost", "rogue")   # the right name, from a CA gate does not trust
EXPIRED = CA.issue("localhost", "expired", days=-1)
FOR_IP = CA.issue("127.0.0.1", "ip", san="IP:127.0.0.1")   # for https://127.0.0.1:PORT
# Stapled OCSP responses (nginx serves a file of them): revoked, good, and a certificate that demands one.
REVOKED = CA.issue("localhost", "revoked")
STAPLED = CA.issue("localhost", "stapled")
MUST_STAPLE = CA.issue("localhost", "muststaple", ext="tlsfeature=status_request\n")


def stapling(response):
    return "ssl_stapling on; ssl_stapling_file %s;" % response


def issue_with_subject(ca, subject_lines, tag, san):
    """A certificate from ca whose subject is written as openssl config lines: unlike -subj, a value there can
    hold a control character ("\\n" is a newline). Returns (crt, key)."""
    base = os.path.join(ca.dir, tag)
    with open(base + ".cnf", "w") as f:
        f.write("[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n%s\n" % subject_lines)
    with open(base + ".ext", "w") as f:
        f.write("subjectAltName=%s\n" % san)
    for args in (["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                  base + ".key", "-out", base + ".csr", "-config", base + ".cnf"],
                 ["x509", "-req", "-in", base + ".csr", "-CA", ca.crt, "-CAkey", ca.key, "-CAcreateserial",
                  "-out", base + ".crt", "-days", "1", "-extfile", base + ".ext"]):
        subprocess.run(["openssl"] + args, capture_output=True, check=True)
    return base + ".crt", base + ".key"


# Trusted, for another name, with a newline in its subject (which gate's log quotes when the name is wrong).
FORGED_LINE = "Upstream tls failed: a forged line"
NEWLINE_DN = issue_with_subject(CA, "CN = evil\\n%s\nO = newline" % FORGED_LINE, "newline-dn", "DNS:other.test")

# Weak certificates: what GnuTLS's own peer check (the one libcurl ran) refused, gate's must refuse; and the
# ordinary kinds it took, gate's must take. libcurl's sessions (priority "NORMAL") verify with GnuTLS's LOW
# profile: keys of 80-bit security at least (RSA 1024 bits) in every certificate of the chain and in the
# trusted CA; signatures with SHA-1 or MD5 GnuTLS refuses in any certificate that is not trusted itself.
# A 512-bit server key cannot sign TLS 1.3's RSA-PSS with SHA-256 (528 bits at least): nginx falls back to
# TLS 1.2 for it, where gate's check is the only thing in its way.
RSA_CA = CertAuthority("gate upstream test RSA CA", key="rsa:2048")         # ECDSA has no MD5
WEAK_CA = CertAuthority("gate upstream test RSA-512 CA", key="rsa:512")
INTER_768 = CertAuthority("RSA-768 intermediate", key="rsa:768", parent=CA)
INTER_1024 = CertAuthority("RSA-1024 intermediate", key="rsa:1024", parent=CA)
INTER_SHA1 = CertAuthority("SHA-1 signed intermediate", parent=CA, md="sha1")
# provider name -> (certificate and key, what gate's log must name; None: gate must take it)
WEAK = {
    "weakrsa768": (CA.issue("localhost", "rsa768", key="rsa:768"), "certificate 1 of the chain "
                   "(CN=localhost,O=rsa768) has a 768-bit RSA key, weaker than GnuTLS's LOW profile allows "
                   "(1024 bits)"),
    "weakrsa512": (CA.issue("localhost", "rsa512", key="rsa:512"), "certificate 1 of the chain "
                   "(CN=localhost,O=rsa512) has a 512-bit RSA key"),
    "weakinter768": (INTER_768.issue("localhost", "inter768"), "certificate 2 of the chain "
                     "(CN=RSA-768 intermediate) has a 768-bit RSA key"),
    "weakca512": (WEAK_CA.issue("localhost", "ca512"), "the trusted CA (CN=gate upstream test RSA-512 CA) has a "
                  "512-bit RSA key"),
    "weaksha1": (CA.issue("localhost", "sha1", md="sha1"), "certificate 1 of the chain (CN=localhost,O=sha1) is "
                 "signed with ECDSA-SHA1, which GnuTLS does not accept in certificates"),
    "weaksha1rsa": (RSA_CA.issue("localhost", "sha1rsa", md="sha1"), "is signed with RSA-SHA1"),
    "weakmd5": (RSA_CA.issue("localhost", "md5", md="md5"), "is signed with RSA-MD5"),
    "weakintersha1": (INTER_SHA1.issue("localhost", "intersha1"), "certificate 2 of the chain "
                      "(CN=SHA-1 signed intermediate) is signed with ECDSA-SHA1"),
    "okrsa1024": (CA.issue("localhost", "rsa1024", key="rsa:1024"), None),
    "okrsa2048": (CA.issue("localhost", "rsa2048", key="rsa:2048"), None),
    "okrsa3072": (CA.issue("localhost", "rsa3072", key="rsa:3072"), None),
    "okrsa4096": (CA.issue("localhost", "rsa4096", key="rsa:4096"), None),
    "okp384": (CA.issue("localhost", "p384", key="ec:P-384", md="sha384"), None),
    "oked25519": (CA.issue("localhost", "ed25519", key="ed25519"), None),
    "okinter1024": (INTER_1024.issue("localhost", "inter1024"), None),
    "okrsaca": (RSA_CA.issue("localhost", "rsaca"), None),
}
# OpenSSL's default security level (2 on Debian) would not let nginx load a short key or a SHA-1 signature.
WEAK_OPENSSL_CONF = os.path.join(CA.dir, "openssl-seclevel0.cnf")
with open(WEAK_OPENSSL_CONF, "w") as f:
    f.write("openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n"
            "[tls]\nCipherString = DEFAULT:@SECLEVEL=0\n")



def distinct_free_ports(n):
    """n free ports, none the same: each is held while the next is picked (free_port() after free_port() may
    give one twice, and two nginx on one port: the second exits, its ports answered by the first)."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


M = Mock(require_key=UPSTREAM_KEY).start()
_ports = distinct_free_ports(12 + len(WEAK))
(GOOD_PORT, OTHER_PORT, ROGUE_PORT, DYING_PORT, BURST_PORT, H1_PORT, EXPIRED_PORT, IP_PORT, NEWLINE_PORT,
 REVOKED_PORT, STAPLED_PORT, MUST_STAPLE_PORT) = _ports[:12]
WEAK_PORTS = dict(zip(WEAK, _ports[12:]))
# BURST_PORT (HTTP/2) and H1_PORT (HTTP/1.1 only) see no other traffic: their connections are counted.
N = Nginx(M.port, [(GOOD_PORT, *GOOD), (OTHER_PORT, *OTHER), (ROGUE_PORT, *UNTRUSTED), (BURST_PORT, *GOOD),
                   (H1_PORT, *GOOD, False), (EXPIRED_PORT, *EXPIRED), (IP_PORT, *FOR_IP),
                   (NEWLINE_PORT, *NEWLINE_DN),
                   (REVOKED_PORT, *REVOKED, True, stapling(CA.ocsp(REVOKED[0], revoked=True))),
                   (STAPLED_PORT, *STAPLED, True, stapling(CA.ocsp(STAPLED[0], revoked=False))),
                   (MUST_STAPLE_PORT, *MUST_STAPLE)]).start()
# A TLS server of its own for the one that gets killed mid-stream.
N2 = Nginx(M.port, [(DYING_PORT, *GOOD)]).start()
N3 = Nginx(M.port, [(WEAK_PORTS[name], *WEAK[name][0]) for name in WEAK],
           env={"OPENSSL_CONF": WEAK_OPENSSL_CONF}).start()

CONFIG = """
[usage]
flush_interval = 100ms
[provider.tls]
type = openai-compatible
base_url = https://localhost:%(good)d/v1
models = gpt-*
api_key = %(key)s
[provider.badca]
type = openai-compatible
base_url = https://localhost:%(rogue)d/v1
models = badca-*
api_key = %(key)s
[provider.badname]
type = openai-compatible
base_url = https://localhost:%(other)d/v1
models = badname-*
api_key = %(key)s
[provider.plain]
type = openai-compatible
base_url = https://localhost:%(mock)d/v1
models = plain-*
api_key = %(key)s
[provider.dying]
type = openai-compatible
base_url = https://localhost:%(dying)d/v1
models = dying-*
api_key = %(key)s
[provider.burst]
type = openai-compatible
base_url = https://localhost:%(burst)d/v1
models = burst-*
api_key = %(key)s
[provider.h1]
type = openai-compatible
base_url = https://localhost:%(h1)d/v1
models = h1-*
api_key = %(key)s
[provider.revoked]
type = openai-compatible
base_url = https://localhost:%(revoked)d/v1
models = revoked-*
api_key = %(key)s
[provider.stapled]
type = openai-compatible
base_url = https://localhost:%(stapled)d/v1
models = stapled-*
api_key = %(key)s
[provider.muststaple]
type = openai-compatible
base_url = https://localhost:%(muststaple)d/v1
models = muststaple-*
api_key = %(key)s
[provider.expired]
type = openai-compatible
base_url = https://localhost:%(expired)d/v1
models = expired-*
api_key = %(key)s
[provider.byip]
type = openai-compatible
base_url = https://127.0.0.1:%(ip)d/v1
models = byip-*
api_key = %(key)s
[provider.ipname]
type = openai-compatible
base_url = https://127.0.0.1:%(good)d/v1
models = ipname-*
api_key = %(key)s
[provider.newline]
type = openai-compatible
base_url = https://localhost:%(newline)d/v1
models = newline-*
api_key = %(key)s
""" % {"revoked": REVOKED_PORT, "stapled": STAPLED_PORT, "muststaple": MUST_STAPLE_PORT,
       "newline": NEWLINE_PORT, "expired": EXPIRED_PORT, "ip": IP_PORT, "burst": BURST_PORT, "h1": H1_PORT, "good": GOOD_PORT, "rogue": ROGUE_PORT, "other": OTHER_PORT, "mock": M.port, "dying": DYING_PORT,
       "key": UPSTREAM_KEY}
for _name in WEAK:
    CONFIG += ("[provider.%s]\ntype = openai-compatible\nbase_url = https://localhost:%d/v1\nmodels = %s-*\n"
               "api_key = %s\n" % (_name, WEAK_PORTS[_name], _name, UPSTREAM_KEY))

# The trust store gate sees: the test CA alone, bound over the system bundle in gate's own mount namespace.
TRUST = tempfile.mkdtemp(prefix="gate-trust-")
BUNDLE = os.path.join(TRUST, "ca-certificates.crt")
with open(BUNDLE, "w") as _out:
    for _ca in (CA, RSA_CA, WEAK_CA):
        with open(_ca.crt) as _f:
            _out.write(_f.read())


def bound_over(source, target=SYSTEM_BUNDLE):
    """A wrapper that runs gate in a mount namespace of its own with source bound over target. Not root: a
    user namespace of its own makes the mount namespace (and the bind mount) allowed."""
    return (["unshare"] + (["--map-root-user"] if os.geteuid() != 0 else []) +
            ["--mount", "--propagation", "private", "sh", "-ec", 'mount --bind "$0" "$1"; shift; exec "$@"',
             source, target])


IN_NAMESPACE = bound_over(BUNDLE)

g = Gate(config=CONFIG, wrapper=IN_NAMESPACE).start()


def request(method, path, body=None, headers=None, port=None):
    """One request to gate over HTTP/1.1; returns (status, headers with lowercase names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port or g.port, timeout=20)
    hdrs = {"content-type": "application/json"}
    hdrs.update(headers or {})
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    h = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, h, data


def chat(model, stream=False, port=None, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "hello over tls"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    body.update(extra)
    return request("POST", "/v1/chat/completions", body, port=port)


def usage_row(model, timeout=5.0):
    """The one usage row for this (unique) client model, once it is written."""
    db = os.path.join(g.state, "gate.db")

    def find():
        if not os.path.exists(db):
            return None
        p = subprocess.run(["sqlite3", "-json", db, "SELECT * FROM usage WHERE model_requested = '%s'" % model],
                           capture_output=True)
        out = p.stdout.decode().strip()
        return json.loads(out) if out else None
    rows = wait_for("the usage row of %s" % model, find, timeout)
    assert len(rows) == 1, rows
    return rows[0]


def mock_requests(model):
    return [r for r in M.requests() if r.get("model") == model]


def nginx_saw(server, port, uri, status):
    """Waits for the access-log line of that request (written as the request ends): its protocol."""
    line = wait_for("nginx's log of %s %s" % (uri, status),
                    lambda: next((x for x in reversed(server.access())
                                  if x[0] == str(port) and x[3] == uri and x[4] == str(status)), None))
    return line[1]


def text_of(n):
    return "".join(("tok%d" if i == 0 else " tok%d") % i for i in range(n))


def assert_still_serving(tag):
    model = "gpt-after-" + tag
    status, h, data = chat(model)
    assert status == 200, (status, data)
    assert json.loads(data)["choices"][0]["message"]["content"] == text_of(5), data


def assert_upstream_error(status, h, data, provider):
    """gate's own error for a provider that cannot be reached: 502, OpenAI format, code upstream_error."""
    assert status == 502, (status, h, data)
    assert h.get("content-type", "").startswith("application/json"), h
    err = json.loads(data)["error"]
    assert err["code"] == "upstream_error" and err["type"], err
    assert "Upstream provider %s " % provider in err["message"], err
    return err


def upstream_errors(provider, kind):
    """gate_upstream_errors_total for that provider and kind, from gate's /metrics."""
    status, _, data = request("GET", "/metrics")
    assert status == 200, (status, data)
    want = 'gate_upstream_errors_total{provider="%s",kind="%s"} ' % (provider, kind)
    for line in data.decode().splitlines():
        if line.startswith(want):
            return float(line[len(want):])
    return 0.0


def gate_log_for(h):
    """gate's debug lines about this request (by its x-request-id)."""
    rid = h.get("x-request-id")
    assert rid, h
    return [line for line in g.log().splitlines() if rid in line]


# ---- over TLS, the good paths ----

@test
def trust_comes_from_the_bound_bundle():
    # Without the bind mount, gate (libcurl) must refuse the test CA: the namespace is what makes it work,
    # and certificates are checked at all.
    with Gate(config=CONFIG) as plain:
        plain.start()
        status, h, data = chat("gpt-no-namespace", port=plain.port)
        assert_upstream_error(status, h, data, "tls")
    assert not mock_requests("gpt-no-namespace")


@test
def chat_completion_passthrough_over_https():
    model = "gpt-plain"
    body = {"model": model, "messages": [{"role": "user", "content": "hello over tls"}]}
    status, h, data = request("POST", "/v1/chat/completions", body)
    assert status == 200, (status, data)
    assert h.get("content-type", "").startswith("application/json"), h
    assert h.get("x-gate-provider") == "tls", h
    # The upstream got the client's body unchanged, with the provider's key, through nginx over HTTP/2.
    reqs = mock_requests(model)
    assert len(reqs) == 1, reqs
    assert reqs[0]["body"] == json.dumps(body), reqs[0]["body"]
    assert reqs[0]["headers"]["authorization"] == "Bearer " + UPSTREAM_KEY, reqs[0]["headers"]
    proto = nginx_saw(N, GOOD_PORT, "/v1/chat/completions", 200)
    assert proto == "HTTP/2.0", proto
    # The body is the mock's, byte for byte: the same request to the mock directly gives the same answer
    # but for the request number in the id.
    conn = http.client.HTTPConnection("127.0.0.1", M.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"content-type": "application/json", "authorization": "Bearer " + UPSTREAM_KEY})
    direct = conn.getresponse().read()
    conn.close()
    n_gate, n_direct = reqs[0]["id"], mock_requests(model)[-1]["id"]
    assert direct.replace(b"chatcmpl-mock-%d" % n_direct, b"chatcmpl-mock-%d" % n_gate) == data, (direct, data)
    answer = json.loads(data)
    assert answer["choices"][0]["message"]["content"] == text_of(5), answer
    row = usage_row(model)
    assert row["status"] == 200 and row["provider"] == "tls" and row["stream"] == 0, row
    assert row["input_tokens"] == answer["usage"]["prompt_tokens"] > 0, (row, answer["usage"])
    assert row["output_tokens"] == answer["usage"]["completion_tokens"] == 5, (row, answer["usage"])
    assert row["bytes_out"] == len(data), (row, len(data))


@test
def streaming_over_https():
    model = "gpt-stream+chunks=12"
    status, h, data = chat(model, stream=True)
    assert status == 200, (status, data)
    assert h.get("content-type", "").startswith("text/event-stream"), h
    events = sse_events(data)
    assert events[-1] == (None, "[DONE]"), events[-3:]
    chunks = [json.loads(d) for _, d in events[:-1]]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(x for x in deltas if x) == text_of(12), deltas
    assert len([x for x in deltas if x]) == 12, deltas
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and usage["completion_tokens"] == 12, chunks[-1]
    proto = nginx_saw(N, GOOD_PORT, "/v1/chat/completions", 200)
    assert proto == "HTTP/2.0", proto
    row = usage_row(model)
    assert row["status"] == 200 and row["stream"] == 1 and row["provider"] == "tls", row
    assert row["output_tokens"] == 12 and row["input_tokens"] == usage["prompt_tokens"], (row, usage)


@test
def anthropic_client_translated_over_https():
    model = "gpt-translated"
    body = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    status, h, data = request("POST", "/v1/messages", body, {"anthropic-version": "2023-06-01"})
    assert status == 200, (status, data)
    msg = json.loads(data)
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == model, msg
    assert msg["content"] == [{"type": "text", "text": text_of(5)}], msg
    assert msg["stop_reason"] == "end_turn" and msg["usage"]["output_tokens"] == 5, msg
    reqs = mock_requests(model)
    assert len(reqs) == 1 and reqs[0]["path"] == "/v1/chat/completions", reqs
    row = usage_row(model)
    assert row["status"] == 200 and row["dialect_in"] != row["dialect_out"] and row["output_tokens"] == 5, row


@test
def anthropic_client_translated_stream_over_https():
    model = "gpt-translated-stream+chunks=7"
    body = {"model": model, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, h, data = request("POST", "/v1/messages", body, {"anthropic-version": "2023-06-01"})
    assert status == 200, (status, data)
    events = sse_events(data)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events
                   if n == "content_block_delta" and json.loads(d)["delta"]["type"] == "text_delta")
    assert text == text_of(7), text
    delta = [json.loads(d) for n, d in events if n == "message_delta"]
    assert len(delta) == 1 and delta[0]["delta"]["stop_reason"] == "end_turn", delta
    assert delta[0]["usage"]["output_tokens"] == 7, delta


# ---- connections: what a burst of new streams costs ----

def concurrent_streams(prefix, n):
    """n streaming chat completions at once (overlapping: 5 deltas 50 ms apart); each must complete."""
    results = [None] * n

    def one(i):
        results[i] = chat("%s-%d+chunks=5+pace_ms=50" % (prefix, i), stream=True)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for r in results:
        assert r and r[0] == 200 and sse_events(r[2])[-1] == (None, "[DONE]"), r


def connections_seen(server, port, n):
    """The connection serial numbers of the first n requests nginx logged on port."""
    def lines():
        ls = [x for x in server.access() if x[0] == str(port)]
        return ls if len(ls) >= n else None
    return [x[5] for x in wait_for("%d requests on port %d" % (n, port), lines)[:n]]


@test
def burst_to_a_new_provider_shares_one_connection():
    # Eight streams at once to a provider gate has no connection to yet: they wait for the first
    # connection to say it multiplexes (HTTP/2) and share it, instead of eight TLS handshakes, each of
    # which loads the trust store on the event loop (bench/tls-upstream: 64 new streams took 5.8 s).
    concurrent_streams("burst", 8)
    conns = connections_seen(N, BURST_PORT, 8)
    assert len(set(conns)) == 1, conns
    assert nginx_saw(N, BURST_PORT, "/v1/chat/completions", 200) == "HTTP/2.0"


@test
def http1_upstream_connections_are_kept_after_a_burst():
    # An HTTP/1.1-only provider: one connection per stream in flight. After the burst they stay for
    # reuse ([proxy] idle_connections), so the next burst makes no new ones; curl's own default keeps
    # four per running transfer and closes the rest as a burst drains (6 of 32 were new without it).
    concurrent_streams("h1-a", 32)
    first = set(connections_seen(N, H1_PORT, 32))
    concurrent_streams("h1-b", 32)
    both = connections_seen(N, H1_PORT, 64)
    assert set(both) == first, (len(first), sorted(set(both) - first))
    assert nginx_saw(N, H1_PORT, "/v1/chat/completions", 200) == "HTTP/1.1"



@test
def trust_is_the_bundle_file_not_the_loose_certificates():
    # gate trusts the system's CA bundle (what update-ca-certificates writes), not every file of
    # /etc/ssl/certs: loading that directory parsed each CA three times for every new connection, on the
    # event loop. Here the directory holds the test CA only as a loose file (hashed, as curl's directory
    # lookup would find it), and a bundle without it.
    certs = tempfile.mkdtemp(prefix="gate-certdir-")
    shutil.copy(ROGUE.crt, os.path.join(certs, "ca-certificates.crt"))
    shutil.copy(CA.crt, os.path.join(certs, "gate-test-ca.pem"))
    subprocess.run(["openssl", "rehash", certs], capture_output=True, check=True)
    wrap = bound_over(certs, "/etc/ssl/certs")
    try:
        with Gate(config=CONFIG, wrapper=wrap) as loose:
            loose.start()
            status, h, data = chat("gpt-loose", port=loose.port)
            assert_upstream_error(status, h, data, "tls")
            assert "CA bundle /etc/ssl/certs/ca-certificates.crt" in loose.log(), loose.log()[-2000:]
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    assert not mock_requests("gpt-loose")


@test
def reload_parses_the_bundle_again():
    # update-ca-certificates, then a reload: new and kept connections alike are checked against the new
    # CAs. The bundle gate sees is a file of ours bound over the system's, rewritten in place.
    trust = tempfile.mkdtemp(prefix="gate-reload-trust-")
    bundle = os.path.join(trust, "ca-certificates.crt")
    shutil.copy(ROGUE.crt, bundle)
    wrap = bound_over(bundle)

    def reload(gate):
        n = len(gate.notify.messages)
        gate.signal(signal.SIGHUP)
        gate.notify.wait_for("READY=1", after=gate.notify.wait_for("RELOADING=1", after=n))

    try:
        with Gate(config=CONFIG, wrapper=wrap) as gr:
            gr.start()
            status, h, data = chat("gpt-reload-1", port=gr.port)
            assert_upstream_error(status, h, data, "tls")
            shutil.copy(CA.crt, bundle)
            reload(gr)
            status, h, data = chat("gpt-reload-2", port=gr.port)
            assert status == 200, (status, data)
            # The connection just used is kept; with the CA gone again it must not serve another request.
            shutil.copy(ROGUE.crt, bundle)
            reload(gr)
            status, h, data = chat("gpt-reload-3", port=gr.port)
            assert_upstream_error(status, h, data, "tls")
            # A bundle that no longer parses keeps the CAs parsed before (the rogue one, here).
            with open(bundle, "w") as f:
                f.write("garbage\n")
            reload(gr)
            assert "upstream TLS keeps the 1 CAs parsed before" in gr.log(), gr.log()[-2000:]
            status, h, data = chat("gpt-reload-4", port=gr.port)
            assert_upstream_error(status, h, data, "tls")
    finally:
        shutil.rmtree(trust, ignore_errors=True)
    assert [r["model"] for r in M.requests() if r.get("model", "").startswith("gpt-reload")] == ["gpt-reload-2"]


@test
def unparseable_bundle_leaves_the_check_to_curl_and_refuses():
    # A bundle GnuTLS cannot parse: gate does not check servers itself, libcurl gets the file, fails to load
    # it, and every https:// request gets a 502 with the reason in the log; nothing is sent upstream.
    trust = tempfile.mkdtemp(prefix="gate-badbundle-")
    bundle = os.path.join(trust, "ca-certificates.crt")
    with open(bundle, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    wrap = bound_over(bundle)
    try:
        with Gate(config=CONFIG, wrapper=wrap) as bad:
            bad.start()
            status, h, data = chat("gpt-badbundle", port=bad.port)
            assert_upstream_error(status, h, data, "tls")
            log = bad.log()
            assert "Cannot parse the CA bundle /etc/ssl/certs/ca-certificates.crt" in log, log[-2000:]
            assert "Upstream tls failed" in log and "CA cert" in log, log[-2000:]
            status, _, data = request("GET", "/health", port=bad.port)
            assert status == 200, (status, data)
    finally:
        shutil.rmtree(trust, ignore_errors=True)
    assert not mock_requests("gpt-badbundle")


class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT), as https_proxy names; to=PORT sends every tunnel to
    127.0.0.1:PORT whatever was asked, as a proxy in the middle would."""

    def __init__(self, to=None):
        self.to = to
        self.asked = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client):
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            head += data
        method, target = head.split(b"\r\n")[0].decode().split(" ")[:2]
        self.asked.append((method, target))
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.to or int(target.rsplit(":", 1)[1])))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        pump(upstream, client)

    def close(self):
        self.sock.close()


def through_proxy(proxy):
    """The environment that makes curl tunnel every https:// upstream through proxy (localhost too)."""
    return {"https_proxy": "http://127.0.0.1:%d" % proxy.port, "HTTPS_PROXY": "", "no_proxy": "", "NO_PROXY": ""}


@test
def https_proxy_from_the_environment_tunnels_to_the_checked_upstream():
    # curl honours https_proxy for gate's transfers. The first request on a new tunnel gets the upstream's
    # answer whole: the proxy's "200 Connection established" is not the upstream's head.
    proxy = ConnectProxy()
    try:
        with Gate(config=CONFIG, wrapper=IN_NAMESPACE, env=through_proxy(proxy)) as gp:
            gp.start()
            status, h, data = chat("gpt-via-proxy", port=gp.port)
            assert status == 200, (status, data)
            assert json.loads(data)["choices"][0]["message"]["content"] == text_of(5), data
    finally:
        proxy.close()
    assert proxy.asked == [("CONNECT", "localhost:%d" % GOOD_PORT)], proxy.asked
    assert len(mock_requests("gpt-via-proxy")) == 1


@test
def https_proxy_in_the_middle_is_refused():
    # A proxy that tunnels to another server (one with the right name from a CA gate does not trust): the
    # check is of the server at the end of the tunnel, for the upstream's name, and the client gets gate's
    # 502, not the proxy's 200 and a broken body.
    proxy = ConnectProxy(to=ROGUE_PORT)
    try:
        with Gate(config=CONFIG, wrapper=IN_NAMESPACE, env=through_proxy(proxy)) as gp:
            gp.start()
            status, h, data = chat("gpt-via-rogue-proxy", port=gp.port)
            assert_upstream_error(status, h, data, "tls")
            assert "certificate issuer is unknown" in gp.log(), gp.log()[-2000:]
    finally:
        proxy.close()
    assert proxy.asked and proxy.asked[0] == ("CONNECT", "localhost:%d" % GOOD_PORT), proxy.asked
    assert not mock_requests("gpt-via-rogue-proxy")


# ---- the bad cases: a clear 502 to the client, and gate goes on ----

@test
def untrusted_ca_is_refused():
    before = upstream_errors("badca", "transfer")
    status, h, data = chat("badca-x")
    assert_upstream_error(status, h, data, "badca")
    assert not mock_requests("badca-x")     # nothing got past the handshake
    assert any("Upstream badca failed" in line and "SSL peer certificate" in line for line in gate_log_for(h)), \
        gate_log_for(h)
    assert usage_row("badca-x")["status"] == 502
    assert upstream_errors("badca", "transfer") == before + 1
    assert_still_serving("badca")


@test
def certificate_for_another_name_is_refused():
    before = upstream_errors("badname", "transfer")
    status, h, data = chat("badname-x")
    assert_upstream_error(status, h, data, "badname")
    assert not mock_requests("badname-x")
    assert any("Upstream badname failed" in line and "SSL peer certificate" in line for line in gate_log_for(h)), \
        gate_log_for(h)
    # The log says which name was wrong, not only that the certificate was.
    assert any("certificate for CN=other.test,O=other does not match host name 'localhost'" in line
               for line in gate_log_for(h)), gate_log_for(h)
    assert usage_row("badname-x")["status"] == 502
    assert upstream_errors("badname", "transfer") == before + 1
    assert_still_serving("badname")


@test
def expired_certificate_is_refused():
    status, h, data = chat("expired-x")
    assert_upstream_error(status, h, data, "expired")
    assert not mock_requests("expired-x")
    assert any("Upstream expired failed" in line and "expired" in line.split("failed", 1)[1]
               for line in gate_log_for(h)), gate_log_for(h)
    assert_still_serving("expired")


def assert_weak_refused(provider):
    status, h, data = chat(provider + "-x")
    assert_upstream_error(status, h, data, provider)
    assert not mock_requests(provider + "-x")   # the key was never sent
    want = WEAK[provider][1]
    assert any("Upstream %s failed" % provider in line and want in line for line in gate_log_for(h)), \
        (want, gate_log_for(h))
    assert_still_serving(provider)


@test
def leaf_with_a_768_bit_rsa_key_is_refused():
    assert_weak_refused("weakrsa768")


@test
def leaf_with_a_512_bit_rsa_key_is_refused():
    assert_weak_refused("weakrsa512")


@test
def intermediate_with_a_768_bit_rsa_key_is_refused():
    assert_weak_refused("weakinter768")


@test
def trusted_ca_with_a_512_bit_rsa_key_is_refused():
    # The weak key is in the bundle, not in what the server sends.
    assert_weak_refused("weakca512")


@test
def leaf_signed_with_sha1_is_refused():
    assert_weak_refused("weaksha1")
    assert_weak_refused("weaksha1rsa")


@test
def leaf_signed_with_md5_is_refused():
    assert_weak_refused("weakmd5")


@test
def intermediate_signed_with_sha1_is_refused():
    assert_weak_refused("weakintersha1")


@test
def ordinary_keys_and_chains_are_taken():
    # What libcurl's own check took: RSA from 1024 bits (GnuTLS's LOW profile takes 1024), P-384, Ed25519, an
    # RSA-1024 intermediate, an RSA CA signing with SHA-256. (P-256 is every other test's.)
    for provider in [name for name in WEAK if WEAK[name][1] is None]:
        status, h, data = chat(provider + "-x")
        assert status == 200, (provider, status, data, gate_log_for(h) if "x-request-id" in h else None)
        assert json.loads(data)["choices"][0]["message"]["content"] == text_of(5), (provider, data)


@test
def stapled_ocsp_responses_are_checked():
    # What GnuTLS's own peer check did when libcurl ran it: a stapled "revoked" refuses the server, a stapled
    # "good" is fine, and a certificate that demands stapling (TLS feature status_request) without a staple
    # is refused.
    status, h, data = chat("stapled-x")
    assert status == 200, (status, data)
    status, h, data = chat("revoked-x")
    assert_upstream_error(status, h, data, "revoked")
    assert any("Upstream revoked failed" in line and "revoked" in line.split("failed", 1)[1]
               for line in gate_log_for(h)), gate_log_for(h)
    status, h, data = chat("muststaple-x")
    assert_upstream_error(status, h, data, "muststaple")
    assert any("Upstream muststaple failed" in line and "OCSP" in line for line in gate_log_for(h)), \
        gate_log_for(h)
    assert not mock_requests("revoked-x") and not mock_requests("muststaple-x")
    assert_still_serving("ocsp")


@test
def ip_literal_upstream_is_checked_against_the_certificates_ip_names():
    # https://127.0.0.1:PORT: the check matches the address against the certificate's IP names, never
    # its DNS names.
    status, h, data = chat("byip-x")
    assert status == 200, (status, data)
    assert json.loads(data)["choices"][0]["message"]["content"] == text_of(5), data
    status, h, data = chat("ipname-x")
    assert_upstream_error(status, h, data, "ipname")
    assert not mock_requests("ipname-x")
    assert any("does not match host name '127.0.0.1'" in line for line in gate_log_for(h)), gate_log_for(h)


@test
def a_newline_in_the_certificate_subject_stays_inside_its_log_line():
    # The log quotes the subject of a certificate for the wrong name, and the server chooses that subject
    # (here signed by the trusted CA; an untrusted one is quoted the same way): a newline in it must not
    # start a line of the server's making.
    status, h, data = chat("newline-x")
    assert_upstream_error(status, h, data, "newline")
    assert not mock_requests("newline-x")
    log = g.log().splitlines()
    assert not any(line.lstrip("<>0123456789").startswith(FORGED_LINE) for line in log), \
        [line for line in log if FORGED_LINE in line]
    assert any(("certificate for CN=evil?%s,O=newline does not match host name 'localhost'" % FORGED_LINE) in line
               for line in gate_log_for(h)), gate_log_for(h)


@test
def https_to_a_plain_http_port_is_refused():
    n = len(M.requests())
    before = upstream_errors("plain", "transfer")
    status, h, data = chat("plain-x")
    assert_upstream_error(status, h, data, "plain")
    # The mock got a TLS ClientHello where it expected HTTP: no request was ever made of it.
    assert len(M.requests()) == n, M.requests()[n:]
    assert any("Upstream plain failed" in line and "SSL connect error" in line for line in gate_log_for(h)), \
        gate_log_for(h)
    assert usage_row("plain-x")["status"] == 502
    assert upstream_errors("plain", "transfer") == before + 1
    assert_still_serving("plain")


@test
def tls_server_killed_mid_stream():
    model = "dying-x+chunks=50+pace_ms=100"
    before = upstream_errors("dying", "transfer")
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=20)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps({"model": model, "stream": True, "stream_options": {"include_usage": True},
                                  "messages": [{"role": "user", "content": "hi"}]}),
                 headers={"content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    got = b""
    while got.count(b"\ndata: ") + got.startswith(b"data: ") < 3:
        line = resp.readline()
        assert line, got
        got += line
    t0 = time.time()
    N2.kill()
    error = None
    # read(), not readline(): http.client's readline() takes a chunked body that breaks off for its end.
    try:
        got += resp.read()
    except http.client.IncompleteRead as e:
        got += e.partial
        error = e
    except ConnectionError as e:
        error = e
    elapsed = time.time() - t0
    conn.close()
    # Broken off at once (not at the 2-minute idle timeout), as a broken chunked body: never one that ends
    # cleanly, and no [DONE].
    assert elapsed < 2.0, elapsed
    assert isinstance(error, http.client.IncompleteRead), (error, got[-300:])
    assert b"[DONE]" not in got, got[-300:]
    deltas = [json.loads(d)["choices"][0]["delta"].get("content") for _, d in sse_events(got)
              if json.loads(d)["choices"]]
    assert 3 <= len(deltas) < 50, deltas
    # The mock's side: the stream was abandoned (nginx went away), not completed.
    rid = mock_requests(model)[0]["id"]
    assert M.wait_event(rid)["event"] == "aborted", M.events(rid)
    # The row: the status the client got (200), a stream, the bytes that went out, no tokens (OpenAI puts
    # usage in the last chunk, which never came), and the outcome that tells it from a complete answer.
    row = usage_row(model)
    assert row["status"] == 200 and row["stream"] == 1 and row["provider"] == "dying", row
    assert row["outcome"] == "upstream_error", row
    assert row["output_tokens"] == 0 and row["input_tokens"] == 0, row
    assert 0 < row["bytes_out"] <= len(got), (row, len(got))
    # The break is a failed upstream transfer in the metrics, and a warning in the log (the provider's
    # first failure, so not held back), with the request's id.
    assert upstream_errors("dying", "transfer") == before + 1
    rid = resp.getheader("x-request-id")
    assert any(line.startswith("<4>Upstream dying failed for request %s: " % rid) for line in g.log().splitlines()), \
        [line for line in g.log().splitlines() if rid in line]
    assert_still_serving("killed")


@test
def provider_comes_back_after_its_tls_server_restarts():
    # libcurl may hold the dead connection; a new nginx on the same port must be reached afresh.
    status, h, data = chat("dying-down")
    assert_upstream_error(status, h, data, "dying")
    N2.start()
    status, h, data = chat("dying-back")
    assert status == 200, (status, data)
    assert json.loads(data)["choices"][0]["message"]["content"] == text_of(5), data


g.stop()
N.remove()
N2.remove()
N3.remove()
M.stop()
for _ca in (CA, ROGUE, RSA_CA, WEAK_CA, INTER_768, INTER_1024, INTER_SHA1):
    _ca.remove()
shutil.rmtree(TRUST, ignore_errors=True)
finish()
