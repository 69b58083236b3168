"""Accounting beyond test_accounting: rate limits hit and recovered in both dialects, a failing database
(locked by another process; full, on a tiny tmpfs in a mount namespace of the daemon's own) that never
stops the serving and only counts drops, with flat memory, usage rows after the official SDKs' calls
matching the usage the mock reported, and [usage] retention."""
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

from gatetest import GATE, Gate, curl, finish, test, wait_for
from mocktest import Mock
from sdktest import NODE_PROBLEM, node

UP = "sk-up"
M = Mock(require_key=UP).start()
PROVIDERS = """
[provider.mock]
type = openai-compatible
base_url = http://%s/v1
models = mock-*
api_key = %s
[provider.anth]
type = anthropic
base_url = %s
models = claude-*
api_key = %s
""" % (M.address, UP, M.base_url, UP)
# USD per million tokens; in nano-USD per token that is the price times 1000.
PRICES = """
[price.mock-sdk*]
input = 2.50
output = 10.00
cache_read = 1.25
cache_write = 3.75
[price.claude-sdk*]
input = 3.00
output = 15.00
cache_read = 0.30
cache_write = 3.75
"""


def env_of(g, **extra):
    e = dict(os.environ, GATE_CONFIG=g.config_path, STATE_DIRECTORY=g.state, LANG="C", LC_ALL="C")
    e.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    e.update(extra)
    return e


def keys(g, *args):
    p = subprocess.run([GATE, "keys"] + list(args), capture_output=True, env=env_of(g), timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def new_key(g, name, *args):
    """Creates a key and waits until the daemon has it (there is no bus here: its poll, within a second)."""
    out = keys(g, "create", "--name", name, *args)
    key = out.strip()
    assert key.startswith("gk-"), out
    wait_for("the daemon to load key " + name,
             lambda: name in [k["name"] for k in json.loads(curl("-s", g.url("/admin/keys"))[1])["data"]])
    return key


class Client:
    """One keep-alive HTTP/1.1 connection to gate: many requests quickly, without a curl per request."""

    def __init__(self, g):
        self.conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=20)

    def post(self, path, body, headers):
        self.conn.request("POST", path, body=json.dumps(body), headers=dict(headers,
                                                                           **{"content-type": "application/json"}))
        r = self.conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def openai(self, key, model, **extra):
        body = dict({"model": model, "messages": [{"role": "user", "content": "hi"}]}, **extra)
        return self.post("/v1/chat/completions", body, {"authorization": "Bearer " + key} if key else {})

    def anthropic(self, key, model, **extra):
        body = dict({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}, **extra)
        return self.post("/v1/messages", body, {"x-api-key": key, "anthropic-version": "2023-06-01"})

    def close(self):
        self.conn.close()


def metrics(g):
    rc, text, _ = curl("-s", g.url("/metrics"))
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(gate_usage_queue_\w+) (\S+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def db_rows(g, where="1", db=None):
    c = sqlite3.connect(db or os.path.join(g.state, "gate.db"), timeout=10)
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM usage WHERE %s ORDER BY id" % where)]
    finally:
        c.close()


# ---- limits hit and recovered ----

g = Gate(config="[auth]\nloopback_without_key = false\npassthrough = never\n[usage]\nflush_interval = 100ms\n" +
         PROVIDERS + PRICES).start()


def limit_hit_then_recovered(send, dialect, kind):
    """Sends until refused; checks the refusal (429, retry-after, the limit named, the dialect's shape),
    waits retry-after seconds, and checks the same key is served again."""
    for n in range(1, 400):
        status, headers, body = send()
        if status != 200:
            break
        assert status == 200, (status, body)
    else:
        raise AssertionError("%s limit never reached" % kind)
    assert status == 429, (status, body)
    after = int(headers["retry-after"])
    assert 1 <= after <= 2, headers
    j = json.loads(body)
    named = {"rpm": "requests per minute", "tpm": "tokens per minute"}[kind]
    if dialect == "openai":
        assert j["error"]["code"] == "rate_limit_exceeded" and named in j["error"]["message"], j
    else:
        assert j["type"] == "error" and j["error"]["type"] == "rate_limit_error", j
        assert named in j["error"]["message"], j
    # Refusals take nothing from the bucket: after retry-after the key is served.
    time.sleep(after)
    status, _, body = send()
    assert status == 200, (kind, dialect, status, body)
    return n


@test
def rpm_limit_hit_and_recovered_in_both_dialects():
    c = Client(g)
    try:
        # 60 a minute: one more each second, so a refusal says retry-after 1.
        key = new_key(g, "rpm", "--rpm", "60")
        n = limit_hit_then_recovered(lambda: c.openai(key, "mock-rpm"), "openai", "rpm")
        assert n >= 60, n                     # the bucket starts full
        key = new_key(g, "rpm-anthropic", "--rpm", "60")
        limit_hit_then_recovered(lambda: c.anthropic(key, "claude-rpm"), "anthropic", "rpm")
    finally:
        c.close()


def body_of(dialect, model, max_tokens):
    """The body Client sends, for counting what gate pre-charges (body bytes / 4 + max_tokens)."""
    if dialect == "openai":
        return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens})
    return json.dumps({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})


@test
def tpm_limit_hit_and_recovered_in_both_dialects():
    c = Client(g)
    try:
        for dialect, model, send in (("openai", "mock-tpm", c.openai), ("anthropic", "claude-tpm", c.anthropic)):
            # 600 tokens a minute, 10 a second. A first call uses nearly all of them (the mock's output is
            # its chunks, its input the body bytes / 4), leaving about 12 fewer than a small call needs:
            # that one waits 1-2 s.
            key = new_key(g, "tpm-" + dialect, "--tpm", "600")
            need = len(body_of(dialect, model, 5)) // 4 + 5
            big_model = model + "+chunks=%d"
            chunks = 600 - need + 12 - len(body_of(dialect, big_model % 500, 600)) // 4
            status, _, body = send(key, big_model % chunks, max_tokens=600)
            assert status == 200, body
            u = json.loads(body)["usage"]
            used = u["prompt_tokens"] + u["completion_tokens"] if dialect == "openai" else \
                u["input_tokens"] + u["output_tokens"]
            assert 1 <= need - (600 - used) <= 19, (need, used)
            limit_hit_then_recovered(lambda: send(key, model, max_tokens=5), dialect, "tpm")
    finally:
        c.close()


@test
def limit_changes_apply_to_the_running_daemon():
    # Without a bus here, the daemon's poll applies `keys update` within a second (test_dbus checks the
    # at-once path with ReloadKeys); no restart either way.
    c = Client(g)
    try:
        key = new_key(g, "changing", "--rpm", "1")
        wait_for("the new key", lambda: c.openai(key, "mock-chg")[0] == 200, timeout=5)
        assert c.openai(key, "mock-chg")[0] == 429
        keys(g, "update", "changing", "--rpm", "120", "--models", "mock-chg*")
        wait_for("the raised limit", lambda: c.openai(key, "mock-chg")[0] == 200, timeout=3)
        status, _, body = c.openai(key, "mock-other")
        assert status == 403 and b"model_not_allowed" in body, (status, body)
        keys(g, "update", "changing", "--rpm", "none", "--models", "*")
        wait_for("the removed limit", lambda: c.openai(key, "mock-other")[0] == 200, timeout=3)
        assert all(c.openai(key, "mock-other")[0] == 200 for _ in range(150))
    finally:
        c.close()


# ---- the admin API's update ----

def admin(method, path, body=None):
    args = ["-s", "-w", "\n%{http_code}", "-X", method, g.url(path)]
    if body is not None:
        args += ["--data-binary", body if isinstance(body, str) else json.dumps(body)]
    out = curl(*args)[1]
    text, code = out.rsplit("\n", 1)
    return int(code), json.loads(text) if text.startswith("{") else text


@test
def admin_patch_updates_a_key_at_once():
    c = Client(g)
    try:
        key = new_key(g, "patchme", "--rpm", "1")
        assert c.openai(key, "mock-p")[0] == 200 and c.openai(key, "mock-p")[0] == 429
        code, j = admin("PATCH", "/admin/keys/patchme", {"rpm": 100, "models": ["mock-p*"]})
        assert code == 200 and j["rpm"] == 100 and j["models"] == ["mock-p*"] and "key" not in j, (code, j)
        # In force for the next request: the admin API reloads the daemon's keys itself.
        assert c.openai(key, "mock-p")[0] == 200
        assert c.openai(key, "mock-q")[0] == 403
        expires = int(time.time()) + 3600
        code, j = admin("PATCH", "/admin/keys/%d" % j["id"], {"rpm": None, "models": None, "budget_usd": 1.5,
                                                             "budget_period": "day", "expires": expires,
                                                             "admin": True, "name": "patched"})
        assert code == 200, j
        assert (j["name"], j["rpm"], j["models"], j["budget_usd"], j["budget_period"], j["expires"], j["admin"]) == \
            ("patched", 0, None, 1.5, "day", expires, True), j
        assert all(c.openai(key, "mock-q")[0] == 200 for _ in range(3))
        code, j = admin("PATCH", "/admin/keys/patched", {"budget_usd": None, "expires": None, "admin": False})
        assert code == 200 and (j["budget_usd"], j["budget_period"], j["expires"], j["admin"]) == \
            (None, None, None, False), j

        # Bad input, unknown and revoked keys; nothing changes.
        new_key(g, "taken")
        for body, want in (({}, 400), ({"rpm": "5"}, 400), ({"rpm": -1}, 400), ({"rpmm": 1}, 400),
                           ({"budget_usd": 2}, 400), ({"budget_period": "week"}, 400), ({"name": "123"}, 400),
                           ({"expires": 1000}, 400), ({"models": ["a b"]}, 400), ({"admin": 1}, 400),
                           ("not json", 400), ("[1]", 400), ({"name": "taken"}, 409)):
            code, j = admin("PATCH", "/admin/keys/patched", body)
            assert code == want, (body, code, j)
        assert admin("PATCH", "/admin/keys/nope", {"rpm": 1})[0] == 404
        assert admin("DELETE", "/admin/keys/taken")[0] == 200
        code, j = admin("PATCH", "/admin/keys/taken", {"rpm": 1})
        assert code == 409 and "revoked" in j["error"]["message"], j
        rc, out, _ = curl("-si", "-X", "PUT", g.url("/admin/keys/patched"))
        assert out.startswith("HTTP/1.1 405") and "allow: PATCH,DELETE" in out.lower().replace("patch,delete",
                                                                                              "PATCH,DELETE"), out
        j = json.loads(keys(g, "show", "patched", "--json"))
        assert (j["rpm"], j["budget_usd"], j["admin"]) == (0, None, False), j
    finally:
        c.close()


# ---- usage rows after the official SDKs ----

@test
def usage_rows_after_sdk_calls_match_the_reported_usage():
    assert not NODE_PROBLEM, NODE_PROBLEM
    key = new_key(g, "sdk")
    key_id = json.loads(keys(g, "show", "sdk", "--json"))["id"]
    base = g.url("").rstrip("/")
    calls = []
    # The mock counts input as body bytes / 4 and output as its chunks; cache tokens by directive.
    r = node("openai", "chat", GATE_URL=base, MODEL="mock-sdk-a+chunks=7+cache_read=3", API_KEY=key)
    calls.append(("mock-sdk-a+chunks=7+cache_read=3", "openai", False, r["completion"]["usage"]))
    r = node("openai", "chat_stream_iter", GATE_URL=base, MODEL="mock-sdk-b+chunks=9+cache_read=2", API_KEY=key)
    calls.append(("mock-sdk-b+chunks=9+cache_read=2", "openai", True, r["usage"]))
    r = node("anthropic", "messages", GATE_URL=base, MODEL="claude-sdk-c+chunks=6+cache_read=11+cache_write=5",
             API_KEY=key)
    calls.append(("claude-sdk-c+chunks=6+cache_read=11+cache_write=5", "anthropic", False, r["message"]["usage"]))
    r = node("anthropic", "stream", GATE_URL=base, MODEL="claude-sdk-d+chunks=8+cache_read=4+cache_write=13",
             API_KEY=key)
    calls.append(("claude-sdk-d+chunks=8+cache_read=4+cache_write=13", "anthropic", True, r["final"]["usage"]))

    prices = {"mock": (2500, 10000, 1250, 3750), "claude": (3000, 15000, 300, 3750)}
    for model, dialect, stream, usage in calls:
        rows = wait_for("the row of " + model,
                        lambda: db_rows(g, "model_requested = '%s'" % model.replace("'", "''")), timeout=5)
        assert len(rows) == 1, rows
        row = rows[0]
        if dialect == "openai":
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            want = (usage["prompt_tokens"] - cached, usage["completion_tokens"], cached, 0)
        else:
            want = (usage["input_tokens"], usage["output_tokens"], usage.get("cache_read_input_tokens") or 0,
                    usage.get("cache_creation_input_tokens") or 0)
        got = (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"])
        assert got == want, (model, got, want, usage)
        assert want[1] > 0 and want[2] > 0 and (dialect == "openai" or want[3] > 0), (model, usage)
        p = prices[model.split("-")[0]]
        assert row["cost_nanousd"] == sum(a * b for a, b in zip(want, p)) and row["priced"] == 1, (model, row)
        assert (row["key_id"], row["status"], row["stream"], row["dialect_in"]) == \
            (key_id, 200, int(stream), dialect), (model, row)
        assert row["model_served"] == model and row["ttfb_us"] > 0 and row["total_us"] >= row["ttfb_us"], row
        assert row["bytes_in"] > 0 and row["bytes_out"] > 0, row


g.stop()


# ---- a locked database ----

def private_bus():
    d = tempfile.mkdtemp(prefix="gate-bus-")
    with open(os.path.join(d, "bus.conf"), "w") as f:
        f.write("""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=%s/bus.sock</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/>
</policy></busconfig>
""" % d)
    p = subprocess.Popen(["dbus-daemon", "--config-file=" + os.path.join(d, "bus.conf"), "--nofork",
                          "--print-address=1"], stdout=subprocess.PIPE)
    return d, p, p.stdout.readline().decode().strip()


def bus_drops(address):
    p = subprocess.run(["busctl", "--address=" + address, "get-property", "ai.hellas.Gate", "/ai/hellas/Gate",
                        "ai.hellas.Gate1", "UsageQueueDrops"], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split()[1])


QUEUE = 50
FAIL_CONFIG = "[auth]\npassthrough = never\n[usage]\nqueue_max = %d\nflush_interval = 100ms\n" % QUEUE + PROVIDERS


def warm_up(g, c, model):
    """300 requests (allocator, connections, metric series settle), in steps the queue holds."""
    for _ in range(300 // (QUEUE - 10)):
        for _ in range(QUEUE - 10):
            assert c.openai(None, model)[0] == 200
        wait_for("the warm-up rows", lambda: metrics(g).get("gate_usage_queue_depth") == 0)
    return (300 // (QUEUE - 10)) * (QUEUE - 10)


def serve_through_failure(g, c, n, model):
    """n requests while the database cannot be written: all served; RSS measured after the first fifth and at
    the end (the queue is full long before)."""
    rss = []
    for i in range(n):
        status, _, body = c.openai(None, model)
        assert status == 200, (i, status, body)
        if i in (n // 5, n - 1):
            rss.append(g.rss_kib())
    return rss


@test
def locked_database_keeps_serving_counts_drops_and_recovers():
    busdir, bus, address = private_bus()
    g = Gate(config=FAIL_CONFIG, env={"GATE_BUS": "system", "DBUS_SYSTEM_BUS_ADDRESS": address})
    try:
        with g:
            g.start()
            c = Client(g)
            warm = warm_up(g, c, "mock-locked")
            assert bus_drops(address) == 0 and metrics(g)["gate_usage_queue_dropped_total"] == 0

            # Another process holds the write lock (in WAL mode readers still read: keys keep working).
            other = sqlite3.connect(os.path.join(g.state, "gate.db"), isolation_level=None, timeout=10)
            other.execute("BEGIN EXCLUSIVE")
            n = 2000
            rss = serve_through_failure(g, c, n, "mock-locked")
            # Rows dropped while a write is being attempted count once that attempt has failed (the busy
            # timeout, 1 s): until then they may still be written.
            m = wait_for("the drops counted", lambda: (lambda m: m if m["gate_usage_queue_dropped_total"] ==
                                                         n - QUEUE else None)(metrics(g)), timeout=5)
            assert m["gate_usage_queue_depth"] == QUEUE, m
            assert bus_drops(address) == n - QUEUE
            assert rss[1] - rss[0] < 1024, "RSS grew from %d to %d KiB while rows were dropped" % tuple(rss)
            print("locked: %d requests served, %d rows dropped, RSS %d -> %d KiB" % (n, n - QUEUE, *rss))
            assert "keeping them queued: Device or resource busy" in g.log(), g.log()[-3000:]

            other.execute("ROLLBACK")
            other.close()
            wait_for("the queue written", lambda: metrics(g).get("gate_usage_queue_depth") == 0)
            for _ in range(20):
                assert c.openai(None, "mock-after-lock")[0] == 200
            # The newest queued rows of the locked time and every row after it arrive.
            wait_for("rows after the lock", lambda: len(db_rows(g, "model_requested = 'mock-after-lock'")) == 20)
            assert len(db_rows(g, "model_requested = 'mock-locked'")) == warm + QUEUE
            assert metrics(g)["gate_usage_queue_dropped_total"] == n - QUEUE
            c.close()
    finally:
        bus.terminate()
        bus.wait()
        shutil.rmtree(busdir, ignore_errors=True)


# ---- a full disk ----

def in_ns(g, script):
    p = subprocess.run(["nsenter", "-t", str(g.proc.pid), "-m", "sh", "-c", script], capture_output=True,
                       env=env_of(g), timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@test
def full_filesystem_keeps_serving_counts_drops_and_recovers():
    if os.geteuid() != 0 or not shutil.which("nsenter"):
        print("skip: needs root and nsenter for a mount namespace of gate's own")
        return
    g = Gate(config=FAIL_CONFIG)
    os.makedirs(g.state, mode=0o700, exist_ok=True)
    with g:
        # The state directory is a 2 MiB tmpfs, mounted in a mount namespace only gate (and nsenter) see.
        log = open(g.log_path, "ab")
        g.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                   'mount -t tmpfs -o size=2m,mode=0700 tmpfs "$STATE_DIRECTORY" && exec "$0" serve',
                                   GATE], env=g.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        g.notify.wait_for("READY=1")
        assert not os.path.exists(os.path.join(g.state, "gate.db")), "the tmpfs is not private"
        c = Client(g)
        warm_up(g, c, "mock-full")
        assert metrics(g)["gate_usage_queue_dropped_total"] == 0

        rc, out, err = in_ns(g, 'dd if=/dev/zero of="$STATE_DIRECTORY/filler" bs=4k 2>/dev/null; '
                                'df -k "$STATE_DIRECTORY" | tail -1')
        assert "100%" in out, (rc, out, err)
        n = 2000
        rss = serve_through_failure(g, c, n, "mock-full")
        # Once no write attempt is in flight the count stands still. A few rows may still have fit into
        # pages freed in the database before the disk was full.
        def settled():
            a = metrics(g)
            time.sleep(0.3)
            return a if a == metrics(g) else None
        m = wait_for("the drops counted", settled)
        assert m["gate_usage_queue_depth"] == QUEUE and m["gate_usage_queue_dropped_total"] >= n - QUEUE - 100, m
        drops = m["gate_usage_queue_dropped_total"]
        assert rss[1] - rss[0] < 1024, "RSS grew from %d to %d KiB while rows were dropped" % tuple(rss)
        assert "keeping them queued: No space left on device" in g.log(), g.log()[-3000:]
        print("full: %d requests served, %d rows dropped, RSS %d -> %d KiB" % (n, drops, *rss))

        rc, out, err = in_ns(g, 'rm "$STATE_DIRECTORY/filler"')
        assert rc == 0, err
        wait_for("the queue written", lambda: metrics(g).get("gate_usage_queue_depth") == 0)
        for _ in range(20):
            assert c.openai(None, "mock-after-full")[0] == 200
        c.close()

        def after():
            rc, out, _ = in_ns(g, 'sqlite3 "$STATE_DIRECTORY/gate.db" "SELECT model_requested, COUNT(*) FROM usage '
                                  'GROUP BY 1; PRAGMA integrity_check;"')
            return out if "mock-after-full|20" in out else None
        out = wait_for("rows after the disk has room again", after)
        assert out.strip().endswith("ok"), out
        assert metrics(g)["gate_usage_queue_dropped_total"] == drops


# ---- retention ----

@test
def retention_in_the_configuration():
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "gate.conf")
        for value, shown in (("90d", "90d"), ("26w", "182d"), ("infinity", "infinity"), ("0", "infinity"),
                             ("744h", "31d")):
            with open(conf, "w") as f:
                f.write("[usage]\nretention = %s\n" % value)
            p = subprocess.run([GATE, "config", "check", conf], capture_output=True, env=dict(os.environ,
                               STATE_DIRECTORY=d), timeout=20)
            assert p.returncode == 0 and ("retention = %s\n" % shown) in p.stdout.decode(), (value, p.stdout,
                                                                                          p.stderr)
        for value in ("7d", "30d", "36501d", "soon", "-1d", "1y"):
            with open(conf, "w") as f:
                f.write("[usage]\nretention = %s\n" % value)
            p = subprocess.run([GATE, "config", "check", conf], capture_output=True, env=dict(os.environ,
                               STATE_DIRECTORY=d), timeout=20)
            assert p.returncode == 78 and b"[usage] retention" in p.stderr, (value, p.returncode, p.stderr)


@test
def daemon_deletes_rows_beyond_the_retention():
    g = Gate(config="[auth]\npassthrough = never\n[usage]\nflush_interval = 50ms\nretention = 31d\n" + PROVIDERS)
    os.makedirs(g.state, mode=0o700, exist_ok=True)
    with g:
        # Old rows, as an earlier gate would have left them: 9000 of 40 days ago, 10 of 20 days ago. The
        # database is made by the CLI first, so that the rows are there at the writer's first look.
        keys(g, "create", "--name", "x")
        db = sqlite3.connect(os.path.join(g.state, "gate.db"), timeout=10)
        now = int(time.time() * 1e6)
        day = 86400 * 10**6
        db.executemany("INSERT INTO usage (time, status) VALUES (?, 200)",
                       [(now - 40 * day + i,) for i in range(9000)] + [(now - 20 * day + i,) for i in range(10)])
        db.commit()
        db.close()
        g.start()
        # 4000 rows per tick at most: three ticks; requests are served meanwhile, never waiting for it.
        for _ in range(20):
            assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", g.url("/v1/chat/completions"),
                        "--data-binary", '{"model":"mock-r","messages":[]}')[1] == "200"
        wait_for("old rows deleted", lambda: not db_rows(g, "time < %d" % (now - 31 * day)))
        assert len(db_rows(g, "time BETWEEN %d AND %d" % (now - 21 * day, now - 19 * day))) == 10
        wait_for("the new rows", lambda: len(db_rows(g, "model_requested = 'mock-r'")) == 20)
        assert "Deleted 4000 usage rows older than the retention." in g.log(), g.log()[-3000:]


M.stop()
finish()
