"""Keys and usage on the request path: gate keys required or not, revocation, model allow-lists, usage rows."""
import json
import os
import subprocess
import time

from gatetest import GATE, Gate, curl, finish, test
from mocktest import Mock

M = Mock(require_key="sk-up").start()
CONFIG = """
[auth]
loopback_without_key = %s
passthrough = never
[usage]
flush_interval = 100ms
[price.mock-priced]
input = 1.00
output = 2.00
[provider.mock]
type = openai-compatible
base_url = http://%s/v1
models = mock-*
api_key = sk-up
[provider.anth]
type = anthropic
base_url = %s
models = claude-*
api_key = sk-up
"""


def keys(g, *args):
    env = dict(os.environ, GATE_CONFIG=g.config_path, STATE_DIRECTORY=g.state)
    p = subprocess.run([GATE, "keys"] + list(args), capture_output=True, env=env, timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def chat(g, model, *headers, stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    args = []
    for h in headers:
        args += ["-H", h]
    return curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", g.url("/v1/chat/completions"),
                "--data-binary", json.dumps(body), *args)[1]


def rows(g, timeout=5):
    db = os.path.join(g.state, "gate.db")
    deadline = time.time() + timeout
    while True:
        p = subprocess.run(["sqlite3", "-json", db, "SELECT * FROM usage ORDER BY rowid"], capture_output=True)
        out = p.stdout.decode().strip()
        r = json.loads(out) if out else []
        if r or time.time() > deadline:
            return r
        time.sleep(0.1)


def new_key(g, name):
    """A new gate key, once the running gate has picked it up (it looks for changed keys every second)."""
    out = keys(g, "create", "--name", name)
    key = [w for w in out.split() if w.startswith("gk-")][0]
    time.sleep(1.5)
    return key


def rows_after(g, before, n, timeout=5):
    """The n usage rows written after the first `before`, once they are there."""
    deadline = time.time() + timeout
    while len(rows(g, timeout=0)) < before + n:
        assert time.time() < deadline, rows(g, timeout=0)
        time.sleep(0.1)
    return rows(g)[before:before + n]


g = Gate(config=CONFIG % ("false", M.address, M.base_url)).start()


@test
def key_required_when_loopback_is_not_trusted():
    assert chat(g, "mock-a") == "401"
    rc, out, _ = curl("-s", "-X", "POST", g.url("/v1/messages"), "-H", "anthropic-version: 2023-06-01",
                      "--data-binary", '{"model":"claude-x","max_tokens":5,"messages":[]}')
    j = json.loads(out)
    assert j["type"] == "error" and j["error"]["type"] == "authentication_error", j
    assert chat(g, "mock-a", "authorization: Bearer gk-not-a-real-key") == "401"
    # A provider key of the client's own is not enough either with passthrough = never.
    assert chat(g, "mock-a", "authorization: Bearer sk-up") == "401"


@test
def created_key_works_and_revocation_applies_without_restart():
    out = keys(g, "create", "--name", "alice", "--models", "mock-a*,mock-priced")
    key = [w for w in out.split() if w.startswith("gk-")][0]
    deadline = time.time() + 5
    while chat(g, "mock-a", "x-api-key: " + key) != "200":
        assert time.time() < deadline, "new key not accepted within 5 s"
        time.sleep(0.2)
    assert chat(g, "mock-a", "authorization: Bearer " + key) == "200"
    # The key is gate's: never forwarded upstream.
    assert key not in json.dumps(M.last_request()["headers"])
    # Its model allow-list.
    assert chat(g, "mock-b", "x-api-key: " + key) == "403"
    keys(g, "revoke", "alice")
    deadline = time.time() + 5
    while chat(g, "mock-a", "x-api-key: " + key) != "401":
        assert time.time() < deadline, "revoked key still accepted after 5 s"
        time.sleep(0.2)


@test
def usage_rows_with_tokens_and_cost():
    key = new_key(g, "bob")
    before = len(rows(g, timeout=0))
    assert chat(g, "mock-priced", "x-api-key: " + key) == "200"
    assert chat(g, "mock-priced+chunks=3", "x-api-key: " + key, stream=True) == "200"
    new = rows_after(g, before, 2)
    direct = json.loads(curl("-s", "-X", "POST", M.url("/v1/chat/completions"), "-H", "authorization: Bearer sk-up",
                             "--data-binary", json.dumps({"model": "mock-priced", "messages": [{"role": "user",
                                                                                                "content": "hi"}]}))[1])
    plain, streamed = new[0], new[1]
    assert plain["status"] == 200 and plain["provider"] == "mock" and plain["route"] == "/v1/chat/completions"
    assert plain["input_tokens"] == direct["usage"]["prompt_tokens"], (plain, direct["usage"])
    assert plain["output_tokens"] == direct["usage"]["completion_tokens"], (plain, direct["usage"])
    assert plain["cost_nanousd"] > 0 and plain["priced"] == 1, plain
    assert streamed["output_tokens"] == 3 and streamed["stream"] in (1, True), streamed
    assert plain["key_id"] == streamed["key_id"] and plain["key_id"] > 0


@test
def stream_overhead_is_gates_own_time():
    # overhead_us is gate's own share, up to the answer's head (as x-gate-overhead-us): a stream paced at
    # 100 ms a delta lasts 300+ ms, and none of that pacing is gate's.
    key = new_key(g, "pacer")
    before = len(rows(g, timeout=0))
    assert chat(g, "mock-paced+chunks=3+pace_ms=100", "x-api-key: " + key, stream=True) == "200"
    r = rows_after(g, before, 1)[0]
    assert r["total_us"] >= 300000, r
    assert r["overhead_us"] < 100000, r
    assert r["overhead_us"] <= r["ttfb_us"], r


@test
def rate_limit_and_budget():
    out = keys(g, "create", "--name", "carol", "--rpm", "2")
    key = [w for w in out.split() if w.startswith("gk-")][0]
    out = keys(g, "create", "--name", "dave", "--budget-usd", "0.000001", "--budget-period", "day")
    cheap = [w for w in out.split() if w.startswith("gk-")][0]
    time.sleep(1.5)
    codes = [chat(g, "mock-a", "x-api-key: " + key) for _ in range(3)]
    assert codes == ["200", "200", "429"], codes
    rc, out, _ = curl("-si", "-X", "POST", g.url("/v1/chat/completions"), "-H", "x-api-key: " + key,
                      "--data-binary", '{"model":"mock-a","messages":[]}')
    assert out.startswith("HTTP/1.1 429") and "retry-after: " in out.lower() and "rate_limit_exceeded" in out, out
    # The budget: the first request (priced) spends it, the next one is refused.
    assert chat(g, "mock-priced", "x-api-key: " + cheap) == "200"
    rc, out, _ = curl("-si", "-X", "POST", g.url("/v1/chat/completions"), "-H", "x-api-key: " + cheap,
                      "--data-binary", '{"model":"mock-priced","messages":[]}')
    assert out.startswith("HTTP/1.1 429") and "budget_exceeded" in out, out


g.stop()
g2 = Gate(config=CONFIG % ("true", M.address, M.base_url)).start()


@test
def loopback_trusted_by_default():
    assert chat(g2, "mock-a") == "200"


def parse_prometheus(text):
    """A strict reader of the text format: every sample line is NAME{LABELS} VALUE; HELP/TYPE precede use."""
    import re
    samples, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)', line)
        assert m, "bad sample line: %r" % line
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, "sample before its TYPE: %r" % line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(4))
    return samples, types


@test
def metrics_parse_and_move():
    def total(samples, name, **want):
        return sum(v for (n, labels), v in samples.items()
                   if n == name and all(dict(labels).get(k) == w for k, w in want.items()))
    rc, text, _ = curl("-s", g2.url("/metrics"))
    before, types = parse_prometheus(text)
    assert types["gate_requests_total"] == "counter"
    n0 = total(before, "gate_requests_total", model="mock-m", status="200")
    assert chat(g2, "mock-m") == "200" and chat(g2, "mock-m") == "200"
    rc, text, _ = curl("-s", g2.url("/metrics"))
    after, _ = parse_prometheus(text)
    assert total(after, "gate_requests_total", model="mock-m", status="200") == n0 + 2, text[:2000]
    assert total(after, "gate_request_duration_seconds_count", model="mock-m") >= 2


@test
def admin_api_keys_and_usage():
    # g2 trusts loopback for /admin ([auth] admin_loopback defaults to true).
    rc, out, _ = curl("-s", "-w", "\n%{http_code}", "-X", "POST", g2.url("/admin/keys"),
                      "--data-binary", json.dumps({"name": "erin", "models": ["mock-*"], "rpm": 100}))
    body, code = out.rsplit("\n", 1)
    assert code == "201", out
    created = json.loads(body)
    assert created["key"].startswith("gk-") and created["name"] == "erin" and created["rpm"] == 100, created
    listed = json.loads(curl("-s", g2.url("/admin/keys"))[1])
    assert [k for k in listed["data"] if k["name"] == "erin"], listed
    assert "key" not in json.dumps(listed["data"]) and created["key"] not in json.dumps(listed), listed
    assert chat(g2, "mock-e", "x-api-key: " + created["key"]) == "200"
    rc, out, _ = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                      g2.url("/admin/keys/erin"))
    assert out == "200", out
    assert chat(g2, "mock-e", "x-api-key: " + created["key"]) == "401"
    time.sleep(0.5)
    usage = json.loads(curl("-s", g2.url("/admin/usage?since=0"))[1])
    assert any(u["key_name"] == "erin" and u["requests"] >= 1 for u in usage["data"]), usage
    # Bad input is a clear 400; a non-admin key is refused.
    rc, out, _ = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", g2.url("/admin/keys"),
                      "--data-binary", '{"models": 5}')
    assert out == "400", out
    user = json.loads(curl("-s", "-X", "POST", g2.url("/admin/keys"),
                           "--data-binary", json.dumps({"name": "frank"}))[1])["key"]
    g4 = Gate(config=(CONFIG % ("true", M.address, M.base_url)).replace("passthrough = never",
                                                                     "passthrough = never\nadmin_loopback = false"))
    g4.state = g2.state
    g4.env["STATE_DIRECTORY"] = g2.state
    with g4:
        g4.start()
        rc, out, _ = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", g4.url("/admin/keys"))
        assert out == "403", out
        rc, out, _ = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-api-key: " + user,
                          g4.url("/admin/keys"))
        assert out == "403", out


@test
def kill_9_loses_at_most_the_queue_and_never_corrupts():
    import signal
    g3 = Gate(config=CONFIG % ("true", M.address, M.base_url))
    g3.start()
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-X", "POST", g3.url("/v1/chat/completions"),
                               "--data-binary", '{"model":"mock-k","messages":[]}'])
             for _ in range(60)]
    time.sleep(0.3)
    g3.proc.send_signal(signal.SIGKILL)
    g3.proc.wait()
    for p in procs:
        p.wait()
    db = os.path.join(g3.state, "gate.db")
    check = subprocess.run(["sqlite3", db, "PRAGMA integrity_check; SELECT count(*) FROM usage;"],
                           capture_output=True).stdout.decode().split()
    assert check[0] == "ok", check
    assert 0 <= int(check[1]) <= 60, check
    # It starts again on the same database, and keeps booking.
    n = len(g3.notify.messages)
    g3.start(wait_ready=False)
    g3.notify.wait_for("READY=1", after=n)
    assert chat(g3, "mock-k") == "200"
    g3.stop()


g2.stop()
M.stop()
finish()
