"""mocktest: runs the in-tree mock upstream (tests/mock) for integration tests and reads its request log."""
import json
import os
import select
import signal
import subprocess
import tempfile
import time

MOCK_BIN = os.environ.get("MOCK_BIN") or os.path.join(os.environ.get("BUILDDIR", "build"), "tests",
                                                       "mock-upstream")


def sse_events(data):
    """Parses an SSE body (bytes or str) into a list of (event name or None, data string)."""
    if isinstance(data, bytes):
        data = data.decode()
    out = []
    for block in data.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:][1:] if line[5:].startswith(" ") else line[5:])
        out.append((name, "\n".join(lines)))
    return out


class Mock:
    """One mock-upstream process on a free loopback port, with its request log.

    m = Mock(require_key="sk-test").start()
    m.url("/v1/chat/completions"); m.requests(); m.wait_event(1, "done"); m.stop()
    Behaviour is chosen per request by directives in the model name ("gpt-4o+chunks=3+error=429"),
    see tests/mock/README.md."""

    def __init__(self, require_key=None, extra_args=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="gate-mock-")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        self.stderr_path = os.path.join(self.dir, "mock.stderr")
        self.require_key = require_key
        self.extra_args = list(extra_args or [])
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None
        self.address = None
        self.port = None

    def start(self, timeout=10.0):
        cmd = [MOCK_BIN, "--listen", "127.0.0.1:0", "--log", self.log_path]
        if self.require_key is not None:
            cmd += ["--require-key", self.require_key]
        cmd += self.extra_args
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                     env=self.env)
        err.close()
        deadline = time.time() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.time()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("mock-upstream did not start: %r %s" % (line, self.stderr()))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    continue
                line += c
        words = line.decode().split()
        if len(words) != 2 or words[0] != "listening":
            self.stop()
            raise AssertionError("unexpected first line from mock-upstream: %r" % line)
        self.address = words[1]
        self.port = int(self.address.rsplit(":", 1)[1])
        return self

    def url(self, path="/"):
        return "http://%s%s" % (self.address, path)

    @property
    def base_url(self):
        return "http://%s" % self.address

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_lines(self):
        """Every complete line of the request log, parsed, in order. A last line without its newline is one
        the mock is still writing (read under load, it failed to parse): it is left for the next call."""
        try:
            with open(self.log_path) as f:
                return [json.loads(line) for line in f if line.strip() and line.endswith("\n")]
        except FileNotFoundError:
            return []

    def requests(self):
        """The requests received (lines with "method"), in order."""
        return [x for x in self.log_lines() if "method" in x]

    def request(self, id):
        for x in self.requests():
            if x["id"] == id:
                return x
        raise KeyError(id)

    def last_request(self):
        r = self.requests()
        if not r:
            raise AssertionError("mock-upstream received no request")
        return r[-1]

    def events(self, id=None):
        """Lines with "event" ("done", "aborted", "reset"), optionally for one request id."""
        return [x for x in self.log_lines() if "event" in x and (id is None or x["id"] == id)]

    def wait_event(self, id, event=None, timeout=10.0):
        """Waits until request id has ended (with that event, if given); returns the event line."""
        deadline = time.time() + timeout
        while True:
            for x in self.events(id):
                if event is None or x["event"] == event:
                    return x
            if time.time() > deadline:
                raise AssertionError("no %s event for request %s within %ss; log: %r" %
                                     (event or "end", id, timeout, self.log_lines()[-10:]))
            time.sleep(0.02)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit status."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self):
        if not self.proc:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
