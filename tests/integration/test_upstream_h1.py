"""gate's upstream HTTP/1.1 client end to end, and the same scenarios over libcurl ([proxy] builtin_client =
false): keep-alive reuse, idle connections the upstream closes, resets mid-stream, framing, early answers
to large bodies, backpressure to the upstream, connect timeouts, and 1000 streams with no fd or memory left
behind. The upstreams are the in-tree mock and small raw-socket servers written here.

Names on the command line (or H1_TESTS, comma-separated) run only the tests whose names contain them,
e.g. for a run of gate under valgrind: GATE_BIN=wrapper python3 test_upstream_h1.py keepalive reset."""
import http.client
import json
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time

from gatetest import Gate, curl, finish, free_port, test
from mocktest import Mock

FILTER = [w for w in sys.argv[1:] + os.environ.get("H1_TESTS", "").split(",") if w]
VALGRIND = bool(os.environ.get("H1_VALGRIND"))      # gate runs under valgrind: no RSS or timing checks
SLOW = 10 if VALGRIND else 1


def both(func):
    """Registers func(builtin) twice: over gate's own client and over libcurl."""
    for builtin in (True, False):
        name = "%s[%s]" % (func.__name__, "h1" if builtin else "curl")
        if FILTER and not any(w in name for w in FILTER):
            continue

        def run(builtin=builtin):
            func(builtin)
        run.__name__ = name
        test(run)
    return func


def builtin_only(func):
    """Registers func for gate's own client alone (what it tests has no libcurl counterpart)."""
    if not FILTER or any(w in func.__name__ for w in FILTER):
        test(func)
    return func


# ---- a raw-socket upstream ----

REQUEST_LINE = re.compile(rb"^(GET|POST|HEAD) /[!-~]* HTTP/1\.1$")


class RawUpstream:
    """An HTTP/1.1 server on a raw socket, a thread per connection. handler(up, conn, req) answers each
    request (a dict: method, path, headers with lowercase names, body) and returns False to close the
    connection. A request that is not well-formed HTTP/1.1 is recorded in .errors and the connection is
    closed: a client that desynchronised a connection shows up there."""

    def __init__(self, handler, backlog=128):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.open = 0
        self.requests = []
        self.errors = []
        self.sent = 0
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/v1" % self.port

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def on_head(self, conn, req):
        """Called with the head of each request before its body is read; True if it answered already."""
        return False

    def _read_request(self, conn, buf):
        while b"\r\n\r\n" not in buf:
            d = conn.recv(65536)
            if not d:
                if buf:
                    self.errors.append("truncated head %r" % buf[:200])
                return None, b""
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not REQUEST_LINE.match(lines[0]):
            self.errors.append("bad request line %r" % lines[0][:200])
            return None, b""
        method, path, _ = lines[0].decode().split(" ")
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.decode("latin-1").partition(":")
            if not sep or not k or k != k.strip():
                self.errors.append("bad field %r" % line[:200])
                return None, b""
            headers[k.lower()] = v.strip()
        req = {"method": method, "path": path, "headers": headers}
        req["answered"] = self.on_head(conn, req)
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            d = conn.recv(max(65536, n - len(buf)))
            if not d:
                # Not the client's fault when the request was answered before its body came.
                if not req["answered"]:
                    self.errors.append("truncated body")
                req["body"] = buf
                with self.lock:
                    self.requests.append(req)
                return None, b""
            buf += d
        req["body"] = buf[:n]
        return req, buf[n:]

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                req, buf = self._read_request(conn, buf)
                if req is None:
                    break
                with self.lock:
                    self.requests.append(req)
                if not req["answered"] and not self.handler(self, conn, req):
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            try:
                conn.close()
            except OSError:
                pass

    def send(self, conn, data):
        conn.sendall(data)
        with self.lock:
            self.sent += len(data)

    def stop(self):
        self.stopped = True
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def completion(req, text="hello"):
    model = json.loads(req["body"])["model"]
    return json.dumps({"id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


def answer_json(up, conn, req, extra=b""):
    body = completion(req)
    up.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (len(body), extra, body))
    return True


def sse_chunk(data):
    ev = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(ev), ev)


def chunk_event(i, pad=0):
    return json.dumps({"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 0, "model": "raw",
                       "choices": [{"index": 0, "delta": {"content": "tok%d%s" % (i, "x" * pad)},
                                    "finish_reason": None}]}).encode()


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


# ---- gate ----

def gate_config(builtin, base_url, extra="", proxy_extra=""):
    return """
[proxy]
builtin_client = %s
%s
[provider.raw]
type = openai-compatible
base_url = %s
models = raw-*, mock-*
api_key = sk-raw
connect_timeout = 1s
first_byte_timeout = %ds
idle_timeout = %ds
%s""" % ("true" if builtin else "false", proxy_extra, base_url, 5 * SLOW, 5 * SLOW, extra)


def start_gate(builtin, base_url, extra="", proxy_extra="", server_lines=""):
    port = free_port()
    g = Gate(config="[server]\nbind = 127.0.0.1:%d\n%s" % (port, server_lines) +
             gate_config(builtin, base_url, extra, proxy_extra), port=port)
    g.start()
    return g


def post(g, body, headers=None, timeout=20):
    """One request on its own connection; returns (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=timeout * SLOW)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", "/v1/chat/completions", body=data,
              headers=dict({"content-type": "application/json"}, **(headers or {})))
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, out


def warm_curl(g, builtin, model):
    """libcurl is loaded on the first transfer that needs it, and brings fds of its own for the life of the
    process (the multi handle's wakeup socketpair, the glue's epoll): fd baselines are taken after one."""
    if not builtin:
        status, _, body = post(g, {"model": model, "messages": []})
        assert status == 200, (status, body)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def socket_count(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except FileNotFoundError:
            pass
    return n


def wait_until(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def check_client(up, builtin):
    """Which client spoke to the upstream: libcurl adds "Accept: */*" to every request, gate's own none."""
    accepts = {r["headers"].get("accept") for r in up.requests}
    assert accepts == ({None} if builtin else {"*/*"}), accepts


# ---- the scenarios ----

@both
def keepalive_reuse(builtin):
    up = RawUpstream(answer_json)
    g = start_gate(builtin, up.base_url)
    with g:
        for i in range(20):
            status, _, body = post(g, {"model": "raw-1", "messages": [], "n": i})
            assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hello", body
        # One connection carried all twenty, each request intact.
        assert up.connections == 1, up.connections
        assert len(up.requests) == 20 and not up.errors, up.errors
        assert [json.loads(r["body"])["n"] for r in up.requests] == list(range(20))
        assert up.requests[0]["headers"]["authorization"] == "Bearer sk-raw"
        assert up.requests[0]["headers"]["host"] == "127.0.0.1:%d" % up.port
        check_client(up, builtin)
    up.stop()


def idle_pool_bounded(idle, rounds=2, n=6):
    """n concurrent requests, twice: the upstream answers none before all n have come, so each round holds n
    connections at once. Returns the upstream's (connections made, connections still open after each round)."""
    arrived = threading.Semaphore(0)
    release = threading.Event()

    def handler(up, conn, req):
        arrived.release()
        release.wait(10)
        return answer_json(up, conn, req)
    up = RawUpstream(handler)
    g = start_gate(True, up.base_url, proxy_extra="" if idle is None else "idle_connections = %d" % idle)
    still_open = []
    with g:
        for _ in range(rounds):
            release.clear()
            out = []
            ts = [threading.Thread(target=lambda: out.append(post(g, {"model": "raw-1", "messages": []})))
                  for _ in range(n)]
            for t in ts:
                t.start()
            for _ in range(n):
                assert arrived.acquire(timeout=10 * SLOW), "the requests did not all reach the upstream"
            release.set()
            for t in ts:
                t.join()
            assert [o[0] for o in out] == [200] * n, out
            wait_until(lambda: up.open == min(1024 if idle is None else idle, n), 5 * SLOW)
            still_open.append(up.open)
        assert not up.errors, up.errors
    up.stop()
    return up.connections, still_open


@builtin_only
def idle_connections_bounds_the_pool():
    # [proxy] idle_connections: at most that many idle connections per address stay open; the next burst
    # reuses them and opens only the rest.
    assert idle_pool_bounded(4) == (6 + 2, [4, 4])
    # The default (1024) keeps a whole burst's connections.
    assert idle_pool_bounded(None) == (6, [6, 6])
    # 0: every request on a connection of its own, closed after it.
    assert idle_pool_bounded(0) == (12, [0, 0])


@both
def upstream_closes_idle_connections(builtin):
    # The upstream closes a connection 100 ms after each answer: gate notices and opens a new one.
    def handler(up, conn, req):
        answer_json(up, conn, req)
        conn.settimeout(0.1)
        try:
            if conn.recv(1, socket.MSG_PEEK):
                conn.settimeout(None)
                return True
        except socket.timeout:
            pass
        return False
    up = RawUpstream(handler)
    g = start_gate(builtin, up.base_url)
    with g:
        for i in range(5):
            status, _, body = post(g, {"model": "raw-1", "messages": []})
            assert status == 200, (status, body)
            time.sleep(0.4)
        assert up.connections == 5 and not up.errors, (up.connections, up.errors)
    up.stop()


@both
def upstream_drops_reused_connection_retried(builtin):
    # The race every keep-alive client meets: the upstream closes a kept connection just as the next
    # request arrives on it. The request goes again on a fresh connection; the client never knows.
    served = {}

    def handler(up, conn, req):
        n = served.get(conn, 0)
        served[conn] = n + 1
        if n >= 1:
            return False                # the second request on a connection: closed unanswered
        return answer_json(up, conn, req)
    up = RawUpstream(handler)
    g = start_gate(builtin, up.base_url)
    with g:
        for i in range(4):
            status, _, body = post(g, {"model": "raw-1", "messages": [], "n": i})
            assert status == 200, (i, status, body)
        # Each request after the first met a dropped connection and was sent again: 1 + 2 * 3.
        assert up.connections == 4 and len(up.requests) == 7, (up.connections, len(up.requests))
        assert not up.errors, up.errors
    up.stop()


def reset_mid_stream_run(builtin, up, mock):
    g = start_gate(builtin, up.base_url, extra="""
[provider.mock]
type = openai-compatible
base_url = %s/v1
models = mockx-*
api_key = sk-mock
""" % mock.base_url)
    with g:
        for model in ["raw-1", "mockx-1+chunks=10+pace_ms=20+reset_after=3"]:
            rc, out, err = curl("-N", "-X", "POST", g.url("/v1/chat/completions"), "--data-binary",
                                json.dumps({"model": model, "stream": True, "messages": []}))
            # The client saw the events, then a broken transfer: never a clean end.
            assert rc in (18, 56), (model, rc, out, err)
            assert "tok0" in out and "[DONE]" not in out, (model, out)
        # And gate serves on.
        status, _, _ = post(g, {"model": "mockx-1", "messages": []})
        assert status == 200, status


@both
def reset_mid_stream_breaks_the_client_stream(builtin):
    def handler(up, conn, req):
        up.send(conn, SSE_HEAD)
        for i in range(3):
            up.send(conn, sse_chunk(chunk_event(i)))
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False                    # the close is a reset
    up = RawUpstream(handler)
    mock = Mock().start()
    try:
        reset_mid_stream_run(builtin, up, mock)
    finally:
        # The mock and the raw upstream go whatever happens (a failed assertion left them running).
        mock.stop()
        up.stop()


@both
def both_framings_relayed_by_the_coding(builtin):
    # Content-Length and chunked at once: the coding frames the body (RFC 9112 6.3), and the client must
    # not be handed the upstream's Content-Length for a body of another size.
    def handler(up, conn, req):
        body = completion(req, "x" * 100)
        pieces = [body[i:i + 40] for i in range(0, len(body), 40)]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        up.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
        return True
    up = RawUpstream(handler)
    g = start_gate(builtin, up.base_url)
    with g:
        status, headers, body = post(g, {"model": "raw-1", "messages": []}, timeout=5)
        assert status == 200, status
        assert json.loads(body)["choices"][0]["message"]["content"] == "x" * 100, body
        assert headers.get("content-length") in (None, str(len(body))), headers
    up.stop()


@both
def early_answer_to_a_large_body(builtin):
    # The upstream refuses a 16 MiB body after its head, long before the body can have gone out, then
    # reads the body as a server keeping the connection must. gate relays the 413 and must not send its
    # next request on that connection: it would be read as the rest of the body, and never answered.
    class Early(RawUpstream):
        refused = False

        def on_head(self, conn, req):
            if self.refused:
                return False
            self.refused = True
            body = json.dumps({"error": {"message": "too large", "type": "invalid_request_error"}}).encode()
            self.send(conn, b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.3)
            return True
    up = Early(answer_json)
    g = start_gate(builtin, up.base_url, server_lines="max_body_bytes = 64M\n")
    with g:
        big = json.dumps({"model": "raw-1", "messages": [], "pad": "x" * (16 << 20)}).encode()
        status, _, body = post(g, big, timeout=30)
        assert status == 413 and b"too large" in body, (status, body[:200])
        status, _, body = post(g, {"model": "raw-1", "messages": [], "n": 2})
        assert status == 200, (status, body)
        # The refused request ends when gate closes its connection, the other was answered on a new one.
        assert wait_until(lambda: len(up.requests) == 2, 5 * SLOW), up.requests
        assert not up.errors, up.errors
        refused = [r for r in up.requests if r["answered"]][0]
        other = [r for r in up.requests if not r["answered"]][0]
        assert json.loads(other["body"])["n"] == 2
        assert up.connections == 2, up.connections
        print("     the refused request's body: %d of %d bytes sent" % (len(refused["body"]), len(big)))
    up.stop()


@both
def slow_reader_pauses_the_upstream(builtin):
    # An endless stream as fast as the upstream can write; the client reads 200 KB/s. gate must stop
    # reading (and so the upstream must block) instead of buffering.
    def handler(up, conn, req):
        up.send(conn, SSE_HEAD)
        ev = sse_chunk(chunk_event(1, pad=4000))
        try:
            while not up.stopped:
                up.send(conn, ev)
        except OSError:
            pass
        return False
    up = RawUpstream(handler)
    g = start_gate(builtin, up.base_url)
    with g:
        body = json.dumps({"model": "raw-big", "stream": True, "messages": []}).encode()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.connect(("127.0.0.1", g.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        before = g.rss_kib()
        peak, got, samples = before, 0, []
        t0 = time.time()
        while time.time() - t0 < 4:
            got += len(s.recv(2048))
            time.sleep(0.01)
            peak = max(peak, g.rss_kib())
            if not samples and time.time() - t0 > 2:
                samples.append(up.sent)
        samples.append(up.sent)
        s.close()
        print("     slow reader: client got %d KiB, upstream wrote %d KiB (%d KiB in the last 2 s), "
              "gate RSS %d -> %d KiB" % (got >> 10, samples[-1] >> 10, (samples[-1] - samples[0]) >> 10,
                                         before, peak))
        assert got > 0
        # The upstream is held back by TCP: the socket buffers between it and the client, no more.
        assert samples[-1] < 48 << 20, samples
        assert samples[-1] - samples[0] < 8 << 20, samples
        if not VALGRIND:
            assert peak - before < 20 * 1024, (before, peak)
        # The client left: the upstream connection goes too.
        assert wait_until(lambda: up.open == 0, 5 * SLOW), up.open
    up.stop()


@both
def connect_timeout_to_a_blackhole(builtin):
    # A listener whose accept queue is full and never drained drops every SYN: a connect that hangs.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(2):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hole.getsockname())
        fillers.append(f)
    time.sleep(0.1)
    base = "http://127.0.0.1:%d/v1" % hole.getsockname()[1]
    up = RawUpstream(answer_json)
    g = start_gate(builtin, base, extra="""
[provider.spare]
type = openai-compatible
base_url = %s
models = spare-*, raw-*
priority = 9
api_key = sk-raw
""" % up.base_url)
    with g:
        warm_curl(g, builtin, "spare-1")
        sockets = socket_count(g.proc.pid)
        # Alone: a timeout, in about the connect timeout.
        t0 = time.time()
        status, _, body = post(g, {"model": "raw/raw-1", "messages": []})
        took = time.time() - t0
        assert status == 504 and b"upstream_timeout" in body, (status, body)
        if not VALGRIND:
            assert 0.8 < took < 4, took
        # With a spare provider: failover after the timeout, the client gets its answer.
        t0 = time.time()
        status, headers, body = post(g, {"model": "raw-1", "messages": []})
        took = time.time() - t0
        assert status == 200 and headers["x-gate-provider"] == "spare", (status, headers, body)
        if not VALGRIND:
            assert 0.8 < took < 4, took
        # The abandoned connects leave no socket behind (the spare's connection may be kept alive).
        pid = g.proc.pid
        assert wait_until(lambda: socket_count(pid) <= sockets + 1, 3), (sockets, socket_count(pid))
    for f in fillers:
        f.close()
    hole.close()
    up.stop()


def streams(port, n, model, timeout):
    """n streaming requests at once on n connections; returns how many ended with [DONE] and a clean end."""
    body = json.dumps({"model": model, "stream": True, "messages": []}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    sel = selectors.DefaultSelector()
    bufs = {}
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE)
        bufs[s] = b""
    pending = n
    deadline = time.time() + timeout
    good = 0
    while pending and time.time() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                s.sendall(req)
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                d = b""
            if d:
                bufs[s] += d
                continue
            sel.unregister(s)
            s.close()
            pending -= 1
            b = bufs[s]
            if b.startswith(b"HTTP/1.1 200") and b.endswith(b"0\r\n\r\n") and b"data: [DONE]" in b:
                good += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return good


def thousand_streams_run(builtin, mock):
    # idle_connections below the streams, so that the pool's bound shows (the default 1024 keeps them all).
    g = start_gate(builtin, mock.base_url + "/v1", proxy_extra="idle_connections = 256",
                   server_lines="max_connections = 8192\nmax_connections_per_ip = 8192\n")
    with g:
        pid = g.proc.pid
        warm_curl(g, builtin, "mock-1")
        base_fds = fd_count(pid)
        model = "mock-many+chunks=20+pace_ms=50"
        n = 200 if VALGRIND else 1000
        good = streams(g.port, n, model, 60 * SLOW)
        assert good == n, (good, n)
        fds1, rss1 = fd_count(pid), g.rss_kib()
        good = streams(g.port, n, model, 60 * SLOW)
        assert good == n, (good, n)
        time.sleep(0.5)
        fds2, rss2 = fd_count(pid), g.rss_kib()
        print("     %d streams twice: fds %d -> %d -> %d, RSS %d -> %d KiB" %
              (n, base_fds, fds1, fds2, rss1, rss2))
        # The second thousand found what the first left (kept-alive upstream connections) and added nothing.
        # libcurl's connection cache keeps a timing-dependent share of its connections (768 then 885 was
        # seen): bounded by the streams, not by the first run; the leak check for it is the end below.
        if builtin:
            assert fds2 <= fds1 + 4, (fds1, fds2)
        else:
            assert fds2 <= base_fds + n + 16, (base_fds, fds1, fds2)
        if not VALGRIND:
            assert rss2 - rss1 < 16 * 1024, (rss1, rss2)
        # Kept-alive connections are bounded (idle_connections per address for gate's client) ...
        if builtin:
            assert fds2 - base_fds <= 256 + 4, (base_fds, fds2)
        # ... and go when the upstream does.
        mock.stop()
        if builtin:
            assert wait_until(lambda: fd_count(pid) <= base_fds, 5 * SLOW), (base_fds, fd_count(pid))
        status, _, body = post(g, {"model": "mock-1", "messages": []})
        assert status == 502, (status, body)
        assert wait_until(lambda: fd_count(pid) <= base_fds, 5 * SLOW), (base_fds, fd_count(pid))
    mock.stop()


@both
def thousand_streams_leave_nothing_behind(builtin):
    mock = Mock().start()
    try:
        thousand_streams_run(builtin, mock)
    finally:
        mock.stop()     # whatever happens (a failed assertion left it running)


finish()
