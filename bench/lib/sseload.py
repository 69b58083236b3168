"""N concurrent SSE streams against one URL: BUILD/bench/sse-load (the C client) when it is built, else an asyncio
client in Python with the same JSON result, for machines without it (slower: above a few thousand streams the
client itself adds to the gaps it measures; HTTP/1.1 only)."""
import asyncio
import json
import os
import subprocess
import time
import urllib.parse

from benchlib import percentile, pin


def binary(build):
    p = os.path.join(build, "bench", "sse-load")
    return p if os.access(p, os.X_OK) else None


def run(build, url, streams, body_file, headers, ramp_ms=0, timeout=120, force_python=False, h2=0, stall_ms=1000):
    """Returns (result dict in sse-load's shape, the command, which client). h2: h2c with prior knowledge, that
    many streams per connection (the C client only; 0: HTTP/1.1, a connection per stream). stall_ms: a gap
    longer than this is a stall. Raises RuntimeError when the C client fails outright (no JSON) or h2c is
    asked of the Python client."""
    exe = None if force_python else binary(build)
    if exe:
        cmd = pin(1) + [exe, "--url", url, "--streams", str(streams), "--body-file", body_file,
                        "--ramp-ms", str(ramp_ms), "--timeout", str(timeout), "--stall-ms", str(stall_ms)]
        if h2:
            cmd += ["--h2", str(h2)]
        for k, v in headers.items():
            cmd += ["--header", "%s: %s" % (k, v)]
        r = subprocess.run(cmd, capture_output=True, timeout=timeout + 120)
        try:
            return json.loads(r.stdout.decode()), " ".join(cmd), "sse-load h2c x%d" % h2 if h2 else "sse-load"
        except ValueError:
            raise RuntimeError("sse-load exited %d without a result: %s" % (
                r.returncode, r.stderr.decode(errors="replace").strip()[-300:]))
    if h2:
        raise RuntimeError("h2c (%d streams per connection) needs the C client, BUILD/bench/sse-load%s" % (
            h2, " (left out with --python-sse)" if force_python else ""))
    with open(body_file, "rb") as f:
        body = f.read()
    t0 = time.monotonic()
    res = asyncio.run(_streams(url, streams, body, headers, ramp_ms, timeout))
    out = _summarise(res, streams, time.monotonic() - t0, stall_ms * 1000)
    return out, "python asyncio client (bench/lib/sseload.py): %d streams to %s, ramp %d ms" % (
        streams, url, ramp_ms), "python"


async def _one(host, port, path, body, headers, timeout, delay, results):
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    times, err, done = [], None, False
    w = None
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        head = "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n" % (path, host, port, len(body))
        head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        w.write(head.encode() + body)
        await w.drain()
        deadline = t0 + timeout
        status = None
        buf = b""
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                err = "timeout"
                break
            chunk = await asyncio.wait_for(r.read(65536), left)
            if not chunk:
                err = "closed before the end"
                break
            now = time.perf_counter()
            if status is None:
                buf += chunk
                if b"\r\n" not in buf:
                    continue
                status = buf.split(b" ", 2)[1].decode(errors="replace")
                if status != "200":
                    err = "HTTP " + status
                    break
                chunk = buf
            # Events in one read share its timestamp: a client sees chunks when their bytes arrive.
            if b"data: " in chunk:
                times.append(now)
            if b"data: [DONE]" in chunk or b"event: message_stop" in chunk:
                done = True
                break
    except asyncio.TimeoutError:
        err = "timeout"
    except OSError as e:
        err = type(e).__name__
    finally:
        if w:
            w.close()
    results.append((t0, times, err if not done else None))


async def _streams(url, n, body, headers, ramp_ms, timeout):
    u = urllib.parse.urlsplit(url)
    results = []
    await asyncio.gather(*(_one(u.hostname, u.port or 80, u.path or "/", body, headers, timeout,
                                ramp_ms / 1000.0 * i / max(n, 1), results) for i in range(n)))
    return results


def _summarise(res, n, elapsed, stall_us):
    ttft, gaps, errors, stalls, chunks, ok = [], [], {}, 0, 0, 0
    for t0, times, err in res:
        if times:
            ttft.append((times[0] - t0) * 1e6)
            for a, b in zip(times, times[1:]):
                g = (b - a) * 1e6
                gaps.append(g)
                stalls += g > stall_us
            chunks += len(times)
        if err:
            errors[err] = errors.get(err, 0) + 1
        else:
            ok += 1

    def q(v):
        return {"p50": percentile(v, 50), "p99": percentile(v, 99), "max": max(v) if v else None}
    return {"streams": n, "ok": ok, "failed": n - ok, "errors": errors, "ttft_us": q(ttft), "gap_us": q(gaps),
            "stalls": stalls, "chunks": chunks, "elapsed_s": elapsed, "protocol": "http/1.1", "connections": n}
