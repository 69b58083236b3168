"""HTTP engine end to end: HTTP/1.1 and h2c with curl and raw sockets, routing, bad input, limits."""
import os
import re
import socket
import subprocess
import time

from gatetest import Gate, curl, finish, raw, status_of, test

g = Gate(config="[server]\nheader_timeout = 2s\nidle_timeout = 3s\nmax_body_bytes = 64K\n"
                "max_connections_per_ip = 40\n").start()


@test
def health_http1():
    rc, out, err = curl("--http1.1", "-i", g.url("/health"))
    assert rc == 0, err
    assert out.startswith("HTTP/1.1 200"), out
    assert '"status":"running"' in out and '"version"' in out, out
    assert "content-type: application/json" in out.lower()
    # Every response, not only proxied ones, carries its id and gate's own latency.
    assert re.search(r"x-request-id: req_[0-9a-f]{24}\r\n", out), out
    assert re.search(r"x-gate-overhead-us: \d+\r\n", out), out
    rc, out, _ = curl("--http1.1", "-i", "-H", "x-request-id: abc-123", g.url("/nope"))
    assert "x-request-id: abc-123\r\n" in out, out
    rc, out, _ = curl("--http1.1", "-i", "-H", "x-request-id: bad id;<>", g.url("/nope"))
    assert "x-request-id: req_" in out, out


@test
def health_h2c_prior_knowledge():
    rc, out, err = curl("--http2-prior-knowledge", "-i", g.url("/health"))
    assert rc == 0, err
    assert out.startswith("HTTP/2 200"), out
    assert '"status":"running"' in out


@test
def not_found_is_json_404():
    rc, out, _ = curl("-i", g.url("/nope"))
    assert out.startswith("HTTP/1.1 404"), out
    assert '"error"' in out and '"type":"invalid_request_error"' in out and "/nope" in out


@test
def wrong_method_is_405_with_allow():
    rc, out, _ = curl("-i", "-X", "POST", "-d", "x", g.url("/health"))
    assert out.startswith("HTTP/1.1 405"), out
    assert "allow: get,head" in out.lower()


@test
def head_has_no_body():
    resp = raw(g.port, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(resp) == 200
    assert resp.endswith(b"\r\n\r\n"), resp


@test
def keep_alive_and_pipelining():
    reqs = b"".join(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" for _ in range(5))
    resp = raw(g.port, reqs + b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.count(b"HTTP/1.1 200") == 5, resp
    assert resp.rfind(b"HTTP/1.1 404") > resp.rfind(b"HTTP/1.1 200"), "responses out of order"


@test
def chunked_request_body():
    resp = raw(g.port, b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n")
    assert status_of(resp) == 404, resp


@test
def http10_closes():
    resp = raw(g.port, b"GET /health HTTP/1.0\r\n\r\n")
    assert status_of(resp) == 200, resp


def expect_status(data, code):
    resp = raw(g.port, data)
    assert status_of(resp) == code, (code, resp[:300])
    assert b'"error"' in resp, resp
    return resp


@test
def smuggling_cl_and_te():
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400)


@test
def smuggling_duplicate_content_length():
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400)


@test
def invalid_content_length():
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello", 400)


@test
def obsolete_line_folding():
    expect_status(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400)


@test
def bad_chunk_size():
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400)


@test
def missing_host_http11():
    expect_status(b"GET /health HTTP/1.1\r\n\r\n", 400)


@test
def body_too_large_by_content_length():
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n", 413)


@test
def body_too_large_chunked():
    chunk = b"8000\r\n" + b"a" * 0x8000 + b"\r\n"
    expect_status(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3, 413)


@test
def headers_too_large():
    expect_status(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431)


@test
def too_many_headers():
    hs = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    expect_status(b"GET /health HTTP/1.1\r\nHost: x\r\n" + hs + b"\r\n", 431)


@test
def slowloris_header_timeout():
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(6)
    t0 = time.time()
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert status_of(data) == 408, data
    assert time.time() - t0 < 5.5


@test
def idle_connection_closed():
    s = socket.create_connection(("127.0.0.1", g.port))
    s.settimeout(8)
    t0 = time.time()
    assert s.recv(10) == b""
    assert time.time() - t0 < 7.5
    s.close()


@test
def per_ip_connection_limit():
    socks = [socket.create_connection(("127.0.0.1", g.port)) for _ in range(40)]
    time.sleep(0.3)
    resp = raw(g.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(resp) == 503, resp
    for s in socks:
        s.close()
    time.sleep(0.3)
    rc, out, _ = curl("-i", g.url("/health"))
    assert out.startswith("HTTP/1.1 200"), out


@test
def h2_many_streams_one_connection():
    # nghttp2's client: 20 concurrent streams on one connection.
    p = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "20", g.url("/health")],
                       capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert "200 succeeded" in out, out


@test
def garbage_does_not_hurt_others():
    for junk in [b"\x00\x01\x02\x03" * 100, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 100,
                 b"GET / HTTP/9.9\r\n\r\n", b"\r\n\r\n\r\n"]:
        raw(g.port, junk, read_timeout=1)
    rc, out, _ = curl("-i", g.url("/health"))
    assert out.startswith("HTTP/1.1 200"), out


@test
def slow_reader_memory_bounded():
    # Pipeline many requests without reading: gate must stop reading input rather than queue output.
    s = socket.create_connection(("127.0.0.1", g.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before = g.rss_kib()
    req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
    s.setblocking(False)
    sent = 0
    t0 = time.time()
    while time.time() - t0 < 5:
        try:
            sent += s.send(req)
        except BlockingIOError:
            time.sleep(0.05)
    after = g.rss_kib()
    s.close()
    assert sent > 0
    assert after - before < 16 * 1024, (before, after, sent)


@test
def all_bodies_in_flight_bounded():
    # Two clients each start a 40K body; together they pass max_body_bytes_total = 64K.
    with Gate(config="[server]\nmax_body_bytes = 48K\nmax_body_bytes_total = 64K\n") as g2:
        g2.start()
        a = socket.create_connection(("127.0.0.1", g2.port))
        a.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n" + b"a" * 30000)
        time.sleep(0.3)
        resp = raw(g2.port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n" + b"b" * 40000)
        assert status_of(resp) == 503, resp
        a.sendall(b"a" * 10000)
        a.settimeout(5)
        assert status_of(a.recv(65536)) == 404
        a.close()
        # The budget is given back: a new body fits again.
        resp = raw(g2.port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\nConnection: close\r\n\r\n"
                   + b"c" * 40000)
        assert status_of(resp) == 404, resp


g.stop()
finish()
