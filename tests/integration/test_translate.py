"""Translation end to end with the official SDKs: the Anthropic SDK (tests/node/translate-anthropic.mjs)
against gate in front of an OpenAI-dialect mock upstream, and the OpenAI SDK (tests/node/translate-openai.mjs)
against gate in front of an Anthropic-dialect mock, chat completions and Responses, plus Responses into
chat completions for an openai-compatible provider.

Each test asserts three things: what the SDK made of the answer (its parsers accepted every event; the
final objects carry the right text, tool calls, stop reasons and usage), the exact request the mock
upstream received (the translated body), and the raw SSE the client got, checked against the target
dialect's structural rules (the bytes the SDK parsed, and the same stream fetched with curl).

The SDKs are required clients: without node or tests/node/node_modules every SDK test here fails."""
import json

from gatetest import Gate, curl, finish, test
from sdktest import CLIENT_KEY, UPSTREAM_KEY, node
from mocktest import Mock, sse_events

M = Mock(require_key=UPSTREAM_KEY).start()

CONFIG = """
[provider.oai]
type = openai-compatible
base_url = http://%(mock)s/v1
models = gpt-*
api_key = %(key)s

[provider.native]
type = openai-compatible
responses_api = native
base_url = http://%(mock)s/v1
models = native-*
api_key = %(key)s

[provider.anth]
type = anthropic
base_url = http://%(mock)s
models = claude-*
api_key = %(key)s

# One model family at two providers of different dialects: the first choice passes through, the fallback
# translates (and the other way round).
[provider.fb-anth]
type = anthropic
base_url = http://%(mock)s
models = fba-*
priority = 1
api_key = %(key)s

[provider.fb-oai]
type = openai-compatible
base_url = http://%(mock)s/v1
models = fba-*, fbo-*
priority = 2
api_key = %(key)s

[provider.fb-anth2]
type = anthropic
base_url = http://%(mock)s
models = fbo-*
priority = 3
api_key = %(key)s
""" % {"mock": M.address, "key": UPSTREAM_KEY}

g = Gate(config=CONFIG).start()


def anthropic(case, model, **env):
    return node("translate-anthropic", case, GATE_URL=g.url("").rstrip("/"), MODEL=model, API_KEY=CLIENT_KEY, **env)


def openai(case, model, **env):
    return node("translate-openai", case, GATE_URL=g.url("").rstrip("/"), MODEL=model, API_KEY=CLIENT_KEY, **env)


def upstream(model):
    """The one request the mock received for this (unique) model string."""
    reqs = [r for r in M.requests() if r.get("model") == model]
    assert len(reqs) == 1, ("expected one upstream request for %s, got %d" % (model, len(reqs)),
                            [(r["id"], r["path"]) for r in reqs])
    return reqs[0]


def upstream_body(model):
    return json.loads(upstream(model)["body"])


def no_upstream(prefix):
    reqs = [r for r in M.requests() if r.get("model", "").startswith(prefix)]
    assert not reqs, ("gate should have answered itself", [(r["id"], r["model"]) for r in reqs])


def mock_input_tokens(req):
    """The mock's input count: the upstream body's bytes / 4, at least 1."""
    return max(len(req["body"].encode()) // 4, 1)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="  # 1x1, as the scripts send


def text_of(n):
    return "".join(("tok%d" if k == 0 else " tok%d") % k for k in range(n))


def pieces_of(n):
    return [("tok%d" if k == 0 else " tok%d") % k for k in range(n)]


def tool_args(t):
    return {"location": "Paris", "n": t}


def args_text(t):
    return json.dumps(tool_args(t), separators=(",", ":"))


def key_swapped(req, dialect):
    h = req["headers"]
    assert CLIENT_KEY not in json.dumps(h), h
    if dialect == "openai":
        assert h.get("authorization") == "Bearer " + UPSTREAM_KEY and "x-api-key" not in h, h
        assert "anthropic-version" not in h, h
    else:
        assert h.get("x-api-key") == UPSTREAM_KEY and "authorization" not in h, h
        assert h.get("anthropic-version") == "2023-06-01", h


def post(path, body, *headers):
    """curl POST to gate with the client key; returns (status, headers dict, body text)."""
    args = ["-i", "-X", "POST", g.url(path), "-H", "content-type: application/json", "-H",
            "authorization: Bearer " + CLIENT_KEY, "-H", "expect:", "--data-binary", "@-"]
    for h in headers:
        args += ["-H", h]
    rc, out, err = curl(*args, timeout=20, stdin=json.dumps(body).encode())
    assert rc == 0 or out, (rc, err)
    head, _, text = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, text, rc


# ---- the target dialects' stream rules ----

def check_anthropic_sse(text, complete=True):
    """Anthropic's event sequence: message_start first (then ping), blocks one at a time with indexes 0, 1,
    2... (start, deltas of the block's type, stop), message_delta with stop_reason and usage, message_stop
    last. Returns (blocks [{type, start, deltas}], message_start message, message_delta)."""
    evs = sse_events(text)
    assert evs, "no events: %r" % text
    datas = []
    for name, data in evs:
        assert name is not None, ("every Anthropic event is named", evs)
        d = json.loads(data)
        assert d.get("type") == name, ("event name and data type differ", name, data)
        datas.append(d)
    names = [n for n, _ in evs]
    assert names[0] == "message_start", names
    assert names.count("message_start") == 1, names
    msg = datas[0]["message"]
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["content"] == [], msg
    assert msg["stop_reason"] is None and msg["id"].startswith("msg_"), msg
    assert isinstance(msg["usage"]["input_tokens"], int) and msg["usage"]["output_tokens"] == 0, msg
    if not complete:
        return None, msg, None
    assert names[-1] == "message_stop" and names[-2] == "message_delta", names
    assert names.count("message_stop") == 1 and names.count("message_delta") == 1, names
    assert "error" not in names, names
    blocks, open_block = [], None
    for name, d in zip(names[1:-2], datas[1:-2]):
        if name == "ping":
            continue
        if name == "content_block_start":
            assert open_block is None, ("a block started while another is open", names)
            assert d["index"] == len(blocks), ("block indexes must be consecutive from 0", d, len(blocks))
            open_block = {"type": d["content_block"]["type"], "start": d["content_block"], "deltas": []}
        elif name == "content_block_delta":
            assert open_block is not None and d["index"] == len(blocks), ("delta outside its block", d)
            want = {"text": "text_delta", "tool_use": "input_json_delta", "thinking": "thinking_delta"}
            assert d["delta"]["type"] == want.get(open_block["type"]) or \
                (open_block["type"] == "thinking" and d["delta"]["type"] == "signature_delta"), (open_block, d)
            open_block["deltas"].append(d["delta"])
        elif name == "content_block_stop":
            assert open_block is not None and d["index"] == len(blocks), ("stop outside its block", d)
            blocks.append(open_block)
            open_block = None
        else:
            raise AssertionError("unexpected event %s between message_start and message_delta" % name)
    assert open_block is None, "a block never stopped"
    md = datas[-2]
    assert md["delta"]["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal",
                                          "pause_turn"), md
    assert "stop_sequence" in md["delta"], md
    assert isinstance(md["usage"]["output_tokens"], int), md
    for b in blocks:
        if b["type"] == "tool_use":
            assert b["start"]["input"] == {} and b["start"]["id"] and b["start"]["name"], b
    return blocks, msg, md


def anthropic_block_summary(blocks):
    """[("text", text), ("tool_use", id, name, input)] from check_anthropic_sse's blocks."""
    out = []
    for b in blocks:
        if b["type"] == "text":
            out.append(("text", "".join(d["text"] for d in b["deltas"])))
        elif b["type"] == "tool_use":
            out.append(("tool_use", b["start"]["id"], b["start"]["name"],
                        json.loads("".join(d["partial_json"] for d in b["deltas"]))))
        else:
            out.append((b["type"],))
    return out


def check_chat_sse(text, include_usage):
    """OpenAI's chunk sequence: unnamed data events; the first chunk carries role assistant; one id and model
    throughout; tool_calls deltas with a stable 0-based index, id, type and function.name on the first delta
    of each call and not after; finish_reason once, on the last choice chunk; with include_usage a final usage
    chunk with choices [] and "usage": null on all others; data: [DONE] last. Returns (content, calls
    [{id, name, arguments}], finish_reason, usage)."""
    evs = sse_events(text)
    assert evs and evs[-1] == (None, "[DONE]"), ("[DONE] must be last", evs[-3:])
    assert [d for _, d in evs].count("[DONE]") == 1, evs
    chunks = []
    for name, data in evs[:-1]:
        assert name is None, ("chat chunks have no event names", name)
        c = json.loads(data)
        assert "error" not in c, c
        assert c["object"] == "chat.completion.chunk", c
        chunks.append(c)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-"), chunks
    assert len({c["model"] for c in chunks}) == 1, chunks
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant", chunks[0]
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"]), chunks
    if include_usage:
        assert chunks[-1]["choices"] == [] and isinstance(chunks[-1]["usage"], dict), chunks[-1]
        assert all("usage" in c and c["usage"] is None for c in chunks[:-1]), [c.get("usage") for c in chunks]
        choice_chunks, usage = chunks[:-1], chunks[-1]["usage"]
    else:
        assert all(c.get("usage") is None for c in chunks), [c.get("usage") for c in chunks]
        assert all(c["choices"] for c in chunks), chunks
        choice_chunks, usage = chunks, None
    finishes = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    assert finishes[-1] and all(f is None for f in finishes[:-1]), finishes
    content, calls = "", []
    for c in choice_chunks:
        d = c["choices"][0]["delta"]
        content += d.get("content") or ""
        for tc in d.get("tool_calls") or []:
            i = tc["index"]
            if i == len(calls):
                assert tc.get("id") and tc.get("type") == "function" and tc["function"].get("name"), \
                    ("the first delta of a call carries id, type and name", tc)
                calls.append({"id": tc["id"], "name": tc["function"]["name"],
                              "arguments": tc["function"].get("arguments") or ""})
            else:
                assert i == len(calls) - 1, ("tool call indexes are stable and in order", i, len(calls), tc)
                assert "id" not in tc and "name" not in tc.get("function", {}), ("id and name only once", tc)
                calls[i]["arguments"] += tc["function"].get("arguments") or ""
    return content, calls, finishes[-1], usage


def check_responses_sse(text):
    """Responses events: named like their type, sequence_number 0, 1, 2...; response.created and
    response.in_progress first; items added and done in output_index order; response.completed last.
    Returns the events' data."""
    evs = sse_events(text)
    datas = [json.loads(d) for _, d in evs]
    for (name, _), d in zip(evs, datas):
        assert name == d["type"], (name, d)
    assert [d["sequence_number"] for d in datas] == list(range(len(datas))), [d["sequence_number"] for d in datas]
    types = [d["type"] for d in datas]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] == "response.completed" and types.count("response.completed") == 1, types
    added = [d["output_index"] for d in datas if d["type"] == "response.output_item.added"]
    done = [d["output_index"] for d in datas if d["type"] == "response.output_item.done"]
    assert added == done == list(range(len(added))), (added, done)
    return datas


def only_exchange(res, path):
    ex = [e for e in res["exchanges"] if e["url"].endswith(path)]
    assert len(ex) == 1, res["exchanges"]
    return ex[0]


# ======== Anthropic SDK, OpenAI-dialect upstream (/v1/messages -> /v1/chat/completions) ========

@test
def anthropic_create_text():
    r = anthropic("messages", "gpt-a-text")
    m = r["message"]
    assert m["type"] == "message" and m["role"] == "assistant" and m["model"] == "gpt-a-text", m
    assert m["id"].startswith("msg_"), m
    assert m["content"] == [{"type": "text", "text": text_of(5)}], m["content"]
    assert m["stop_reason"] == "end_turn" and m["stop_sequence"] is None, m
    req = upstream("gpt-a-text")
    assert req["path"] == "/v1/chat/completions", req
    key_swapped(req, "openai")
    assert json.loads(req["body"]) == {
        "model": "gpt-a-text", "max_completion_tokens": 100,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something."}]}, \
        req["body"]
    assert m["usage"]["input_tokens"] == mock_input_tokens(req) and m["usage"]["output_tokens"] == 5, m["usage"]
    assert r["headers"].get("x-gate-provider") == "oai", r["headers"]
    assert "x-gate-translation-dropped" not in r["headers"], r["headers"]
    assert r["headers"]["content-type"].startswith("application/json"), r["headers"]


@test
def anthropic_create_usage_excludes_cache_reads():
    # OpenAI's prompt_tokens includes cached_tokens; Anthropic's input_tokens leaves cache reads out.
    r = anthropic("messages", "gpt-a-cache", DIRECTIVES="cache_read=11")
    u = r["message"]["usage"]
    req = upstream("gpt-a-cache+cache_read=11")
    assert u["input_tokens"] == mock_input_tokens(req), (u, mock_input_tokens(req))
    assert u["cache_read_input_tokens"] == 11 and u["cache_creation_input_tokens"] == 0, u
    assert u["output_tokens"] == 5, u


@test
def anthropic_create_parallel_tool_use():
    r = anthropic("tools", "gpt-a-tools")
    m = r["message"]
    assert m["stop_reason"] == "tool_use", m
    assert [(b["type"], b["id"], b["name"], b["input"]) for b in m["content"]] == [
        ("tool_use", "call_0", "get_weather", tool_args(0)), ("tool_use", "call_1", "get_time", tool_args(1))], \
        m["content"]
    assert m["usage"]["output_tokens"] == 8, m["usage"]
    body = upstream_body("gpt-a-tools+tools=2")
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a place.",
                                          "parameters": {"type": "object", "properties": {
                                              "location": {"type": "string"}, "n": {"type": "integer"}},
                                              "required": ["location"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a place.",
                                          "parameters": {"type": "object", "properties": {
                                              "location": {"type": "string"}, "n": {"type": "integer"}},
                                              "required": ["location"]}}}], body["tools"]
    assert "tool_choice" not in body, body


@test
def anthropic_stream_text_final_message():
    r = anthropic("stream", "gpt-a-stream")
    assert r["texts"] == pieces_of(5), r["texts"]
    assert r["finalText"] == text_of(5), r
    f = r["final"]
    assert f["content"] == [{"type": "text", "text": text_of(5)}] or \
        f["content"] == [{"type": "text", "text": text_of(5), "citations": None}], f["content"]
    assert f["stop_reason"] == "end_turn" and f["model"] == "gpt-a-stream+chunks=5+pace_ms=2", f
    req = upstream("gpt-a-stream+chunks=5+pace_ms=2")
    body = json.loads(req["body"])
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}, body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}, body
    # message_start carries an estimate; message_delta the upstream's own counts, which the SDK keeps.
    assert r["messageStart"]["usage"]["input_tokens"] > 0, r["messageStart"]
    assert f["usage"]["input_tokens"] == mock_input_tokens(req) and f["usage"]["output_tokens"] == 5, f["usage"]
    ex = only_exchange(r, "/v1/messages")
    assert ex["headers"]["content-type"].startswith("text/event-stream"), ex["headers"]
    blocks, _, md = check_anthropic_sse(ex["raw"])
    assert anthropic_block_summary(blocks) == [("text", text_of(5))], blocks
    assert md["delta"]["stop_reason"] == "end_turn", md
    assert r["events"][0] == "message_start" and r["events"][-2:] == ["message_delta", "message_stop"], r["events"]


@test
def anthropic_stream_usage_excludes_cache_reads():
    model = "gpt-a-scache+chunks=5+pace_ms=2+cache_read=9"
    r = anthropic("stream", "gpt-a-scache", DIRECTIVES="cache_read=9")
    u = r["final"]["usage"]
    req = upstream(model)
    assert u["input_tokens"] == mock_input_tokens(req) and u["cache_read_input_tokens"] == 9, u
    assert u["output_tokens"] == 5, u
    _, _, md = check_anthropic_sse(only_exchange(r, "/v1/messages")["raw"])
    assert md["usage"]["input_tokens"] == mock_input_tokens(req) and md["usage"]["cache_read_input_tokens"] == 9, md


@test
def anthropic_stream_tools_final_message():
    model = "gpt-a-tstream+tools=2+preamble=1+chunks=2+pace_ms=2"
    r = anthropic("tool_stream", "gpt-a-tstream")
    f = r["final"]
    assert f["stop_reason"] == "tool_use", f
    assert [b["type"] for b in f["content"]] == ["text", "tool_use", "tool_use"], f["content"]
    assert f["content"][0]["text"] == text_of(2), f["content"]
    assert [(b["id"], b["name"], b["input"]) for b in f["content"][1:]] == [
        ("call_0", "get_weather", tool_args(0)), ("call_1", "get_time", tool_args(1))], f["content"]
    assert r["texts"] == pieces_of(2), r["texts"]
    # The SDK assembled each input from its input_json_delta pieces.
    assert r["json"][-1]["snapshot"] == tool_args(1), r["json"]
    ev = r["events"]
    assert "content_block_start:0:text" in ev and "content_block_start:1:tool_use" in ev and \
        "content_block_start:2:tool_use" in ev, ev
    req = upstream(model)
    assert f["usage"]["output_tokens"] == 2 + 8 and f["usage"]["input_tokens"] == mock_input_tokens(req), f["usage"]
    blocks, _, md = check_anthropic_sse(only_exchange(r, "/v1/messages")["raw"])
    assert anthropic_block_summary(blocks) == [("text", text_of(2)), ("tool_use", "call_0", "get_weather", tool_args(0)),
                                               ("tool_use", "call_1", "get_time", tool_args(1))], blocks
    assert md["delta"]["stop_reason"] == "tool_use" and md["usage"]["output_tokens"] == 10, md


@test
def anthropic_tool_loop_three_turns():
    r = anthropic("tool_loop", "gpt-a-loop")
    first, second, third = r["first"], r["second"], r["third"]
    assert first["stop_reason"] == "tool_use" and [b["id"] for b in first["content"]] == ["call_0", "call_1"], first
    assert second["stop_reason"] == "end_turn" and second["content"][0]["text"] == text_of(4), second
    assert third["stop_reason"] == "end_turn" and third["content"] == [{"type": "text", "text": text_of(3)}], third

    system = {"role": "system", "content": "You are terse.\n\nUse the tools."}
    t1 = upstream_body("gpt-a-loop+tools=2")
    # Two system text blocks: one system message (joined, or as text parts).
    sys1 = t1["messages"][0]
    assert sys1["role"] == "system", t1
    if isinstance(sys1["content"], list):
        assert [p["text"] for p in sys1["content"]] == ["You are terse.", "Use the tools."], sys1
        system = sys1
    else:
        assert sys1 == system, sys1
    assert t1["messages"] == [system, {"role": "user", "content": "What is the weather and the time in Paris?"}], t1

    assistant_calls = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": args_text(0)}},
        {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": args_text(1)}}]}
    t2 = upstream_body("gpt-a-loop+chunks=4+pace_ms=1")
    msgs = t2["messages"]
    assert msgs[:2] == t1["messages"], msgs
    a = msgs[2]
    assert a["role"] == "assistant" and a.get("content") in (None, "", []), a
    assert len(a["tool_calls"]) == 2, a
    for got, want in zip(a["tool_calls"], assistant_calls["tool_calls"]):
        assert got["id"] == want["id"] and got["type"] == "function", got
        assert got["function"]["name"] == want["function"]["name"], got
        assert json.loads(got["function"]["arguments"]) == json.loads(want["function"]["arguments"]), got
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_0", "content": "Sunny in Paris"}, msgs[3]
    assert msgs[4]["role"] == "tool" and msgs[4]["tool_call_id"] == "call_1", msgs[4]
    c4 = msgs[4]["content"]
    c4 = c4 if isinstance(c4, str) else "".join(p["text"] for p in c4)
    assert c4 == "Error: clock unavailable", msgs[4]
    u = msgs[5]
    assert u["role"] == "user" and (u["content"] == "Answer now." or
                                    u["content"] == [{"type": "text", "text": "Answer now."}]), u
    assert len(msgs) == 6, msgs
    assert t2["stream"] is True and [t["function"]["name"] for t in t2["tools"]] == ["get_weather", "get_time"], t2

    t3 = upstream_body("gpt-a-loop+chunks=3")
    assert t3["messages"][:6] == msgs, t3["messages"]
    assert t3["messages"][6] == {"role": "assistant", "content": text_of(4)} or \
        t3["messages"][6] == {"role": "assistant", "content": [{"type": "text", "text": text_of(4)}]}, t3["messages"][6]
    assert t3["messages"][7] == {"role": "user", "content": "Thanks. And tomorrow?"}, t3["messages"][7]
    assert len(t3["messages"]) == 8 and "stream" not in t3, t3


@test
def anthropic_sdk_tool_runner():
    # The SDK's toolRunner, history sent whole (thread: false): it runs both tools and sends the results.
    model = "gpt-a-runner+tools=2"
    r = anthropic("tool_runner", "gpt-a-runner")
    assert r["error"]["name"] is None, r["error"]
    assert [t["stop_reason"] for t in r["turns"]] == ["tool_use", "tool_use"], r["turns"]
    assert [(x["name"], x["input"]) for x in r["ran"]][:2] == [("get_weather", tool_args(0)),
                                                                ("get_time", tool_args(1))], r["ran"]
    reqs = [x for x in M.requests() if x.get("model") == model]
    assert len(reqs) == 2, reqs
    second = json.loads(reqs[1]["body"])["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool", "tool"], second
    assert [c["id"] for c in second[1]["tool_calls"]] == ["call_0", "call_1"], second[1]
    assert [(m["tool_call_id"], m["content"]) for m in second[2:]] == [("call_0", "Sunny in Paris"),
                                                                        ("call_1", "13:00")], second
    assert [t["function"]["name"] for t in json.loads(reqs[1]["body"])["tools"]] == ["get_weather", "get_time"]


@test
def anthropic_sdk_tool_runner_server_thread_not_truncated():
    # The toolRunner's default keeps the conversation on the server (beta "thread": create, then continue
    # with only the new turn). gate keeps no state: it must refuse, never send an OpenAI upstream a
    # conversation cut down to the last turn.
    model = "gpt-a-thread+tools=2"
    r = anthropic("tool_runner", "gpt-a-thread", THREAD="1")
    reqs = [x for x in M.requests() if x.get("model") == model]
    truncated = [x for x in reqs if json.loads(x["body"])["messages"][0]["role"] == "tool"]
    assert not truncated, ("a thread continuation reached the upstream without its history",
                           [e["body"] for e in r["exchanges"]], [x["body"] for x in truncated])
    assert r["error"]["name"] == "BadRequestError" and "thread" in r["error"]["message"], r["error"]


@test
def anthropic_fields_mapped_and_dropped():
    r = anthropic("fields", "gpt-a-fields")
    assert r["message"]["stop_reason"] == "tool_use", r["message"]
    dropped = r["headers"].get("x-gate-translation-dropped", "")
    assert set(dropped.split(",")) == {"top_k", "cache_control"}, r["headers"]
    body = upstream_body("gpt-a-fields+tools=1")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Cached part."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "text", "text": "Question."}]}], body["messages"]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and "top_k" not in body, body
    assert body["stop"] == ["END", "STOP"] and body["user"] == "user-42", body
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False, body
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body, body
    assert "metadata" not in body and "cache_control" not in json.dumps(body), body


@test
def anthropic_refused_is_bad_request():
    r = anthropic("refused", "gpt-a-refused")
    for name, e in r.items():
        assert e["name"] == "BadRequestError" and e["status"] == 400, (name, e)
        assert e["error"]["type"] == "error" and e["error"]["error"]["type"] == "invalid_request_error", (name, e)
    assert "document" in r["documentUrl"]["error"]["error"]["message"] or \
        "url" in r["documentUrl"]["error"]["error"]["message"], r["documentUrl"]
    assert "assistant" in r["prefill"]["error"]["error"]["message"], r["prefill"]
    no_upstream("gpt-a-refused")


@test
def too_many_json_values_are_refused_not_translated():
    # A 32 MiB body of small values would take over a gigabyte of jansson trees to translate: past
    # TRANSLATE_JSON_MAX_VALUES (200,000) the client gets a 400 in its dialect, and gate goes on serving.
    blocks = [{"type": "text", "text": "x"}] * 70000      # three values each
    body = {"model": "gpt-a-huge", "max_tokens": 16, "messages": [{"role": "user", "content": blocks}]}
    status, h, text, _ = post("/v1/messages", body, "anthropic-version: 2023-06-01")
    assert status == 400, (status, text[:300])
    err = json.loads(text)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error", err
    assert "more than 200000 JSON values" in err["error"]["message"], err
    no_upstream("gpt-a-huge")
    status, h, text, _ = post("/v1/messages/count_tokens", body, "anthropic-version: 2023-06-01")
    assert status == 400 and "more than 200000 JSON values" in text, (status, text[:300])
    body["messages"][0]["content"] = blocks[:100]
    status, h, text, _ = post("/v1/messages", body, "anthropic-version: 2023-06-01")
    assert status == 200, (status, text[:300])


ANTHROPIC_ERRORS = {  # upstream (OpenAI dialect) status: the Anthropic SDK's class, Anthropic error type
    400: ("BadRequestError", "invalid_request_error"), 401: ("AuthenticationError", "authentication_error"),
    403: ("PermissionDeniedError", "permission_error"), 404: ("NotFoundError", "not_found_error"),
    429: ("RateLimitError", "rate_limit_error"), 500: ("InternalServerError", "api_error"),
    502: ("InternalServerError", "api_error"), 529: ("OverloadedError", "overloaded_error")}


@test
def anthropic_upstream_errors_are_typed_errors():
    r = anthropic("errors", "gpt-a-err", STATUSES=",".join(map(str, ANTHROPIC_ERRORS)))
    for status, (cls, etype) in ANTHROPIC_ERRORS.items():
        e = r[str(status)]
        assert e["status"] == status and cls in e["instanceOf"], (status, e)
        assert e["error"]["type"] == "error" and e["error"]["error"]["type"] == etype, (status, e)
        assert e["error"]["error"]["message"], (status, e)
        req = upstream("gpt-a-err+error=%d" % status)
        assert req["path"] == "/v1/chat/completions", req


@test
def anthropic_error_429_raw_keeps_retry_after():
    # retry-after beyond gate's own retry horizon: handed to the client, in the client's dialect.
    status, h, text, _ = post("/v1/messages", {"model": "gpt-a-e429raw+error=429+retry_after=30", "max_tokens": 10,
                                               "messages": [{"role": "user", "content": "hi"}]},
                              "anthropic-version: 2023-06-01")
    assert status == 429 and h.get("retry-after") == "30", (status, h)
    body = json.loads(text)
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error" and body["error"]["message"], body


@test
def anthropic_stream_error_529_before_start():
    r = anthropic("stream_error", "gpt-a-se529", DIRECTIVES="error=529")
    e = r["error"]
    assert e["name"] == "OverloadedError" and e["status"] == 529, e
    assert r["events"] == [], r


@test
def anthropic_stream_reset_is_an_error():
    model = "gpt-a-reset+chunks=20+pace_ms=5+reset_after=4"
    r = anthropic("stream_error", "gpt-a-reset", DIRECTIVES="chunks=20+pace_ms=5+reset_after=4")
    e = r["error"]
    assert e["name"] not in (None,), ("finalMessage() returned cleanly after a broken upstream", r)
    assert "message_stop" not in r["events"] and "message_delta" not in r["events"], r["events"]
    assert r["events"][0] == "message_start", r["events"]
    assert r["texts"] == pieces_of(len(r["texts"])) and len(r["texts"]) < 20, r["texts"]
    assert M.wait_event(upstream(model)["id"])["event"] == "reset"
    raw = only_exchange(r, "/v1/messages")
    check_anthropic_sse(raw["raw"], complete=False)
    names = [n for n, _ in sse_events(raw["raw"])]
    # Anthropic's error event, then a broken transfer (no clean chunked end): never a quiet success.
    assert names[-1] == "error" and names.count("error") == 1, names
    assert raw["rawError"], ("the client stream ended cleanly", raw)
    assert e["name"] == "APIError" and e["error"]["error"]["type"] == "api_error", e


@test
def anthropic_stream_upstream_error_event():
    model = "gpt-a-eafter+chunks=10+error_after=3"
    r = anthropic("stream_error", "gpt-a-eafter", DIRECTIVES="chunks=10+error_after=3")
    e = r["error"]
    assert e["name"] == "APIError" and e["error"] and e["error"]["type"] == "error", e
    assert e["error"]["error"]["type"] == "api_error", e
    assert "message_stop" not in r["events"], r["events"]
    raw = only_exchange(r, "/v1/messages")["raw"]
    evs = sse_events(raw)
    assert evs[-1][0] == "error" and [n for n, _ in evs].count("error") == 1, evs
    check_anthropic_sse(raw, complete=False)
    assert upstream(model)


@test
def anthropic_big_stream():
    r = anthropic("big_stream", "gpt-a-big+chunks=300+chunk_bytes=700")
    assert r["sizes"] == [700] * 300 and r["length"] == 210000 and r["blocks"] == 1, (len(r["sizes"]), r["length"])
    assert r["stop_reason"] == "end_turn" and r["usage"]["output_tokens"] == 300, r


@test
def anthropic_stream_abort_cancels_upstream():
    model = "gpt-a-abort+chunks=100+pace_ms=50"
    r = anthropic("abort", model)
    assert r["aborted"] and r["texts"] == pieces_of(3), r
    assert r["threw"] is None or r["threw"]["name"] == "APIUserAbortError", r
    assert r["ms"] < 3000, r
    assert M.wait_event(upstream(model)["id"], timeout=5)["event"] == "aborted"


@test
def anthropic_count_tokens_is_an_estimate():
    r = anthropic("count_tokens", "gpt-a-count")
    assert r["headers"].get("x-gate-token-count") == "estimate", r["headers"]
    assert isinstance(r["count"]["input_tokens"], int) and r["count"]["input_tokens"] > 0, r
    no_upstream("gpt-a-count")


@test
def anthropic_fallback_from_passthrough_to_translation():
    # fba-* is served by an Anthropic provider first, then an OpenAI-compatible one: the first answer (529) is
    # retried on the second, translated, invisibly to the client. Non-streaming, then streaming.
    model = "fba-create+fail_times=1+error=529"
    r = anthropic("messages", "fba-create", DIRECTIVES="fail_times=1+error=529")
    assert r["message"]["content"] == [{"type": "text", "text": text_of(5)}], r["message"]
    assert r["headers"]["x-gate-provider"] == "fb-oai", r["headers"]
    reqs = [x for x in M.requests() if x.get("model") == model]
    assert [x["path"] for x in reqs] == ["/v1/messages", "/v1/chat/completions"], reqs
    assert json.loads(reqs[0]["body"]) == json.loads(only_exchange(r, "/v1/messages")["body"]), reqs[0]

    model = "fba-stream+chunks=5+pace_ms=2+fail_times=1+error=529"
    r = anthropic("stream", "fba-stream", DIRECTIVES="fail_times=1+error=529")
    assert r["finalText"] == text_of(5) and r["final"]["stop_reason"] == "end_turn", r
    ex = only_exchange(r, "/v1/messages")
    assert ex["headers"]["x-gate-provider"] == "fb-oai", ex["headers"]
    check_anthropic_sse(ex["raw"])
    reqs = [x for x in M.requests() if x.get("model") == model]
    assert [x["path"] for x in reqs] == ["/v1/messages", "/v1/chat/completions"], reqs


# ---- the raw Anthropic stream, fetched with curl ----

def tools_anthropic(n):
    names = ["get_weather", "get_time", "get_news"][:n]
    return [{"name": x, "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}
            for x in names]


@test
def anthropic_raw_sse_parallel_tool_calls():
    model = "gpt-a-raw3+tools=3+preamble=1+chunks=2"
    status, h, text, rc = post("/v1/messages", {"model": model, "max_tokens": 50, "stream": True,
                                                "messages": [{"role": "user", "content": "go"}],
                                                "tools": tools_anthropic(3)}, "anthropic-version: 2023-06-01")
    assert status == 200 and rc == 0 and h["content-type"].startswith("text/event-stream"), (status, h, rc)
    blocks, msg, md = check_anthropic_sse(text)
    assert [n for n, _ in sse_events(text)][1] == "ping", text[:400]
    assert msg["model"] == model, msg
    assert anthropic_block_summary(blocks) == [("text", text_of(2))] + [
        ("tool_use", "call_%d" % t, ["get_weather", "get_time", "get_news"][t], tool_args(t)) for t in range(3)], blocks
    req = upstream(model)
    assert md["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}, md
    assert md["usage"]["output_tokens"] == 2 + 3 * 4 and md["usage"]["input_tokens"] == mock_input_tokens(req), md


@test
def anthropic_raw_sse_max_tokens():
    model = "gpt-a-rawmax+chunks=8"
    status, h, text, rc = post("/v1/messages", {"model": model, "max_tokens": 3, "stream": True,
                                                "messages": [{"role": "user", "content": "go"}]},
                               "anthropic-version: 2023-06-01")
    assert status == 200, (status, text)
    blocks, _, md = check_anthropic_sse(text)
    assert anthropic_block_summary(blocks) == [("text", text_of(3))], blocks
    assert md["delta"]["stop_reason"] == "max_tokens" and md["usage"]["output_tokens"] == 3, md


# ======== OpenAI SDK, Anthropic-dialect upstream (chat completions / Responses -> /v1/messages) ========

@test
def openai_chat_create_usage_includes_cache():
    model = "claude-o-chat+cache_read=7+cache_write=3"
    r = openai("chat", "claude-o-chat", DIRECTIVES="cache_read=7+cache_write=3")
    c = r["completion"]
    assert c["object"] == "chat.completion" and c["model"] == model and c["id"].startswith("chatcmpl-"), c
    ch = c["choices"][0]
    assert ch["message"]["role"] == "assistant" and ch["message"]["content"] == text_of(5), ch
    assert ch["finish_reason"] == "stop", ch
    req = upstream(model)
    assert req["path"] == "/v1/messages", req
    key_swapped(req, "anthropic")
    assert json.loads(req["body"]) == {"model": model, "system": "Be brief.", "max_tokens": 100,
                                       "messages": [{"role": "user", "content": [{"type": "text",
                                                                                   "text": "Say something."}]}]}, \
        req["body"]
    inp = mock_input_tokens(req)
    u = c["usage"]
    assert u["prompt_tokens"] == inp + 7 + 3, (u, inp)
    assert u["prompt_tokens_details"]["cached_tokens"] == 7, u
    assert u["completion_tokens"] == 5 and u["total_tokens"] == inp + 10 + 5, u
    assert r["headers"].get("x-gate-provider") == "anth" and "x-gate-translation-dropped" not in r["headers"], \
        r["headers"]


@test
def openai_chat_create_tool_calls():
    model = "claude-o-tools+tools=2"
    r = openai("chat_tools", "claude-o-tools")
    ch = r["completion"]["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    calls = ch["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("toolu_0", "function", "get_weather", tool_args(0)), ("toolu_1", "function", "get_time", tool_args(1))], calls
    assert r["completion"]["usage"]["completion_tokens"] == 8, r["completion"]["usage"]
    body = upstream_body(model)
    assert body["tools"] == [
        {"name": "get_weather", "description": "The weather in a place.", "input_schema": {
            "type": "object", "properties": {"location": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["location"]}},
        {"name": "get_time", "description": "The time in a place.", "input_schema": {
            "type": "object", "properties": {"location": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["location"]}}], body["tools"]
    assert body["max_tokens"] == 4096 and "tool_choice" not in body, body


@test
def openai_chat_stream_helper_tool_calls():
    model = "claude-o-ts+tools=2+preamble=1+chunks=2+pace_ms=2+cache_read=5"
    r = openai("chat_stream_tools", "claude-o-ts", DIRECTIVES="cache_read=5")
    f = r["final"]
    ch = f["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    assert ch["message"]["content"] == text_of(2) and r["content"] == pieces_of(2), (ch, r["content"])
    calls = ch["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("toolu_0", "get_weather", tool_args(0)), ("toolu_1", "get_time", tool_args(1))], calls
    done = sorted(r["argDone"], key=lambda e: e["index"])
    assert [(e["name"], json.loads(e["arguments"])) for e in done] == [("get_weather", tool_args(0)),
                                                                          ("get_time", tool_args(1))], done
    for t in (0, 1):
        assert "".join(e["arguments_delta"] for e in r["argDeltas"] if e["index"] == t) == args_text(t), r["argDeltas"]
    req = upstream(model)
    assert json.loads(req["body"])["stream"] is True and "stream_options" not in json.loads(req["body"]), req["body"]
    u = f["usage"]
    assert u["prompt_tokens"] == mock_input_tokens(req) + 5 and u["prompt_tokens_details"]["cached_tokens"] == 5, u
    assert u["completion_tokens"] == 2 + 8, u
    ex = only_exchange(r, "/v1/chat/completions")
    content, calls, finish, usage = check_chat_sse(ex["raw"], include_usage=True)
    assert content == text_of(2) and finish == "tool_calls" and usage == u, (content, finish, usage)
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("toolu_0", "get_weather", tool_args(0)), ("toolu_1", "get_time", tool_args(1))], calls


@test
def openai_chat_stream_without_include_usage():
    r = openai("chat_stream_iter", "claude-o-iter")
    chunks = r["chunks"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == text_of(4), chunks
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop", chunks[-1]
    content, calls, finish, usage = check_chat_sse(only_exchange(r, "/v1/chat/completions")["raw"], include_usage=False)
    assert content == text_of(4) and calls == [] and finish == "stop" and usage is None


@test
def openai_chat_tool_loop_three_turns():
    r = openai("chat_tool_loop", "claude-o-loop")
    assert r["first"]["choices"][0]["finish_reason"] == "tool_calls", r["first"]
    assert r["second"]["choices"][0]["message"]["content"] == text_of(4), r["second"]
    assert r["third"]["choices"][0]["message"]["content"] == text_of(3), r["third"]

    t1 = upstream_body("claude-o-loop+tools=2")
    assert t1["system"] == "You are terse.", t1
    user1 = {"role": "user", "content": [{"type": "text", "text": "What is the weather and the time in Paris?"}]}
    assert t1["messages"] == [user1], t1["messages"]

    t2 = upstream_body("claude-o-loop+chunks=4+pace_ms=1")
    assert t2["system"] == "You are terse." and t2["stream"] is True, t2
    msgs = t2["messages"]
    assert msgs[0] == user1, msgs
    assert msgs[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": tool_args(0)},
        {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": tool_args(1)}]}, msgs[1]
    assert msgs[2]["role"] == "user" and len(msgs) == 3, msgs
    res = msgs[2]["content"]
    assert [(b["type"], b["tool_use_id"]) for b in res] == [("tool_result", "toolu_0"), ("tool_result", "toolu_1")], res

    def result_text(b):
        c = b["content"]
        return c if isinstance(c, str) else "".join(p["text"] for p in c)
    assert [result_text(b) for b in res] == ["Sunny in Paris", "13:00"], res

    t3 = upstream_body("claude-o-loop+chunks=3")
    assert t3["messages"][:3] == msgs, t3["messages"]
    assert t3["messages"][3] == {"role": "assistant", "content": [{"type": "text", "text": text_of(4)}]}, t3["messages"]
    assert t3["messages"][4] == {"role": "user", "content": [{"type": "text", "text": "Thanks. And tomorrow?"}]}, \
        t3["messages"]
    assert len(t3["messages"]) == 5, t3["messages"]


@test
def openai_chat_dropped_fields_header():
    model = "claude-o-drop"
    r = openai("chat_dropped", model)
    assert r["completion"]["choices"][0]["message"]["content"] == text_of(5), r["completion"]
    dropped = r["headers"].get("x-gate-translation-dropped", "")
    assert set(dropped.split(",")) == {"seed", "logit_bias"}, r["headers"]
    body = upstream_body(model)
    assert "seed" not in body and "logit_bias" not in body, body
    assert body["system"] == "Be brief." and body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}], body["messages"]
    assert body["temperature"] == 0.2 and body["stop_sequences"] == ["END"], body
    assert body["metadata"] == {"user_id": "user-7"} and body["max_tokens"] == 50, body
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}, body


@test
def openai_chat_refused_is_bad_request():
    r = openai("chat_refused", "claude-o-refused")
    for name, e in r.items():
        assert e["name"] == "BadRequestError" and e["status"] == 400, (name, e)
        assert e["code"] == "translation_refused", (name, e)
        assert e["type"] == "invalid_request_error", (name, e)
    assert "'n'" in r["n2"]["message"], r["n2"]
    assert "temperature" in r["hot"]["message"], r["hot"]
    no_upstream("claude-o-refused")


OPENAI_ERRORS = {  # upstream (Anthropic dialect) status: the OpenAI SDK's class, OpenAI error type, code
    400: ("BadRequestError", "invalid_request_error", "invalid_request_error"),
    401: ("AuthenticationError", "authentication_error", "authentication_error"),
    403: ("PermissionDeniedError", "permission_error", "permission_error"),
    404: ("NotFoundError", "invalid_request_error", "not_found_error"),
    429: ("RateLimitError", "rate_limit_error", "rate_limit_exceeded"),
    500: ("InternalServerError", "server_error", "api_error"),
    529: ("InternalServerError", "server_error", "overloaded_error")}


@test
def openai_upstream_errors_are_typed_errors():
    r = openai("errors", "claude-o-err", STATUSES=",".join(map(str, OPENAI_ERRORS)))
    for status, (cls, etype, code) in OPENAI_ERRORS.items():
        e = r[str(status)]
        assert e["status"] == status and cls in e["instanceOf"], (status, e)
        assert e["type"] == etype and e["code"] == code and e["error"]["message"], (status, e)
        assert set(e["error"]) == {"message", "type", "param", "code"}, (status, e)
        assert upstream("claude-o-err+error=%d" % status)["path"] == "/v1/messages"


@test
def openai_stream_error_429_before_start():
    r = openai("stream_error", "claude-o-se429", DIRECTIVES="error=429")
    e = r["error"]
    assert e["name"] == "RateLimitError" and e["status"] == 429 and e["code"] == "rate_limit_exceeded", e
    assert r["chunks"] == [], r


@test
def openai_stream_reset_is_an_error():
    model = "claude-o-reset+chunks=30+pace_ms=5+reset_after=5"
    r = openai("stream_error", "claude-o-reset", DIRECTIVES="chunks=30+pace_ms=5+reset_after=5")
    e = r["error"]
    assert e["name"] == "APIError" and e["type"] == "server_error" and e["error"]["message"], \
        ("the stream ended without the SDK raising", r)
    assert not any(c["choices"] and c["choices"][0]["finish_reason"] for c in r["chunks"]), r["chunks"]
    assert [c["choices"][0]["delta"].get("content") for c in r["chunks"][1:]] == pieces_of(len(r["chunks"]) - 1)
    assert M.wait_event(upstream(model)["id"])["event"] == "reset"
    raw = only_exchange(r, "/v1/chat/completions")
    assert "[DONE]" not in raw["raw"], raw["raw"][-300:]
    last = json.loads(sse_events(raw["raw"])[-1][1])
    assert set(last) == {"error"}, last
    assert raw["rawError"], ("the client stream ended cleanly", raw)


@test
def openai_stream_upstream_error_event():
    r = openai("stream_helper_error", "claude-o-eafter", DIRECTIVES="chunks=10+error_after=4")
    e = r["error"]
    assert e["name"] == "APIError" and e["error"] and e["error"].get("message"), e
    raw = only_exchange(r, "/v1/chat/completions")["raw"]
    evs = sse_events(raw)
    last = json.loads(evs[-1][1])
    assert "error" in last and last["error"]["message"], evs[-1]
    assert "[DONE]" not in raw, raw[-300:]


@test
def openai_big_stream():
    r = openai("big_stream", "claude-o-big+chunks=300+chunk_bytes=700")
    assert r["sizes"] == [700] * 300 and r["length"] == 210000, (len(r["sizes"]), r["length"])
    assert r["finish_reason"] == "stop" and r["usage"]["completion_tokens"] == 300, r


@test
def openai_stream_abort_cancels_upstream():
    model = "claude-o-abort+chunks=100+pace_ms=50"
    r = openai("abort", model)
    # The role chunk and two text chunks, then the abort: the loop ends at once, quietly.
    assert r["chunks"] == 3 and r["threw"] is None and r["ms"] < 3000, r
    assert M.wait_event(upstream(model)["id"], timeout=5)["event"] == "aborted"


@test
def openai_fallback_from_passthrough_to_translation():
    # fbo-*: an OpenAI-compatible provider first, then an Anthropic one.
    model = "fbo-chat+fail_times=1+error=529"
    r = openai("chat", "fbo-chat", DIRECTIVES="fail_times=1+error=529")
    assert r["completion"]["choices"][0]["message"]["content"] == text_of(5), r["completion"]
    assert r["headers"]["x-gate-provider"] == "fb-anth2", r["headers"]
    reqs = [x for x in M.requests() if x.get("model") == model]
    assert [x["path"] for x in reqs] == ["/v1/chat/completions", "/v1/messages"], reqs

    model = "fbo-stream+tools=2+preamble=1+chunks=2+pace_ms=2+fail_times=1+error=529"
    r = openai("chat_stream_tools", "fbo-stream", DIRECTIVES="fail_times=1+error=529")
    ch = r["final"]["choices"][0]
    assert ch["finish_reason"] == "tool_calls" and len(ch["message"]["tool_calls"]) == 2, ch
    ex = only_exchange(r, "/v1/chat/completions")
    assert ex["headers"]["x-gate-provider"] == "fb-anth2", ex["headers"]
    check_chat_sse(ex["raw"], include_usage=True)
    reqs = [x for x in M.requests() if x.get("model") == model]
    assert [x["path"] for x in reqs] == ["/v1/chat/completions", "/v1/messages"], reqs


# ---- Responses, Anthropic upstream ----

@test
def openai_responses_create_anthropic():
    model = "claude-o-resp+cache_read=4"
    r = openai("responses", "claude-o-resp", DIRECTIVES="cache_read=4")
    resp = r["response"]
    assert r["output_text"] == text_of(5), r
    assert resp["object"] == "response" and resp["status"] == "completed" and resp["model"] == model, resp
    assert resp["id"].startswith("resp_"), resp
    req = upstream(model)
    assert req["path"] == "/v1/messages", req
    key_swapped(req, "anthropic")
    body = json.loads(req["body"])
    assert body["system"] == "Be brief." and body["max_tokens"] == 100, body
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say something."}]}], body
    u = resp["usage"]
    assert u["input_tokens"] == mock_input_tokens(req) + 4 and u["input_tokens_details"]["cached_tokens"] == 4, u
    assert u["output_tokens"] == 5, u


@test
def openai_responses_stream_anthropic():
    r = openai("responses_stream", "claude-o-rs")
    types = r["types"]
    assert types.count("response.output_text.delta") == 4, types
    deltas = [e["delta"] for e in r["events"] if e["type"] == "response.output_text.delta"]
    assert deltas == pieces_of(4), deltas
    done = r["events"][-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == text_of(4), done
    datas = check_responses_sse(only_exchange(r, "/v1/responses")["raw"])
    assert [d["type"] for d in datas] == types, types
    body = upstream_body("claude-o-rs+chunks=4+pace_ms=2")
    assert body["stream"] is True and body["system"] == "Be brief.", body


@test
def openai_responses_stream_helper_tools_anthropic():
    model = "claude-o-rsh+tools=2+preamble=1+chunks=3+pace_ms=2"
    r = openai("responses_stream_helper", "claude-o-rsh")
    f = r["final"]
    assert f["status"] == "completed", f
    assert [o["type"] for o in f["output"]] == ["message", "function_call", "function_call"], f["output"]
    assert r["text"] == text_of(3) and r["deltas"] == pieces_of(3), r
    calls = f["output"][1:]
    assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("toolu_0", "get_weather", tool_args(0)), ("toolu_1", "get_time", tool_args(1))], calls
    assert [(e["name"], json.loads(e["arguments"])) for e in r["argDone"]] == [
        ("get_weather", tool_args(0)), ("get_time", tool_args(1))], r["argDone"]
    check_responses_sse(only_exchange(r, "/v1/responses")["raw"])
    body = upstream_body(model)
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"], body
    assert "input_schema" in body["tools"][0], body


@test
def openai_responses_tool_loop_anthropic():
    r = openai("responses_tool_loop", "claude-o-rloop")
    assert r["output_text"] == text_of(3), r
    assert [o["type"] for o in r["first"]["output"]] == ["function_call", "function_call"], r["first"]
    body = upstream_body("claude-o-rloop+chunks=3")
    assert body["system"] == "Be terse.", body
    msgs = body["messages"]
    assert msgs[0] == {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]}, msgs
    assert msgs[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": tool_args(0)},
        {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": tool_args(1)}]}, msgs[1]
    assert msgs[2]["role"] == "user" and [(b["type"], b["tool_use_id"]) for b in msgs[2]["content"]] == [
        ("tool_result", "toolu_0"), ("tool_result", "toolu_1")], msgs[2]
    assert len(msgs) == 3, msgs


@test
def openai_responses_refused():
    r = openai("responses_refused", "claude-o-rref")
    for name, e in r.items():
        assert e["name"] == "BadRequestError" and e["status"] == 400 and e["code"] == "translation_refused", (name, e)
    assert "previous_response_id" in r["prev"]["message"], r["prev"]
    assert "store" in r["stored"]["message"], r["stored"]
    no_upstream("claude-o-rref")


@test
def openai_responses_stream_upstream_error_anthropic():
    r = openai("responses_stream_error", "claude-o-rerr", DIRECTIVES="chunks=10+error_after=4")
    assert r["types"][:2] == ["response.created", "response.in_progress"], r["types"]
    assert "response.completed" not in r["types"], r["types"]
    # The SDK either throws on the error event or hands it over, followed by response.failed.
    if r["error"]["name"] is None:
        assert r["types"][-2:] == ["error", "response.failed"], r["types"]
        assert r["failed"]["status"] == "failed" and r["failed"]["error"]["message"], r["failed"]
    raw = only_exchange(r, "/v1/responses")["raw"]
    names = [n for n, _ in sse_events(raw)]
    assert names[-2:] == ["error", "response.failed"], names


# ---- Responses, openai-compatible upstream (translated to chat completions) ----

@test
def openai_responses_create_chat():
    model = "gpt-o-resp+cache_read=6"
    r = openai("responses", "gpt-o-resp", DIRECTIVES="cache_read=6")
    resp = r["response"]
    assert r["output_text"] == text_of(5) and resp["status"] == "completed" and resp["model"] == model, r
    req = upstream(model)
    assert req["path"] == "/v1/chat/completions", req
    key_swapped(req, "openai")
    assert json.loads(req["body"]) == {
        "model": model, "max_completion_tokens": 100,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something."}]}, \
        req["body"]
    u = resp["usage"]
    assert u["input_tokens"] == mock_input_tokens(req) + 6 and u["input_tokens_details"]["cached_tokens"] == 6, u
    assert u["output_tokens"] == 5 and u["total_tokens"] == u["input_tokens"] + 5, u


@test
def openai_responses_stream_chat():
    r = openai("responses_stream", "gpt-o-rs")
    deltas = [e["delta"] for e in r["events"] if e["type"] == "response.output_text.delta"]
    assert deltas == pieces_of(4), r["types"]
    assert r["events"][-1]["response"]["output"][0]["content"][0]["text"] == text_of(4), r["events"][-1]
    check_responses_sse(only_exchange(r, "/v1/responses")["raw"])
    req = upstream("gpt-o-rs+chunks=4+pace_ms=2")
    body = json.loads(req["body"])
    assert req["path"] == "/v1/chat/completions" and body["stream"] is True, req
    assert body["stream_options"] == {"include_usage": True}, body
    u = r["events"][-1]["response"]["usage"]
    assert u["input_tokens"] == mock_input_tokens(req) and u["output_tokens"] == 4, u


@test
def openai_responses_stream_helper_tools_chat():
    model = "gpt-o-rsh+tools=2+preamble=1+chunks=3+pace_ms=2"
    r = openai("responses_stream_helper", "gpt-o-rsh")
    f = r["final"]
    assert f["status"] == "completed", f
    assert [o["type"] for o in f["output"]] == ["message", "function_call", "function_call"], f["output"]
    assert r["text"] == text_of(3), r
    assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in f["output"][1:]] == [
        ("call_0", "get_weather", tool_args(0)), ("call_1", "get_time", tool_args(1))], f["output"]
    check_responses_sse(only_exchange(r, "/v1/responses")["raw"])
    body = upstream_body(model)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"], body


@test
def openai_responses_tool_loop_chat():
    r = openai("responses_tool_loop", "gpt-o-rloop")
    assert r["output_text"] == text_of(3), r
    body = upstream_body("gpt-o-rloop+chunks=3")
    msgs = body["messages"]
    assert msgs[0] == {"role": "system", "content": "Be terse."}, msgs
    assert msgs[1] == {"role": "user", "content": "Weather and time in Paris?"} or \
        msgs[1] == {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]}, msgs
    a = msgs[2]
    assert a["role"] == "assistant" and [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                                         for c in a["tool_calls"]] == [
        ("call_0", "get_weather", tool_args(0)), ("call_1", "get_time", tool_args(1))], a
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_0", "content": "Sunny"}, msgs[3]
    assert msgs[4] == {"role": "tool", "tool_call_id": "call_1", "content": "13:00"}, msgs[4]
    assert len(msgs) == 5, msgs


@test
def openai_responses_native_is_passed_through():
    model = "native-o-resp"
    r = openai("responses", model)
    assert r["output_text"] == text_of(5), r
    req = upstream(model)
    assert req["path"] == "/v1/responses", req
    assert json.loads(req["body"])["instructions"] == "Be brief.", req["body"]


# ---- the raw OpenAI streams, fetched with curl ----

def tools_openai(n):
    return [{"type": "function", "function": {"name": x, "parameters": {"type": "object"}}}
            for x in ["get_weather", "get_time", "get_news"][:n]]


@test
def openai_raw_chat_sse_parallel_tools_with_usage():
    model = "claude-o-raw3+tools=3+cache_read=2+cache_write=1"
    status, h, text, rc = post("/v1/chat/completions", {"model": model, "stream": True,
                                                        "stream_options": {"include_usage": True},
                                                        "messages": [{"role": "user", "content": "go"}],
                                                        "tools": tools_openai(3)})
    assert status == 200 and rc == 0 and h["content-type"].startswith("text/event-stream"), (status, h)
    content, calls, finish, usage = check_chat_sse(text, include_usage=True)
    assert content == "" and finish == "tool_calls", (content, finish)
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("toolu_%d" % t, n, tool_args(t)) for t, n in enumerate(["get_weather", "get_time", "get_news"])], calls
    req = upstream(model)
    inp = mock_input_tokens(req)
    assert usage["prompt_tokens"] == inp + 3 and usage["prompt_tokens_details"]["cached_tokens"] == 2, usage
    assert usage["completion_tokens"] == 12 and usage["total_tokens"] == inp + 3 + 12, usage


@test
def openai_raw_chat_sse_length():
    model = "claude-o-rawlen+chunks=9"
    status, h, text, rc = post("/v1/chat/completions", {"model": model, "stream": True, "max_tokens": 2, "seed": 1,
                                                        "messages": [{"role": "user", "content": "go"}]})
    assert status == 200, (status, text)
    assert h.get("x-gate-translation-dropped") == "seed", h
    content, calls, finish, usage = check_chat_sse(text, include_usage=False)
    assert content == text_of(2) and finish == "length" and usage is None, (content, finish)


@test
def openai_raw_responses_sse_chat():
    model = "gpt-o-rawresp+tools=1+preamble=1+chunks=2"
    status, h, text, rc = post("/v1/responses", {"model": model, "stream": True, "input": "go",
                                                 "tools": [{"type": "function", "name": "get_weather",
                                                            "parameters": {"type": "object"}}]})
    assert status == 200, (status, text)
    datas = check_responses_sse(text)
    final = datas[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call"], final
    assert final["output"][1]["arguments"] == args_text(0), final


g.stop()
M.stop()
finish()
