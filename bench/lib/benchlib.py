"""Helpers shared by bench/run and the single-lane scripts: ports, CPU pinning, RSS, percentiles, starting and
stopping the servers (mock, gate, nginx, Portkey), wrk and h2load runs, machine facts and result files."""
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
NODE_DIR = os.path.join(BENCH, "node")
PORTKEY_DIR = os.path.join(NODE_DIR, "node_modules", "@portkey-ai", "gateway")
KEY = "sk-bench"  # what the mock's "provider" is given; the mock does not check it


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def build_dir(path):
    """The build directory as given (relative to the cwd, else to the tree), checked for gate and the mock."""
    for cand in (path, os.path.join(ROOT, path)):
        if os.path.isfile(os.path.join(cand, "gate")):
            cand = os.path.abspath(cand)
            if not os.path.isfile(os.path.join(cand, "tests", "mock-upstream")):
                sys.exit("%s has gate but no tests/mock-upstream: build the tests too "
                         "(meson setup with the default options, then ninja)" % cand)
            return cand
    sys.exit("no gate binary in %s: run tools/build first (or pass --build DIR)" % path)


def raise_nofile(want=1 << 16):
    """10,000 streams through a proxy need about 20,000 descriptors in the proxy: as root, raise the hard
    limit too (children inherit it); otherwise go as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15, proc=None, what=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %d before port %d opened" %
                               (what or proc.args, proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open within %d s (%s)" % (port, timeout, what or "server"))


def two_cpus():
    return len(os.sched_getaffinity(0) | {0, 1}) > 1 and (os.cpu_count() or 1) > 1 and shutil.which("taskset")


def pin(cpu):
    """Servers on CPU 0, load generators on CPU 1: on a 2-core machine they must not fight for one core."""
    return ["taskset", "-c", str(cpu)] if two_cpus() else []


def pin_self(cpu):
    if two_cpus():
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """(total, user) CPU seconds of all threads of pid; (0, 0) once it is gone."""
    total = user = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
    hz = os.sysconf("SC_CLK_TCK")
    return total / hz, user / hz


def cpu_tree_seconds(pid):
    """(total, user) CPU seconds of a process and its descendants (nginx's worker does nginx's work)."""
    total = user = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        t, u = cpu_seconds(p)
        total, user = total + t, user + u
        todo += children(p)
    return total, user


def rss_tree_kib(pid):
    """RSS of a process and its descendants: nginx's master forks the worker that does the work."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss_kib(p)
        todo += children(p)
    return total


class RssWatch:
    """Samples the RSS of a process and its children every `every` seconds on a thread; keeps the peak and the
    (time, KiB) series."""

    def __init__(self, pid, every=0.1):
        self.pid, self.every, self.peak, self.samples = pid, every, 0, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set():
            v = rss_tree_kib(self.pid)
            self.peak = max(self.peak, v)
            self.samples.append((time.monotonic() - t0, v))
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values):
    values = [v for v in values if v is not None]
    return percentile(values, 50) if values else None


def slope_per_minute(samples):
    """Least-squares slope of (seconds, KiB) samples, in KiB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 60.0 * sum((t - mx) * (v - my) for t, v in samples) / den if den else None


# ---- servers ----

class Server:
    """A started server: its process (taskset execs, so the pid is the server's), port, and what it needs to
    be told apart (name, extra headers a client must send, the key for gate+key)."""

    def __init__(self, name, proc, port, headers=None, log=None, **extra):
        self.name, self.proc, self.port, self.log = name, proc, port, log
        self.headers = headers or {}
        self.__dict__.update(extra)

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/v1/chat/completions", port=None):
        return "http://127.0.0.1:%d%s" % (port or self.port, path)

    def log_tail(self, n=400):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except (TypeError, OSError):
            return ""

    def stop(self):
        stop(self.proc)


def stop(*procs):
    for p in procs:
        if p is None:
            continue
        p = getattr(p, "proc", p)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_mock(build, log=None, cpu=0):
    cmd = pin(cpu) + [os.path.join(build, "tests", "mock-upstream"), "--listen", "127.0.0.1:0"]
    if log:
        cmd += ["--log", log]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "listening":
        stop(p)
        raise RuntimeError("mock-upstream did not start: %r" % line)
    return Server("direct", p, int(line[1].rsplit(":", 1)[1]), headers={"Authorization": "Bearer " + KEY},
                  cmd=cmd)


def gate_env(d, conf, tag):
    return dict(os.environ, GATE_CONFIG=conf, STATE_DIRECTORY=os.path.join(d, "state-" + tag),
                GATE_LOG="warning", GATE_BUS="none")


def write_gate_conf(d, tag, port, mock_port, keys=False, providers=None):
    """providers: the [provider.*] sections; default one OpenAI-compatible provider for every model."""
    conf = os.path.join(d, "gate-%s.conf" % tag)
    if providers is None:
        providers = ("[provider.mock]\ntype = openai-compatible\nbase_url = http://127.0.0.1:%d/v1\n"
                     "models = *\napi_key = %s\n"
                     # nginx's proxy_connect_timeout default: a burst of thousands of streams overflows
                     # the mock's accept queue, and lost SYNs are retried after 1, 3, 7, 15 s.
                     "connect_timeout = 60s\n" % (mock_port, KEY))
    with open(conf, "w") as f:
        # h2_max_concurrent_streams: lane 3 multiplexes 100 streams on each h2c connection.
        f.write("[server]\nbind = 127.0.0.1:%d\nmax_connections_per_ip = 100000\nmax_connections = 100000\n"
                "h2_max_concurrent_streams = 128\n"
                "[proxy]\nmax_pending = 100000\n"
                "[auth]\nloopback_without_key = %s\npassthrough = never\n%s"
                % (port, "false" if keys else "true", providers))
    return conf


def start_gate(build, d, mock_port, tag="gate", keys=False, providers=None, wrap=()):
    """keys=True: a gate that requires its own API keys (key check, limits, usage row, metrics); the key made
    for the bench is server.key and goes into server.headers. wrap: a command that execs its arguments, to
    run gate under (e.g. in a mount namespace of its own)."""
    port = free_port()
    conf = write_gate_conf(d, tag, port, mock_port, keys, providers)
    env = gate_env(d, conf, tag)
    gate = os.path.join(build, "gate")
    key = KEY
    if keys:
        out = subprocess.run([gate, "keys", "create", "--name", "bench"], env=env, capture_output=True,
                             check=True).stdout.decode()
        key = [w for w in out.split() if w.startswith("gk-")][0]
    log = os.path.join(d, tag + ".log")
    cmd = pin(0) + list(wrap) + [gate, "serve"]
    with open(log, "wb") as lf:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=lf)
    wait_port(port, proc=p, what="gate")
    return Server(tag, p, port, headers={"Authorization": "Bearer " + key}, log=log, key=key, conf=conf,
                  env=env, cmd=cmd)


NGINX_HEAD = """
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
error_log %(d)s/%(tag)s-error.log error;
pid %(d)s/%(tag)s.pid;
events { worker_connections 30000; }
http {
    access_log off;
    keepalive_requests 1000000;
    # lane 3 multiplexes 100 streams on each h2c connection (nginx 1.22's default is 128)
    http2_max_concurrent_streams 128;
    client_body_temp_path %(d)s; proxy_temp_path %(d)s; fastcgi_temp_path %(d)s;
    uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
"""


def start_nginx_proxy(d, mock_port, tag="nginx"):
    """nginx proxy_pass in front of the mock with keep-alive upstream connections, unbuffered (streams pass
    through as they come). HTTP/1.1 on server.port, h2c (prior knowledge) on server.h2_port: nginx cannot
    serve both on one port."""
    port, h2 = free_port(), free_port()
    conf = os.path.join(d, tag + ".conf")
    loc = """
    location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
    }"""
    with open(conf, "w") as f:
        f.write(NGINX_HEAD % {"d": d, "tag": tag} + """
    upstream mock { server 127.0.0.1:%(mock)d; keepalive 1024; }
    server { listen 127.0.0.1:%(port)d; %(loc)s }
    server { listen 127.0.0.1:%(h2)d http2; %(loc)s }
}
""" % {"mock": mock_port, "port": port, "h2": h2, "loc": loc})
    cmd = pin(0) + [nginx_bin(), "-c", conf, "-p", d]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=p, what="nginx")
    wait_port(h2, proc=p, what="nginx")
    return Server(tag, p, port, headers={"Authorization": "Bearer " + KEY}, h2_port=h2,
                  log=os.path.join(d, tag + "-error.log"), cmd=cmd)


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def ensure_portkey():
    """Installs the pinned Portkey gateway (bench/node/package-lock.json) when it is missing. Returns None
    when it is there, else the reason it is not."""
    if not shutil.which("node"):
        return "node is not installed (tools/install-deps bench)"
    if os.path.isfile(os.path.join(PORTKEY_DIR, "build", "start-server.js")):
        return None
    if not shutil.which("npm"):
        return "npm is not installed (tools/install-deps bench)"
    progress("Portkey: npm ci --prefix bench/node ...")
    r = subprocess.run(["npm", "ci", "--prefix", NODE_DIR, "--no-audit", "--no-fund"], capture_output=True,
                       timeout=600)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").splitlines()
        first = [line.strip() for line in err if line.startswith("npm error")][:2] or err[-1:]
        return "npm ci --prefix bench/node failed: " + "; ".join(first)[:240]
    if not os.path.isfile(os.path.join(PORTKEY_DIR, "build", "start-server.js")):
        return "npm ci left no build/start-server.js in " + PORTKEY_DIR
    return None


def portkey_version():
    try:
        with open(os.path.join(PORTKEY_DIR, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def start_portkey(d, mock_port, provider="openai", tag="portkey"):
    """Portkey's gateway on node, pointed at the mock per request with its custom-host header."""
    port = free_port()
    log = os.path.join(d, tag + ".log")
    cmd = pin(0) + ["node", "build/start-server.js", "--port=%d" % port, "--headless"]
    with open(log, "wb") as lf:
        p = subprocess.Popen(cmd, cwd=PORTKEY_DIR, stdout=lf, stderr=subprocess.STDOUT)
    wait_port(port, timeout=30, proc=p, what="Portkey")
    return Server(tag, p, port, log=log, cmd=cmd,
                  headers=portkey_headers(mock_port, provider))


def portkey_headers(mock_port, provider="openai"):
    return {"Authorization": "Bearer " + KEY, "x-api-key": KEY, "x-portkey-provider": provider,
            "x-portkey-custom-host": "http://127.0.0.1:%d/v1" % mock_port}


def log_size(server):
    try:
        return os.path.getsize(server.log)
    except (TypeError, OSError):
        return 0


def portkey_log_error(server, since=0):
    """The first error line Portkey logged after byte `since` of its log (it answers 500 "Something went
    wrong" and logs the cause)."""
    try:
        with open(server.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except (TypeError, OSError):
        return ""
    for line in text.splitlines():
        if "error" in line.lower() and not line.startswith("    at "):
            # Its start-up spinner writes no newline: what comes after it is the error.
            return re.sub(r".*Starting AI Gateway\.\.\.", "", line).strip()[:160]
    return ""


def post(url, body, headers, timeout=30):
    """One request; returns (status, headers, body text) and never raises for HTTP errors."""
    h = {"Content-Type": "application/json"}
    h.update(headers)
    req = urllib.request.Request(url, data=body.encode() if isinstance(body, str) else body, headers=h,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return None, {}, "%s" % e


# ---- load generators ----

def lua_str(s):
    return "[==[%s]==]" % s


def wrk_script(d, name, body, headers, guard=None, dist=False, overhead=False):
    """A wrk script that POSTs body with headers. guard=(must, mustnot): every response is checked for those
    strings and the count of bad ones printed; dist: the latency distribution (percentiles) is printed;
    overhead: gate's x-gate-overhead-us header is collected."""
    lua = os.path.join(d, name + ".lua")
    h = {"Content-Type": "application/json"}
    h.update(headers)
    hook = guard is not None or overhead
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\n')
        for k, v in h.items():
            f.write("wrk.headers[ %s ] = %s\n" % (lua_str(k), lua_str(v)))
        f.write("wrk.body = %s\n" % lua_str(body))
        if hook:
            must, mustnot = guard or ([], [])
            f.write("""
local must, mustnot = {%s}, {%s}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0; n = 0; sample = ""; ov = {} end
function response(status, headers, body)
  n = n + 1
  local o = headers["x-gate-overhead-us"]
  if o then ov[#ov + 1] = tonumber(o) end
  local ok = status == 200
  for _, m in ipairs(must) do if not string.find(body, m, 1, true) then ok = false end end
  for _, m in ipairs(mustnot) do if string.find(body, m, 1, true) then ok = false end end
  if not ok then
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 160) end
  end
end
""" % (", ".join(lua_str(x) for x in must), ", ".join(lua_str(x) for x in mustnot)))
        f.write("function done(summary, latency, requests)\n")
        if hook:
            f.write("""  for _, t in ipairs(threads) do
    io.write(string.format("guard: %d bad of %d\\n", t:get("bad"), t:get("n")))
    if t:get("bad") > 0 then io.write("guard sample: " .. t:get("sample") .. "\\n") end
    local v = t:get("ov")
    if #v > 0 then
      table.sort(v)
      io.write(string.format("overhead: p50 %d p99 %d n %d\\n", v[math.ceil(#v * 0.5)], v[math.ceil(#v * 0.99)], #v))
    end
  end
""")
        if dist:
            f.write("""  for _, p in ipairs({1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9}) do
    io.write(string.format("dist: %g %d\\n", p, latency:percentile(p)))
  end
""")
        f.write("end\n")
    return lua


def _us(v, unit):
    return float(v) * {"us": 1, "ms": 1000, "s": 1e6, "m": 60e6}[unit]


def wrk(url, lua, duration, connections=1, threads=1, timeout_s=None):
    """Runs wrk (on the load CPU); returns a dict: p50_us, p99_us, rps, requests, errors (socket errors and
    non-2xx), the guard's bad/checked counts, the distribution, the command, and error (a string) when the
    run gave nothing usable."""
    cmd = pin(1) + ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration, "--latency"]
    if timeout_s:
        cmd += ["--timeout", "%ds" % timeout_s]
    cmd += ["-s", lua, url]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=duration + 90)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return {"cmd": " ".join(cmd), "error": "wrk did not finish"}
    pct = {m.group(1): _us(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    g = re.search(r"guard: (\d+) bad of (\d+)", out)
    sample = re.search(r"guard sample: (.*)", out)
    ov = re.search(r"overhead: p50 (\d+) p99 (\d+)", out)
    res = {"cmd": " ".join(cmd), "p50_us": pct.get("50"), "p99_us": pct.get("99"),
           "rps": float(rps.group(1)) if rps else None, "requests": int(reqs.group(1)) if reqs else 0,
           "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
           "non2xx": int(non2xx.group(1)) if non2xx else 0,
           "bad": int(g.group(1)) if g else None, "checked": int(g.group(2)) if g else None,
           "overhead_p50_us": int(ov.group(1)) if ov else None,
           "overhead_p99_us": int(ov.group(2)) if ov else None,
           "dist": [(float(m.group(1)), int(m.group(2))) for m in re.finditer(r"dist: ([\d.]+) (\d+)", out)]}
    if sample:
        res["bad_sample"] = sample.group(1)
    if res["p50_us"] is None or res["requests"] == 0:
        res["error"] = "no responses: " + out.strip()[-300:]
    elif res["non2xx"]:
        res["error"] = "%d non-2xx responses of %d" % (res["non2xx"], res["requests"])
    return res


def h2load(url, body_file, headers, duration, clients, streams, d, warmup=0.5):
    """h2load (HTTP/2, h2c prior knowledge, on the load CPU): POSTs body_file for `duration` seconds with
    `clients` connections of `streams` concurrent streams each. Percentiles come from its per-request log."""
    log = os.path.join(d, "h2load-%d.log" % os.getpid())
    cmd = pin(1) + ["h2load", "-t1", "-c%d" % clients, "-m%d" % streams, "-D%d" % duration,
        "--warm-up-time=%dms" % int(warmup * 1000), "-d", body_file, "--log-file=" + log]
    for k, v in dict({"content-type": "application/json"}, **headers).items():
        cmd += ["-H", "%s: %s" % (k.lower(), v)]
    cmd.append(url)
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=duration + warmup + 90)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return {"cmd": " ".join(cmd), "error": "h2load did not finish"}
    lat, bad = [], 0
    try:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    if parts[1] != "200":
                        bad += 1
                    lat.append(int(parts[2]))
        os.unlink(log)
    except OSError:
        pass
    m = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    res = {"cmd": " ".join(cmd), "rps": float(m.group(1)) if m else None, "requests": len(lat),
           "p50_us": percentile(lat, 50), "p99_us": percentile(lat, 99),
           "failed": int(ok.group(2)) + int(ok.group(3)) if ok else None, "non2xx": bad}
    if not lat or res["rps"] is None:
        reqs = re.search(r"^requests: .*$", out, re.M)
        proto = re.search(r"^Application protocol: (.*)$", out, re.M)
        res["error"] = "no responses in %d s (%s%s)" % (
            duration, reqs.group(0) if reqs else out.strip()[-200:],
            "; protocol " + proto.group(1) if proto else "")
    elif bad or res["failed"]:
        res["error"] = "%d failed, %d non-200 of %d" % (res["failed"] or 0, bad, len(lat))
    return res


# ---- facts and results ----

def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=10)
        out = (r.stdout + r.stderr).decode(errors="replace").strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "mem_mib": mem,
            "kernel": platform.release(), "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "loadavg": os.getloadavg(), "damon": damon()}


def damon():
    """The kernel's DAMON monitors that are on, with their sampling interval: kdamond takes a CPU for 1-3 ms
    at a time (seen with perf sched timehist on a VM that runs DAMON_RECLAIM-style physical-memory
    monitoring every 0.5 s), which lands in a c=1 p99 of whichever path it hits. None when there is none."""
    base = "/sys/kernel/mm/damon/admin/kdamonds"
    out = []
    try:
        for k in sorted(os.listdir(base)):
            if not k.isdigit():
                continue
            with open(os.path.join(base, k, "state")) as f:
                if f.read().strip() != "on":
                    continue
            ctx = os.path.join(base, k, "contexts", "0")
            d = {"kdamond": int(k)}
            try:
                with open(os.path.join(ctx, "operations")) as f:
                    d["operations"] = f.read().strip()
                with open(os.path.join(ctx, "monitoring_attrs", "intervals", "sample_us")) as f:
                    d["sample_us"] = int(f.read())
            except (OSError, ValueError):
                pass
            out.append(d)
    except OSError:
        return None
    return out or None


def versions(build):
    git = _first_line(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    return {"gate": _first_line([os.path.join(build, "gate"), "--version"]), "git": git,
            "nginx": _first_line([nginx_bin(), "-v"]), "wrk": _first_line(["wrk", "-v"]),
            "h2load": _first_line(["h2load", "--version"]), "node": _first_line(["node", "--version"]),
            "portkey": portkey_version(), "gnuplot": _first_line(["gnuplot", "--version"]),
            "python": platform.python_version()}


def stamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def write_results(prefix, when, title, table, meta):
    """bench/results/PREFIX-WHEN.md and .json; returns their paths."""
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, "%s-%s" % (prefix, when))
    with open(base + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write("# %s\n\n%s\n" % (title, table))
    return base + ".md", base + ".json"


def fmt(v, spec="%.0f", none="n/a"):
    return spec % v if v is not None else none
