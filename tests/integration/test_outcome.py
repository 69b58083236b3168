"""How a request ended, in its usage row and in gate's log: the column outcome says why a request did not
end normally (upstream_error, upstream_timeout, client_closed, shutdown; NULL for a complete answer), for
streams cut off mid-way (status 200) as for requests that never got an answer (502, 504, 499); gate usage
and /admin/usage count them; upstream failures are logged at warning level, at most one line per provider
per 5 s, the next one saying how many were held back."""
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time

from gatetest import GATE, Gate, curl, finish, free_port, test, wait_for
from mocktest import Mock, sse_events

UP = "sk-up"
M = Mock(require_key=UP).start()
DEAD, DOWN = free_port(), free_port()    # nothing listens there

CONFIG = """
[usage]
flush_interval = 100ms
[provider.mock]
type = openai-compatible
base_url = http://%(mock)s/v1
models = gpt-*
api_key = %(key)s
first_byte_timeout = 1s
idle_timeout = 1s
[provider.slow]
type = openai-compatible
base_url = http://%(mock)s/v1
models = slow-*
api_key = %(key)s
[provider.anth]
type = anthropic
base_url = %(anth)s
models = claude-*
api_key = %(key)s
[provider.dead]
type = openai-compatible
base_url = http://127.0.0.1:%(dead)d/v1
models = dead-*
api_key = %(key)s
[provider.down]
type = openai-compatible
base_url = http://127.0.0.1:%(down)d/v1
models = down-*
api_key = %(key)s
"""


def config(**extra):
    return CONFIG % dict({"mock": M.address, "anth": M.base_url, "key": UP, "dead": DEAD, "down": DOWN}, **extra)


g = Gate(config=config()).start()


def usage_rows(gate, model):
    db = os.path.join(gate.state, "gate.db")
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM usage WHERE model_requested = ?", (model,))]
    finally:
        c.close()


def usage_row(model, gate=None):
    """The one usage row of this (unique) client model, once it is written."""
    rows = wait_for("the usage row of " + model, lambda: usage_rows(gate or g, model), 10)
    assert len(rows) == 1, rows
    return rows[0]


def open_stream(path, body, headers=None):
    """A streaming request; returns (connection, response) with the head read."""
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=20)
    conn.request("POST", path, body=json.dumps(body),
                 headers=dict({"content-type": "application/json"}, **(headers or {})))
    return conn, conn.getresponse()


def read_broken(resp):
    """Reads a streamed body to its end; returns (bytes, whether it broke off instead of ending)."""
    try:
        return resp.read(), False
    except http.client.IncompleteRead as e:
        return e.partial, True


def chat_body(model, stream=True):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def log_lines(pattern):
    return [line for line in g.log().splitlines() if re.search(pattern, line)]


@test
def complete_stream_has_no_outcome():
    conn, resp = open_stream("/v1/chat/completions", chat_body("gpt-whole+chunks=3"))
    data, broken = read_broken(resp)
    conn.close()
    assert resp.status == 200 and not broken and data.rstrip().endswith(b"data: [DONE]"), data[-200:]
    row = usage_row("gpt-whole+chunks=3")
    assert row["status"] == 200 and row["stream"] == 1 and row["outcome"] is None, row
    assert row["output_tokens"] == 3, row


@test
def upstream_breaking_a_stream_is_upstream_error():
    model = "gpt-cut+chunks=20+pace_ms=5+reset_after=4"
    conn, resp = open_stream("/v1/chat/completions", chat_body(model))
    rid = resp.getheader("x-request-id")
    data, broken = read_broken(resp)
    conn.close()
    assert resp.status == 200 and broken and b"[DONE]" not in data, data[-200:]
    row = usage_row(model)
    # The status the client got stays 200; the outcome says the answer was cut off by the upstream. OpenAI
    # reports usage in the last chunk only, which never came: no tokens, none invented.
    assert row["status"] == 200 and row["stream"] == 1 and row["outcome"] == "upstream_error", row
    assert row["input_tokens"] == 0 and row["output_tokens"] == 0, row
    assert 0 < row["bytes_out"] <= len(data), (row, len(data))
    # gate's own client says what happened on the connection, with the address.
    lines = log_lines("Upstream mock failed for request %s: " % rid)
    assert len(lines) == 1 and "Connection closed before the end of the answer by %s" % M.address in lines[0], \
        lines


@test
def anthropic_stream_cut_keeps_the_input_tokens_it_reported():
    model = "claude-cut+chunks=20+pace_ms=5+reset_after=5"
    body = json.dumps({"model": model, "max_tokens": 100, "stream": True,
                       "messages": [{"role": "user", "content": "hello there"}]})
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=20)
    conn.request("POST", "/v1/messages", body=body,
                 headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
    resp = conn.getresponse()
    data, broken = read_broken(resp)
    conn.close()
    assert resp.status == 200 and broken, data[-200:]
    assert [e for e, _ in sse_events(data)][0] == "message_start", data[:300]
    row = usage_row(model)
    # message_start carried the input tokens (the mock counts body bytes / 4): kept, and the row says the
    # answer is incomplete.
    assert row["outcome"] == "upstream_error" and row["status"] == 200, row
    assert row["input_tokens"] == len(body) // 4, (row, len(body))


@test
def translated_stream_cut_is_upstream_error():
    # An OpenAI client on an Anthropic upstream: the translator gets no final event.
    model = "claude-tcut+chunks=20+pace_ms=5+reset_after=5"
    conn, resp = open_stream("/v1/chat/completions", chat_body(model))
    data, broken = read_broken(resp)
    conn.close()
    assert resp.status == 200 and broken, data[-300:]
    row = usage_row(model)
    assert row["outcome"] == "upstream_error" and row["status"] == 200 and row["dialect_out"] == "anthropic", row


@test
def stalled_stream_is_upstream_timeout():
    model = "gpt-stall+chunks=10+stall_after=2"
    t0 = time.time()
    conn, resp = open_stream("/v1/chat/completions", chat_body(model))
    rid = resp.getheader("x-request-id")
    data, broken = read_broken(resp)
    conn.close()
    assert broken and 0.8 < time.time() - t0 < 5, (broken, time.time() - t0)
    row = usage_row(model)
    assert row["status"] == 200 and row["outcome"] == "upstream_timeout", row
    lines = log_lines("Upstream mock (failed for request %s|: )" % rid)
    assert any("no data for 1s" in line for line in lines), lines


@test
def no_first_byte_in_time_is_504_upstream_timeout():
    model = "gpt-late+ttfb_ms=3000"
    rc, out, _ = curl("-s", "-w", "\n%{http_code}", "-X", "POST", g.url("/v1/chat/completions"),
                      "-H", "content-type: application/json", "--data-binary", json.dumps(chat_body(model, False)))
    assert out.endswith("\n504"), out
    row = usage_row(model)
    assert row["status"] == 504 and row["outcome"] == "upstream_timeout" and row["ttfb_us"] is None, row


@test
def refused_connection_is_502_upstream_error():
    model = "dead-x"
    rc, out, _ = curl("-s", "-w", "\n%{http_code}", "-X", "POST", g.url("/v1/chat/completions"),
                      "-H", "content-type: application/json", "--data-binary", json.dumps(chat_body(model, False)))
    assert out.endswith("\n502"), out
    # The client's message stays generic: curl's and the system's detail is for the log only.
    assert "refused" not in out.lower() and "127.0.0.1" not in out, out
    row = usage_row(model)
    assert row["status"] == 502 and row["outcome"] == "upstream_error" and row["provider"] == "dead", row


def raw_request(port, model, stream=True, deltas=0):
    """A chat completion on a socket of its own (so that the test can drop it), read until `deltas` data
    lines came; returns the socket."""
    body = json.dumps(chat_body(model, stream)).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data:") < deltas:
        d = s.recv(4096)
        assert d, got
        got += d
    return s


@test
def client_closing_mid_stream_is_client_closed():
    model = "gpt-leave+chunks=100+pace_ms=50"
    s = raw_request(g.port, model, deltas=3)
    s.close()
    row = usage_row(model)
    assert row["status"] == 200 and row["stream"] == 1 and row["outcome"] == "client_closed", row
    rid = [r for r in M.requests() if r.get("model") == model][0]["id"]
    assert M.wait_event(rid)["event"] == "aborted", M.events(rid)
    # Not the upstream's failure: nothing about it in the log at warning level.
    assert not log_lines(r"^<4>Upstream mock failed for request .*: Failed writing"), g.log()[-2000:]


@test
def client_closing_before_the_answer_is_499_client_closed():
    model = "slow-leave+ttfb_ms=1500"
    s = raw_request(g.port, model, stream=False)
    wait_for("the request upstream", lambda: [r for r in M.requests() if r.get("model") == model])
    s.close()
    row = usage_row(model)
    assert row["status"] == 499 and row["outcome"] == "client_closed" and row["ttfb_us"] is None, row


def env_of(gate):
    e = dict(os.environ, GATE_CONFIG=gate.config_path, STATE_DIRECTORY=gate.state, LANG="C", LC_ALL="C")
    e.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    return e


@test
def usage_and_admin_usage_count_the_outcomes():
    db = os.path.join(g.state, "gate.db")
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    want = dict(c.execute("SELECT COALESCE(outcome, 'complete'), COUNT(*) FROM usage GROUP BY 1").fetchall())
    c.close()
    assert want.get("upstream_error", 0) >= 4 and want.get("client_closed", 0) >= 2, want
    assert want.get("upstream_timeout", 0) >= 2 and want.get("complete", 0) >= 1, want

    p = subprocess.run([GATE, "usage", "--json"], capture_output=True, env=env_of(g), timeout=20)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    total = j["total"]
    for word in ("upstream_error", "upstream_timeout", "client_closed", "shutdown"):
        assert total["outcomes"][word] == want.get(word, 0), (word, total, want)
        assert sum(r["outcomes"][word] for r in j["rows"]) == want.get(word, 0), (word, j["rows"])
    assert total["incomplete"] == sum(v for k, v in want.items() if k != "complete"), (total, want)
    assert total["requests"] == sum(want.values()), (total, want)
    cut = [r for r in j["rows"] if r["model"].startswith("gpt-cut")][0]
    assert cut["incomplete"] == 1 and cut["errors"] == 0 and cut["outcomes"]["upstream_error"] == 1, cut

    p = subprocess.run([GATE, "usage"], capture_output=True, env=env_of(g), timeout=20)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    head = out.splitlines()[0].split()
    assert head[head.index("ERRORS") + 1] == "INCOMPLETE", out
    total_line = [line for line in out.splitlines() if line.startswith("TOTAL")][0].split()
    assert int(total_line[3]) == total["incomplete"], (total_line, total)
    assert "INCOMPLETE: requests that did not end normally" in out, out
    assert re.search(r"^  upstream_error +%d$" % want["upstream_error"], out, re.M), out

    rc, out, _ = curl("-s", g.url("/admin/usage"))
    data = json.loads(out)["data"]
    assert sum(r["incomplete"] for r in data) == total["incomplete"], data
    assert sum(r["outcomes"]["upstream_timeout"] for r in data) == want["upstream_timeout"], data


@test
def upstream_failures_are_warnings_one_per_provider_per_interval():
    n = 40
    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=20)
    t0 = time.time()
    rids = []
    for i in range(n):
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body("down-%d" % i, False)),
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 502 and b"refused" not in body.lower(), (r.status, body)
        rids.append(r.getheader("x-request-id"))
    assert time.time() - t0 < 4, "too slow to stay in one interval: %.1f s" % (time.time() - t0)
    warn = log_lines(r"^<4>Upstream down failed for request ")
    debug = log_lines(r"^<7>Upstream down failed for request ")
    # One warning, with the provider, the request and the detailed reason; the others at debug level only.
    assert len(warn) == 1 and rids[0] in warn[0], warn
    assert "(Failed to connect to 127.0.0.1:%d: Connection refused)" % DOWN in warn[0], \
        warn
    assert len(debug) == n - 1, len(debug)
    # After the interval, the next failure is a warning again and says how many were held back.
    time.sleep(max(0, t0 + 5.3 - time.time()))
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body("down-last", False)),
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 502
    warn = log_lines(r"^<4>Upstream down failed for request ")
    assert len(warn) == 2 and warn[1].endswith("(%d similar messages suppressed)" % (n - 1)), warn
    # Every one of them has its usage row.
    wait_for("all usage rows", lambda: len(usage_rows(g, "down-last")) == 1)
    for i in range(n):
        assert usage_rows(g, "down-%d" % i)[0]["outcome"] == "upstream_error"


@test
def streams_closed_at_the_end_of_a_drain_are_shutdown():
    h = Gate(config=config() + "[server]\ndrain_timeout = 1s\n").start()
    model = "gpt-drain+chunks=200+pace_ms=50"
    s = raw_request(h.port, model, deltas=2)
    h.signal(signal.SIGTERM)
    assert h.wait(10) == 0
    s.close()
    h.stop()
    row = usage_row(model, h)
    assert row["status"] == 200 and row["outcome"] == "shutdown", row


g.stop()
M.stop()
finish()
