"""The gateway end to end: gate in front of two mock upstreams: forwarding, streaming byte-faithfully,
header hygiene, failover and retries, timeouts, cancellation, backpressure, limits, reload under load."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from gatetest import Gate, curl, finish, raw, status_of, test
from mocktest import Mock, sse_events

A = Mock(require_key="sk-a").start()
B = Mock(require_key="sk-b").start()


def config(extra=""):
    return """
[provider.dead]
type = openai-compatible
base_url = http://127.0.0.1:1/v1
models = gpt-*
priority = 0
api_key = sk-dead
connect_timeout = 1s

[provider.mocka]
type = openai-compatible
base_url = http://%s/v1/
models = gpt-*, mock-*
priority = 1
api_key = sk-a
first_byte_timeout = 2s
idle_timeout = 2s

[provider.mockb]
type = openai-compatible
base_url = http://%s/v1
models = gpt-*, mock-*
priority = 2
api_key = sk-b
header.X-Gate-Test = b-side

[provider.anth]
type = anthropic
base_url = %s
models = claude-*
api_key = sk-a
%s""" % (A.address, B.address, A.base_url, extra)


g = Gate(config=config()).start()


def post(path, body, *args, timeout=20):
    return curl("-i", "-X", "POST", g.url(path), "-H", "content-type: application/json",
                "--data-binary", json.dumps(body), *args, timeout=timeout)


def split(resp):
    head, _, body = resp.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(head.split(" ")[1]), headers, body


def normalize(text):
    # Ids and timestamps differ between two answers; everything else must be identical.
    text = re.sub(r'"(chatcmpl|msg|resp|cmpl)[-_a-z]*mock[-_a-z]*\d+"', '"ID"', text)
    text = re.sub(r'"id":"[^"]*"', '"id":"ID"', text)
    return re.sub(r'"created(_at)?":\s*\d+', '"created":0', text)


@test
def chat_completion_forwarded():
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    rc, out, err = post("/v1/chat/completions", body, "-H", "authorization: Bearer sk-clients-own-key",
                        "-H", "x-request-id: test-req-1", "-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        "-H", "openai-organization: org-1", "-H", "connection: keep-alive, x-secret-hop")
    status, headers, text = split(out)
    assert status == 200, out
    assert headers["x-gate-provider"] == "mocka", headers
    assert headers["x-request-id"] == "test-req-1"
    assert int(headers["x-gate-overhead-us"]) < 1000000
    resp = json.loads(text)
    assert resp["object"] == "chat.completion" and resp["choices"][0]["message"]["role"] == "assistant"
    req = A.last_request()
    # The exact bytes the client sent, the provider's key, no gate key, hop-by-hop headers dropped.
    assert req["body"] == json.dumps(body), req["body"]
    assert req["headers"]["authorization"] == "Bearer sk-a"
    assert req["headers"]["x-request-id"] == "test-req-1"
    assert req["headers"]["traceparent"].startswith("00-0af7")
    assert req["headers"]["openai-organization"] == "org-1"
    assert "x-secret-hop" not in req["headers"] and "sk-clients-own-key" not in json.dumps(req["headers"])
    assert req["path"] == "/v1/chat/completions", req["path"]


@test
def explicit_provider_prefix_rewrites_model():
    body = {"model": "mockb/mock-2", "messages": [], "temperature": 0.5}
    rc, out, _ = post("/v1/chat/completions", body)
    status, headers, text = split(out)
    assert status == 200 and headers["x-gate-provider"] == "mockb", out
    req = B.last_request()
    assert json.loads(req["body"]) == {"model": "mock-2", "messages": [], "temperature": 0.5}
    assert req["headers"]["x-gate-test"] == "b-side"


@test
def stream_is_byte_faithful():
    body = {"model": "mock-s+chunks=8+pace_ms=5", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "x"}]}
    rc, via_gate, err = curl("-sN", "-X", "POST", g.url("/v1/chat/completions"), "--data-binary", json.dumps(body))
    assert rc == 0, err
    rc, direct, err = curl("-sN", "-X", "POST", A.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-a",
                           "--data-binary", json.dumps(body))
    assert rc == 0, err
    assert normalize(via_gate) == normalize(direct), (via_gate[:500], direct[:500])
    events = sse_events(via_gate)
    assert events[-1][1] == "[DONE]" and len(events) >= 10


@test
def anthropic_stream_sequence():
    body = {"model": "claude-test+chunks=4", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    rc, out, err = curl("-sN", "-X", "POST", g.url("/v1/messages"), "-H", "anthropic-version: 2023-06-01",
                        "-H", "anthropic-beta: tools-2024", "--data-binary", json.dumps(body))
    assert rc == 0, err
    names = [e[0] for e in sse_events(out) if e[0] != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    req = A.last_request()
    assert req["headers"]["x-api-key"] == "sk-a" and req["headers"]["anthropic-version"] == "2023-06-01"
    assert req["headers"]["anthropic-beta"] == "tools-2024"
    assert "authorization" not in req["headers"]


@test
def connect_error_fails_over():
    # "gpt-*" goes to the dead provider first (connection refused), then on to mocka.
    rc, out, _ = post("/v1/chat/completions", {"model": "gpt-4o", "messages": []})
    status, headers, _ = split(out)
    assert status == 200 and headers["x-gate-provider"] == "mocka", out


@test
def retryable_status_fails_over_invisibly():
    # fail_times counts per mock process: use up mockb's one failure first, so only mocka fails via gate.
    curl("-s", "-X", "POST", B.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-b",
         "--data-binary", json.dumps({"model": "mock-fo+fail_times=1+error=503", "messages": []}))
    n_b = len(B.requests())
    rc, out, _ = post("/v1/chat/completions", {"model": "mock-fo+fail_times=1+error=503", "messages": []})
    status, headers, text = split(out)
    assert status == 200 and headers["x-gate-provider"] == "mockb", out
    assert len(B.requests()) == n_b + 1


@test
def retry_after_same_provider():
    t0 = time.time()
    rc, out, _ = post("/v1/chat/completions", {"model": "mocka/mock-ra+fail_times=1+error=429+retry_after=1",
                                               "messages": []})
    status, headers, _ = split(out)
    assert status == 200, out
    assert time.time() - t0 >= 0.9
    assert sum(1 for r in A.requests() if r["model"] == "mock-ra+fail_times=1+error=429+retry_after=1") == 2


@test
def upstream_error_keeps_status_and_body():
    body = {"model": "mocka/mock-e+error=400", "messages": []}
    rc, out, _ = post("/v1/chat/completions", body)
    status, headers, text = split(out)
    assert status == 400, out
    rc, direct, _ = curl("-s", "-X", "POST", A.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-a",
                         "--data-binary", json.dumps({"model": "mock-e+error=400", "messages": []}))
    assert text == direct, (text, direct)


@test
def out_of_retries_gives_the_upstreams_answer():
    rc, out, _ = post("/v1/chat/completions", {"model": "mock-529+error=503", "messages": []})
    status, headers, text = split(out)
    assert status == 503 and json.loads(text)["error"], out


@test
def failure_after_first_byte_is_not_retried():
    n_a, n_b = len(A.requests()), len(B.requests())
    rc, out, err = curl("-sN", "-X", "POST", g.url("/v1/chat/completions"),
                        "--data-binary", json.dumps({"model": "mock-r+chunks=10+reset_after=3", "stream": True,
                                                     "messages": []}))
    assert rc != 0, (rc, out)          # the client sees a broken transfer, not a short "complete" one
    assert "data:" in out
    assert len(A.requests()) == n_a + 1 and len(B.requests()) == n_b


@test
def first_byte_timeout_is_504():
    t0 = time.time()
    rc, out, _ = post("/v1/chat/completions", {"model": "mocka/mock-t+ttfb_ms=6000", "messages": []})
    status, headers, text = split(out)
    assert status == 504, out
    assert 1.5 < time.time() - t0 < 5
    assert json.loads(text)["error"]["code"] == "upstream_timeout"


@test
def idle_timeout_breaks_stalled_stream():
    rc, out, err = curl("-sN", "-X", "POST", g.url("/v1/chat/completions"),
                        "--data-binary", json.dumps({"model": "mocka/mock-st+chunks=10+stall_after=2",
                                                     "stream": True, "messages": []}), timeout=15)
    assert rc != 0 and "data:" in out, (rc, out)


@test
def idle_timeout_spares_slow_but_steady_stream():
    # 8 chunks 400 ms apart: longer than idle_timeout (2 s) in all, every gap well under it. The idle timer
    # is armed once and re-checked when it fires, so this must not be cut.
    rc, out, err = curl("-sN", "-X", "POST", g.url("/v1/chat/completions"),
                        "--data-binary", json.dumps({"model": "mocka/mock-steady+chunks=8+pace_ms=400",
                                                     "stream": True, "messages": []}), timeout=15)
    assert rc == 0 and out.rstrip().endswith("data: [DONE]"), (rc, out, err)


@test
def client_abort_cancels_upstream():
    body = json.dumps({"model": "mocka/mock-ab+chunks=100+pace_ms=100", "stream": True, "messages": []}).encode()
    s = socket.create_connection(("127.0.0.1", g.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while got.count(b"data:") < 2:
        got += s.recv(4096)
    s.close()
    req = [r for r in A.requests() if r["model"].startswith("mock-ab")][-1]
    ev = A.wait_event(req["id"], timeout=5)
    assert ev["event"] == "aborted", ev


@test
def h2c_client_stream():
    rc, out, err = curl("-sN", "--http2-prior-knowledge", "-X", "POST", g.url("/v1/chat/completions"),
                        "--data-binary", json.dumps({"model": "mock-h2+chunks=5", "stream": True, "messages": []}))
    assert rc == 0 and out.rstrip().endswith("data: [DONE]"), (rc, out, err)


@test
def slow_reader_bounded_memory():
    # 10 MB streamed as fast as the mock can; the client reads slowly. gate must pause the upstream.
    body = json.dumps({"model": "mocka/mock-big+chunks=2000+chunk_bytes=5000", "stream": True,
                       "messages": []}).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", g.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    before = g.rss_kib()
    got = 0
    peak = before
    t0 = time.time()
    while time.time() - t0 < 4:
        got += len(s.recv(2048))
        time.sleep(0.01)
        peak = max(peak, g.rss_kib())
    s.close()
    assert got > 0
    assert peak - before < 20 * 1024, (before, peak)


@test
def concurrency_limit_503():
    g2 = Gate(config=config().replace("idle_timeout = 2s", "idle_timeout = 2s\nmax_concurrent = 1"))
    with g2:
        g2.start()
        body = json.dumps({"model": "mocka/mock-c+chunks=10+pace_ms=100", "stream": True, "messages": []})
        p = subprocess.Popen(["curl", "-sN", "-X", "POST", g2.url("/v1/chat/completions"), "--data-binary", body],
                             stdout=subprocess.PIPE)
        time.sleep(0.4)
        rc, out, _ = curl("-i", "-X", "POST", g2.url("/v1/chat/completions"), "--data-binary", body)
        p.wait(10)
        assert out.startswith("HTTP/1.1 503") and "retry-after: 1" in out.lower(), out


@test
def unknown_model_404_in_dialect():
    rc, out, _ = post("/v1/chat/completions", {"model": "nonexistent-model", "messages": []})
    status, _, text = split(out)
    assert status == 404 and json.loads(text)["error"]["code"] == "model_not_found", out
    rc, out, _ = curl("-i", "-X", "POST", g.url("/v1/messages"), "-H", "anthropic-version: 2023-06-01",
                      "--data-binary", json.dumps({"model": "nonexistent", "max_tokens": 1, "messages": []}))
    status, _, text = split(out)
    j = json.loads(text)
    assert status == 404 and j["type"] == "error" and j["error"]["type"] == "not_found_error", out


@test
def bad_bodies_400():
    for data, code in [("{not json", "invalid_json"), ("[1,2]", "invalid_json"), ('{"messages":[]}', "missing_model"),
                       ('{"model":5}', "missing_model"), ('{"model":"mock-1","stream":"yes"}', "invalid_type"),
                       ('{"model":"a","model":"b"}', "invalid_json")]:
        rc, out, _ = curl("-i", "-X", "POST", g.url("/v1/chat/completions"), "--data-binary", data)
        status, _, text = split(out)
        assert status == 400 and json.loads(text)["error"]["code"] == code, (data, out)


@test
def models_list_both_shapes():
    rc, out, _ = curl("-s", g.url("/v1/models"))
    j = json.loads(out)
    ids = [m["id"] for m in j["data"]]
    assert j["object"] == "list" and ids == [], ids  # only patterns configured: nothing exact to list
    g2 = Gate(config=config().replace("models = claude-*", "models = claude-test-1, claude-*"))
    with g2:
        g2.start()
        j = json.loads(curl("-s", g2.url("/v1/models"))[1])
        assert [m["id"] for m in j["data"]] == ["claude-test-1"] and j["data"][0]["owned_by"] == "anth", j
        j = json.loads(curl("-s", "-H", "anthropic-version: 2023-06-01", g2.url("/v1/models"))[1])
        assert j["data"][0]["type"] == "model" and j["first_id"] == "claude-test-1" and j["has_more"] is False, j
        j = json.loads(curl("-s", g2.url("/v1/models/anth/claude-test-1"))[1])
        assert j["id"] == "anth/claude-test-1", j
        rc, out, _ = curl("-i", g2.url("/v1/models/nope"))
        assert status_of(out.encode()) == 404


@test
def models_listed_by_the_provider():
    g2 = Gate(config=config().replace("header.X-Gate-Test = b-side", "header.X-Gate-Test = b-side\nlist_models = true\n"
                                      "models_ttl = 1h"))
    with g2:
        g2.start()
        n = len([r for r in B.requests() if r["path"] == "/v1/models"])
        j = json.loads(curl("-s", g2.url("/v1/models"))[1])
        listed = [m["id"] for m in j["data"] if m["owned_by"] == "mockb"]
        direct = json.loads(curl("-s", "-H", "authorization: Bearer sk-b", B.url("/v1/models"))[1])
        assert listed == [m["id"] for m in direct["data"]] and listed, (listed, direct)
        gate_asked = [r for r in B.requests() if r["path"] == "/v1/models"][n]
        assert gate_asked["headers"]["authorization"] == "Bearer sk-b", gate_asked
        # Cached for models_ttl: a second listing does not ask again (+1 is the direct check above).
        curl("-s", g2.url("/v1/models"))
        assert len([r for r in B.requests() if r["path"] == "/v1/models"]) == n + 2


@test
def passthrough_of_client_key():
    g2 = Gate(config="[provider.pt]\ntype = openai-compatible\nbase_url = http://%s/v1\nmodels = *\n" % A.address)
    with g2:
        g2.start()
        rc, out, _ = curl("-i", "-X", "POST", g2.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-a",
                          "--data-binary", '{"model":"mock-p","messages":[]}')
        assert out.startswith("HTTP/1.1 200"), out
        assert A.last_request()["headers"]["authorization"] == "Bearer sk-a"
        rc, out, _ = curl("-i", "-X", "POST", g2.url("/v1/chat/completions"),
                          "--data-binary", '{"model":"mock-p","messages":[]}')
        assert out.startswith("HTTP/1.1 401") and "api_key" in out, out
    g3 = Gate(config="[auth]\npassthrough = never\n[provider.pt]\ntype = openai-compatible\n"
                     "base_url = http://%s/v1\nmodels = *\n" % A.address)
    with g3:
        g3.start()
        rc, out, _ = curl("-i", "-X", "POST", g3.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-a",
                          "--data-binary", '{"model":"mock-p","messages":[]}')
        assert out.startswith("HTTP/1.1 401"), out


@test
def reload_keeps_live_stream():
    body = json.dumps({"model": "mocka/mock-rl+chunks=15+pace_ms=100", "stream": True, "messages": []})
    p = subprocess.Popen(["curl", "-sN", "-X", "POST", g.url("/v1/chat/completions"), "--data-binary", body],
                         stdout=subprocess.PIPE)
    time.sleep(0.4)
    g.write_config("[server]\nbind = 127.0.0.1:%d\n" % g.port + config().replace("priority = 2", "priority = 3"))
    n = len(g.notify.messages)
    g.signal(signal.SIGHUP)
    g.notify.wait_for("READY=1", after=n)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0 and out.decode().rstrip().endswith("data: [DONE]"), out[-300:]


g.stop()
A.stop()
B.stop()
finish()
