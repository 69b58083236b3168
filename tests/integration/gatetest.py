"""gatetest: shared helpers for gate's integration tests: temp state, config, daemon start/stop, notify."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

GATE = os.environ.get("GATE_BIN", os.path.join(os.environ.get("BUILDDIR", "build"), "gate"))

_results = {"passed": 0, "failed": 0}


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, cond, timeout=10.0):
    """Polls cond() until it returns something true, and returns that; fails naming what after timeout s."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


def _newkey(key):
    """openssl req arguments for a new key: "ec:P-256" (a named curve), "rsa:768" (bits), "ed25519"."""
    kind, _, param = key.partition(":")
    if kind == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + param]
    if kind == "rsa":
        return ["-newkey", "rsa:" + param]
    if kind in ("ed25519", "ed448") and not param:
        return ["-newkey", kind]
    raise ValueError("unknown key %r" % key)


class CertAuthority:
    """A throwaway CA (openssl, P-256 unless key says otherwise) in its own temp directory, issuing
    certificates for test servers.

    ca = CertAuthority(); crt, key = ca.issue("a.test", "first"); ca.crt is the CA certificate.
    CertAuthority("sub", parent=ca) is an intermediate CA signed by ca: its issue() returns a crt file that
    holds the certificate and then the intermediates (what a server sends), and ca.crt alone is trusted."""

    def __init__(self, subject="gate test CA", key="ec:P-256", parent=None, md="sha256"):
        self.dir = tempfile.mkdtemp(prefix="gate-ca-")
        self.crt = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "ca.key")
        self.chain = []     # the intermediates above a certificate this CA issues, in the order a server sends
        if parent is None:
            _run("openssl", "req", "-x509", *_newkey(key), "-nodes", "-keyout", self.key, "-out", self.crt,
                 "-days", "2", "-subj", "/CN=" + subject)
        else:
            with open(os.path.join(self.dir, "ca.ext"), "w") as f:
                f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
            _run("openssl", "req", *_newkey(key), "-nodes", "-keyout", self.key,
                 "-out", os.path.join(self.dir, "ca.csr"), "-subj", "/CN=" + subject)
            _run("openssl", "x509", "-req", "-in", os.path.join(self.dir, "ca.csr"), "-CA", parent.crt,
                 "-CAkey", parent.key, "-CAcreateserial", "-out", self.crt, "-days", "2", "-" + md,
                 "-extfile", os.path.join(self.dir, "ca.ext"))
            self.chain = [self.crt] + parent.chain

    def issue(self, name, tag, days=1, san=None, ext="", key="ec:P-256", md="sha256"):
        """A certificate for DNS name `name` (organization `tag`) signed by this CA; returns (crt, key).
        san replaces the subjectAltName ("IP:127.0.0.1"); days=-1 makes one that expired a day ago; ext adds
        extension lines ("tlsfeature=status_request\n"); key is the certificate's key ("rsa:768", see
        _newkey()); md the hash this CA signs it with ("sha1", "md5": the CA's key must be RSA)."""
        base = os.path.join(self.dir, "%s-%s" % (name, tag))
        with open(base + ".ext", "w") as f:
            f.write("subjectAltName=%s\n%s" % (san or "DNS:" + name, ext))
        _run("openssl", "req", *_newkey(key), "-nodes",
             "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=%s/O=%s" % (name, tag))
        _run("openssl", "x509", "-req", "-in", base + ".csr", "-CA", self.crt, "-CAkey", self.key,
             "-CAcreateserial", "-out", base + ".crt", "-days", str(days), "-" + md, "-extfile", base + ".ext")
        if self.chain:
            with open(base + ".crt", "a") as out:
                for c in self.chain:
                    with open(c) as f:
                        out.write(f.read())
        return base + ".crt", base + ".key"

    def ocsp(self, crt, revoked):
        """An OCSP response (DER) about crt, signed by this CA as its own responder, saying it is revoked or
        good, current for a day; returns its path (for nginx's ssl_stapling_file)."""
        out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-serial", "-enddate"],
                             capture_output=True, check=True).stdout.decode().split("\n")
        serial = out[0].split("=", 1)[1].strip()
        end = time.strftime("%y%m%d%H%M%SZ", time.strptime(out[1].split("=", 1)[1].strip(), "%b %d %H:%M:%S %Y %Z"))
        now = time.strftime("%y%m%d%H%M%SZ", time.gmtime())
        base = crt[:-len(".crt")] + ("-revoked" if revoked else "-good")
        with open(base + ".index", "w") as f:
            f.write("%s\t%s\t%s\t%s\tunknown\t/CN=x\n" % ("R" if revoked else "V", end, now if revoked else "",
                                                           serial))
        _run("openssl", "ocsp", "-issuer", self.crt, "-cert", crt, "-no_nonce", "-reqout", base + ".req")
        _run("openssl", "ocsp", "-index", base + ".index", "-rsigner", self.crt, "-rkey", self.key, "-CA", self.crt,
             "-reqin", base + ".req", "-respout", base + ".ocsp", "-ndays", "1")
        return base + ".ocsp"

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _run(*args):
    p = subprocess.run(list(args), capture_output=True)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.decode(errors="replace")))


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, key, timeout=10.0, after=0):
        """Waits until a message containing key (e.g. 'READY=1') arrives; returns its index."""
        deadline = time.time() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if key in self.messages[i].split("\n"):
                    return i
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no %r from gate within %ss; got %r" % (key, timeout, self.messages))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.messages.append(data.decode())

    def close(self):
        self.sock.close()


class Gate:
    """One gate daemon with its own state directory and config, on free loopback ports."""

    def __init__(self, config="", port=None, env=None, activate=None, extra_args=None, wrapper=None):
        self.dir = tempfile.mkdtemp(prefix="gate-test-")
        self.port = port or free_port()
        self.state = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "gate.conf")
        if not config.startswith("[server]\nbind"):
            config = "[server]\nbind = 127.0.0.1:%d\n" % self.port + config
        with open(self.config_path, "w") as f:
            f.write(config)
        self.env = dict(os.environ)
        self.env.update({"GATE_CONFIG": self.config_path, "STATE_DIRECTORY": self.state,
                         "GATE_LOG": "debug"})
        self.env.pop("LISTEN_FDS", None)
        self.env.pop("LISTEN_PID", None)
        if env:
            self.env.update(env)
        self.notify = NotifySocket(self.dir)
        self.env["NOTIFY_SOCKET"] = self.notify.path
        self.activate = activate
        # A command that execs its arguments (e.g. unshare ... sh -c '...; exec "$@"'): gate runs under it
        # with the same pid, so signals and waits still reach gate itself.
        self.wrapper = list(wrapper or [])
        self.log_path = os.path.join(self.dir, "gate.log")
        self.proc = None

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def start(self, wait_ready=True):
        os.makedirs(self.state, mode=0o700, exist_ok=True)
        log = open(self.log_path, "ab")
        cmd = [GATE, "serve"]
        if self.activate:
            # systemd-socket-activate binds, waits for the first connection, then execs gate.
            passed = []
            for k in ["GATE_CONFIG", "STATE_DIRECTORY", "GATE_LOG", "NOTIFY_SOCKET"]:
                passed += ["-E", k]
            cmd = ["systemd-socket-activate"] + self.activate + passed + cmd
        cmd = self.wrapper + cmd
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if wait_ready:
            self.notify.wait_for("READY=1")
        return self

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            sys.stderr.write("---- gate log ----\n" + self.log()[-8000:] + "\n")


def curl(*args, timeout=10, stdin=None):
    """Runs curl; returns (exit code, stdout, stderr) as text. stdin: bytes for "--data-binary @-" (a body
    too large for the command line)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout)] + list(args), input=stdin,
                       capture_output=True, timeout=timeout + 5)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def raw(port, data, read_timeout=3.0, host="127.0.0.1", shut=False):
    """Sends raw bytes on a fresh connection and returns everything read until close or timeout."""
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    s.settimeout(read_timeout)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def status_of(response):
    line = response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def test(func):
    """Decorator: registers and runs a test, counting results."""
    name = func.__name__
    try:
        func()
        _results["passed"] += 1
        print("ok   %s" % name, flush=True)
    except Exception:
        _results["failed"] += 1
        print("FAIL %s" % name, flush=True)
        traceback.print_exc()
    return func


def finish():
    print("%d passed, %d failed" % (_results["passed"], _results["failed"]))
    sys.exit(1 if _results["failed"] else 0)
