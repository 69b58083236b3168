"""Lane 4, translation: what translating costs, next to passthrough on the same gate and the same mock, with a guard
that fails the lane when an answer came back untranslated. Used by bench/translate and bench/run.

For each direction the upstream sees the same request on all paths:
  direct       straight to the mock, with the body gate sends upstream for the translated request
  passthrough  through gate, client and upstream in the same dialect, that same body
  translated   through gate, the client's dialect into the upstream's (the request as the client writes it)
  portkey      (bench/run) the translated request through Portkey's gateway, where Portkey can translate it
Latency at c=1 with wrk --latency, paths interleaved within each run; added = path minus direct.
"""
import json
import os

import benchlib
from benchlib import KEY, post, progress, stop

HEADERS = {"Authorization": "Bearer " + KEY, "x-api-key": KEY, "anthropic-version": "2023-06-01"}

# What each client dialect must get back, and what would show the upstream's bytes came back untranslated.
GUARDS = {
    ("anthropic", False): (['"type":"message"'], ['"chat.completion', '"object":"response"']),
    ("anthropic", True): (["event: message_start", "event: message_stop"], ["chat.completion.chunk", "[DONE]"]),
    ("chat", False): (['chat.completion"'], ['"type":"message"', '"object":"response"']),
    ("chat", True): (['chat.completion.chunk"', "data: [DONE]"], ["event: message_start", "event: content_block"]),
    ("responses", False): (['"object":"response"'], ['"type":"message","role"', '"chat.completion']),
    ("responses", True): (["event: response.created", "event: response.completed"],
                          ["chat.completion.chunk", "event: message_start"]),
}
PATHS = {"anthropic": "/v1/messages", "chat": "/v1/chat/completions", "responses": "/v1/responses"}
# Portkey's provider for an upstream dialect.
PORTKEY_PROVIDER = {"chat": "openai", "anthropic": "anthropic"}


def guard_ok(dialect, stream, status, text):
    must, mustnot = GUARDS[(dialect, stream)]
    return status == 200 and all(m in text for m in must) and not any(m in text for m in mustnot)


def client_body(dialect, model, stream, max_tokens):
    msg = "Say hi, then count slowly from one to ten."
    if dialect == "anthropic":
        b = {"model": model, "max_tokens": max_tokens, "system": "Be brief.",
             "messages": [{"role": "user", "content": msg}]}
    elif dialect == "chat":
        b = {"model": model, "max_tokens": max_tokens,
             "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": msg}]}
    else:
        b = {"model": model, "max_output_tokens": max_tokens, "instructions": "Be brief.", "input": msg}
    if stream:
        b["stream"] = True
    return json.dumps(b, separators=(",", ":"))


def directions(with_responses):
    """(name, client dialect, upstream dialect, provider model prefix)"""
    out = [("anthropic -> openai", "anthropic", "chat", "bench-oai"),
           ("openai -> anthropic", "chat", "anthropic", "bench-anth")]
    if with_responses:
        out += [("responses -> openai chat", "responses", "chat", "bench-oai"),
                ("responses -> anthropic", "responses", "anthropic", "bench-anth")]
    return out


def providers(mock_port):
    return ("[provider.oai]\ntype = openai-compatible\nbase_url = http://127.0.0.1:%(mock)d/v1\n"
            "models = bench-oai*\napi_key = %(key)s\n"
            "[provider.anth]\ntype = anthropic\nbase_url = http://127.0.0.1:%(mock)d\n"
            "models = bench-anth*\napi_key = %(key)s\n" % {"mock": mock_port, "key": KEY})


def make_specs(deltas, with_responses, answers):
    specs = []
    for name, client, upstream, prefix in directions(with_responses):
        for stream in [x == "stream" for x in answers.split(",")]:
            model = "%s+chunks=%d" % (prefix, deltas)
            specs.append({"lane": name, "client": client, "upstream": upstream, "stream": stream,
                          "translated_body": client_body(client, model, stream, 4 * deltas)})
    return specs


def calibrate(build, d, specs):
    """Sends each translated request through a gate in front of a logging mock; returns, per spec, the body the
    upstream got (the direct and passthrough paths send exactly that) and the problems found."""
    log = os.path.join(d, "calibrate.jsonl")
    mock = benchlib.start_mock(build, log)
    gate = benchlib.start_gate(build, d, mock.port, "calibrate", providers=providers(mock.port))
    try:
        out = []
        for s in specs:
            status, h, text = post(gate.url(PATHS[s["client"]]), s["translated_body"], HEADERS)
            with open(log) as f:
                reqs = [json.loads(line) for line in f if '"method"' in line]
            problems = []
            if not reqs:
                out.append((None, ["the upstream got no request (%s %r)" % (status, text[:200])]))
                continue
            up = reqs[-1]
            if up["path"] != PATHS[s["upstream"]]:
                problems.append("the upstream got %s, not %s" % (up["path"], PATHS[s["upstream"]]))
            if not guard_ok(s["client"], s["stream"], status, text):
                problems.append("the client got untranslated or failed bytes: %s %r" % (status, text[:200]))
            if not h.get("x-gate-provider"):
                problems.append("no x-gate-provider header")
            out.append((up["body"], problems))
        return out
    finally:
        stop(gate, mock)


def run(build, d, duration, runs, deltas=16, with_responses=False, answers="json,stream", portkey=False):
    """Returns (rows, failed). portkey=True adds Portkey's gateway as a path (it must be installed);
    a direction Portkey cannot do gets its error instead of figures."""
    specs = make_specs(deltas, with_responses, answers)
    progress("lane 4: calibrating, translated requests through a logging mock ...")
    failed = False
    for s, (up_body, problems) in zip(specs, calibrate(build, d, specs)):
        s["upstream_body"] = up_body
        s["calibration_problems"] = problems
        failed = failed or bool(problems)

    mock = benchlib.start_mock(build)
    gate = benchlib.start_gate(build, d, mock.port, "translate", providers=providers(mock.port))
    pk = None
    labels = ["direct", "passthrough", "translated"]
    try:
        pk_down = None
        if portkey:
            labels.append("portkey")
            try:
                pk = benchlib.start_portkey(d, mock.port, tag="portkey-translate")
            except RuntimeError as e:
                pk_down = "did not start: %s" % e
        # Each spec's paths: (label, port, request path, body, dialect the answer must be in, extra headers).
        paths = []
        for i, s in enumerate(specs):
            up = s["upstream"]
            paths += [(i, "direct", mock.port, PATHS[up], s["upstream_body"], up, {}),
                      (i, "passthrough", gate.port, PATHS[up], s["upstream_body"], up, {}),
                      (i, "translated", gate.port, PATHS[s["client"]], s["translated_body"], s["client"], {})]
            if portkey:
                s["portkey_error"] = pk_down
                if pk_down:
                    continue
                if s["client"] == "responses":
                    s["portkey_error"] = "not tried (Responses API)"
                    continue
                h = dict(HEADERS, **benchlib.portkey_headers(mock.port, PORTKEY_PROVIDER[up]))
                since = benchlib.log_size(pk)
                status, _, text = post(pk.url(PATHS[s["client"]]), s["translated_body"], h)
                if not guard_ok(s["client"], s["stream"], status, text):
                    cause = benchlib.portkey_log_error(pk, since)
                    s["portkey_error"] = "HTTP %s %s%s" % (status, text.strip()[:120],
                                                           " (log: %s)" % cause if cause else "")
                    progress("  Portkey cannot do %s %s: %s" % (s["lane"], "stream" if s["stream"] else "json",
                                                               s["portkey_error"]))
                    continue
                paths.append((i, "portkey", pk.port, PATHS[s["client"]], s["translated_body"], s["client"], h))
        scripts = {(i, label): benchlib.wrk_script(d, "tr%d-%s" % (i, label), body, dict(HEADERS, **extra),
                                                   guard=GUARDS[(dialect, specs[i]["stream"])], overhead=True)
                   for i, label, _, _, body, dialect, extra in paths}
        results = {}
        for r in range(runs):
            for i, label, port, path, body, dialect, extra in paths:
                s = specs[i]
                if s["calibration_problems"]:
                    continue
                v = benchlib.wrk("http://127.0.0.1:%d%s" % (port, path), scripts[(i, label)], duration)
                results.setdefault((i, label), []).append(v)
                progress("  run %d %-20s %-6s %-11s p50 %6s us  p99 %6s us  guard %s/%s bad" % (
                    r + 1, s["lane"], "stream" if s["stream"] else "json", label, benchlib.fmt(v["p50_us"]),
                    benchlib.fmt(v["p99_us"]), v["bad"], v["checked"]))
    finally:
        stop(pk, gate, mock)

    rows = []
    for i, s in enumerate(specs):
        row = {"lane": s["lane"], "stream": s["stream"], "client_body": s["translated_body"],
               "upstream_body": s["upstream_body"], "calibration_problems": s["calibration_problems"],
               "portkey_error": s.get("portkey_error")}
        problems = list(s["calibration_problems"])
        for label in labels:
            rs = results.get((i, label), [])
            bad = sum(x["bad"] or 0 for x in rs)
            errors = [x["error"] for x in rs if "error" in x]
            if label != "portkey":
                if bad:
                    problems.append("%s: %d of %d responses failed the guard (%s)" % (
                        label, bad, sum(x["checked"] or 0 for x in rs),
                        next((x["bad_sample"] for x in rs if "bad_sample" in x), "")))
                if errors:
                    problems.append("%s: wrk failed: %s" % (label, errors[0][-200:]))
            elif (bad or errors) and not row["portkey_error"]:
                row["portkey_error"] = "under load: %s" % (errors[0][-200:] if errors else "%d answers failed "
                                                           "the guard" % bad)
            good = [x for x in rs if "error" not in x and not x["bad"]]
            row[label] = {k: benchlib.median(x[k] for x in good) if good else None
                          for k in ("p50_us", "p99_us", "rps", "overhead_p50_us", "overhead_p99_us")}
            row[label]["runs"] = rs
        for q in ("p50_us", "p99_us"):
            base = row["direct"][q]
            for label in labels[1:]:
                v = row[label][q]
                row[label]["added_" + q] = v - base if v is not None and base is not None else None
            pa, ta = row["passthrough"]["added_" + q], row["translated"]["added_" + q]
            row["ratio_" + q] = ta / pa if pa and ta is not None and pa > 0 else None
            t, p = row["translated"][q], row["passthrough"][q]
            row["translation_cost_" + q] = t - p if t is not None and p is not None else None
        row["problems"] = problems
        failed = failed or bool(problems)
        rows.append(row)
    return rows, failed


def table(rows, runs, duration, deltas):
    f = benchlib.fmt

    def ratio(v):
        return "%.2f" % v if v is not None else "n/a"
    with_pk = any("portkey" in r for r in rows)
    lines = ["### Lane 4: translation, added latency at c=1 (median of %d runs of %d s; %d deltas per answer; "
             "streams timed to their last byte)" % (runs, duration, deltas), "",
             "| client -> upstream | answer | direct p50 / p99 us | passthrough added p50 / p99 us | "
             "translated added p50 / p99 us | ratio p50 / p99 | translated minus passthrough p50 / p99 us | "
             "gate's own time p50, passthrough / translated us | guard |" + (" Portkey added p50 / p99 us |"
                                                                           if with_pk else ""),
             "|---|---|---:|---:|---:|---:|---:|---:|---|" + ("---|" if with_pk else "")]
    for row in rows:
        line = "| %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %s |" % (
            row["lane"], "stream" if row["stream"] else "json", f(row["direct"]["p50_us"]),
            f(row["direct"]["p99_us"]), f(row["passthrough"]["added_p50_us"]),
            f(row["passthrough"]["added_p99_us"]), f(row["translated"]["added_p50_us"]),
            f(row["translated"]["added_p99_us"]), ratio(row["ratio_p50_us"]), ratio(row["ratio_p99_us"]),
            f(row["translation_cost_p50_us"]), f(row["translation_cost_p99_us"]),
            f(row["passthrough"]["overhead_p50_us"]), f(row["translated"]["overhead_p50_us"]),
            "ok" if not row["problems"] else "FAIL")
        if with_pk:
            pk = row["portkey"]
            if row["portkey_error"]:
                line += " cannot: %s |" % row["portkey_error"].replace("|", "/")
            else:
                line += " %s / %s |" % (f(pk.get("added_p50_us")), f(pk.get("added_p99_us")))
        lines.append(line)
    for row in rows:
        for p in row["problems"]:
            lines.append("\nFAIL %s (%s): %s" % (row["lane"], "stream" if row["stream"] else "json", p))
    lines += ["", "added = path minus direct; ratio = translated added / passthrough added (n/a when passthrough "
              "added nothing measurable: for streams the mock's many small writes straight to the client often take "
              "longer than the same stream relayed by gate, so direct is no floor there and translated minus "
              "passthrough is the translation's own cost). gate's own time: the x-gate-overhead-us header (time "
              "not spent waiting on the upstream, up to the response head: for json answers it includes translating "
              "the request and the answer, for streams only the request)."]
    return lines
