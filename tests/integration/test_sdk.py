"""The official SDKs as clients: OpenAI's `openai` and Anthropic's `@anthropic-ai/sdk` (pinned in
tests/node/package-lock.json) drive gate in front of the mock upstream, non-streaming and streaming, with
their stream helpers, tool calls, embeddings, responses, models, token counting, typed errors and client
aborts. The scripts in tests/node print one JSON line per case; the assertions are here.

The SDKs are required clients: without node or tests/node/node_modules every test here fails."""
import json

from gatetest import Gate, curl, finish, test
from sdktest import CLIENT_KEY, UPSTREAM_KEY, node
from mocktest import Mock

M = Mock(require_key=UPSTREAM_KEY).start()

OPENAI_LISTED = ["gpt-4o-mini", "text-embedding-3-small"]
ANTHROPIC_LISTED = ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]

CONFIG = """
[provider.oai]
type = openai-compatible
responses_api = native
base_url = http://%s/v1
models = %s, mock-*, gpt-*, text-embedding-*
api_key = %s

[provider.anth]
type = anthropic
base_url = %s
models = %s, claude-*
api_key = %s
""" % (M.address, ", ".join(OPENAI_LISTED), UPSTREAM_KEY, M.base_url, ", ".join(ANTHROPIC_LISTED), UPSTREAM_KEY)

g = Gate(config=CONFIG).start()


def openai(case, model, key=CLIENT_KEY, gate=None, **env):
    return node("openai", case, GATE_URL=(gate or g).url("").rstrip("/"), MODEL=model, API_KEY=key, **env)


def anthropic(case, model, key=CLIENT_KEY, gate=None, **env):
    return node("anthropic", case, GATE_URL=(gate or g).url("").rstrip("/"), MODEL=model, API_KEY=key, **env)


def upstream(model):
    """The one request the mock received for this (unique) model string."""
    reqs = [r for r in M.requests() if r.get("model") == model]
    assert len(reqs) == 1, ("expected one upstream request for %s, got %d" % (model, len(reqs)),
                            [(r["id"], r["path"]) for r in reqs])
    return reqs[0]


def text_of(n):
    return "".join(("tok%d" if k == 0 else " tok%d") % k for k in range(n))


def pieces_of(n):
    return [("tok%d" if k == 0 else " tok%d") % k for k in range(n)]


def tool_args(t):
    return {"location": "Paris", "n": t}


def assert_key_swapped(req, dialect, sent_headers=None):
    h = req["headers"]
    assert CLIENT_KEY not in json.dumps(h), h
    if dialect == "openai":
        assert h.get("authorization") == "Bearer " + UPSTREAM_KEY, h
    else:
        assert h.get("x-api-key") == UPSTREAM_KEY and "authorization" not in h, h
        # The SDK's own API version, passed on as it is.
        if sent_headers:
            assert h.get("anthropic-version") == sent_headers["anthropic-version"], (h, sent_headers)
        assert h.get("anthropic-version"), h


# ---- OpenAI SDK ----

@test
def openai_chat_create():
    model = "mock-chat+chunks=3"
    r = openai("chat", model)
    c = r["completion"]
    assert c["object"] == "chat.completion" and c["model"] == model, c
    msg = c["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"] == text_of(3), msg
    assert c["choices"][0]["finish_reason"] == "stop", c
    assert c["usage"]["completion_tokens"] == 3, c["usage"]
    assert r["headers"].get("x-gate-provider") == "oai", r["headers"]
    req = upstream(model)
    assert req["path"] == "/v1/chat/completions", req
    assert json.loads(req["body"]) == r["sent"], (req["body"], r["sent"])
    assert req["headers"].get("user-agent") == r["sentHeaders"]["user-agent"], req["headers"]
    assert_key_swapped(req, "openai")


@test
def openai_chat_stream_for_await():
    model = "mock-si+chunks=6+pace_ms=5"
    r = openai("chat_stream_iter", model)
    assert r["text"] == text_of(6), r
    assert r["role"] == "assistant", r
    assert r["finish_reason"] == ["stop"], r
    assert r["usage"] and r["usage"]["completion_tokens"] == 6, r
    assert len(r["ids"]) == 1, r
    # role chunk + 6 text chunks + finish chunk + usage chunk
    assert r["n"] == 9, r
    req = upstream(model)
    assert json.loads(req["body"])["stream"] is True
    assert M.wait_event(req["id"])["event"] == "done"


@test
def openai_chat_stream_helper():
    model = "mock-sh+chunks=5+pace_ms=5"
    r = openai("chat_stream_helper", model)
    assert r["deltas"] == pieces_of(5), r["deltas"]
    assert r["finalContent"] == text_of(5), r
    f = r["final"]
    assert f["choices"][0]["message"]["content"] == text_of(5), f
    assert f["choices"][0]["finish_reason"] == "stop", f
    assert f["usage"]["completion_tokens"] == 5, f
    assert r["chunks"] >= 7, r


@test
def openai_tool_calls():
    model = "mock-tc+tools=2"
    r = openai("tools", model)
    ch = r["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    calls = ch["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"], calls
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [tool_args(0), tool_args(1)], calls
    assert [c["id"] for c in calls] == ["call_0", "call_1"], calls
    sent_tools = json.loads(upstream(model)["body"])["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["get_weather", "get_time"], sent_tools


@test
def openai_tool_calls_stream_helper():
    model = "mock-tcs+tools=2+pace_ms=2"
    r = openai("tools_stream", model)
    ch = r["final"]["choices"][0]
    assert ch["finish_reason"] == "tool_calls", ch
    calls = ch["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"], calls
    assert [c["id"] for c in calls] == ["call_0", "call_1"], calls
    # The helper assembled the arguments from their deltas.
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [tool_args(0), tool_args(1)], calls
    done = sorted(r["argDone"], key=lambda e: e["index"])
    assert [(e["name"], json.loads(e["arguments"])) for e in done] == [("get_weather", tool_args(0)),
                                                                          ("get_time", tool_args(1))], done
    for t in (0, 1):
        assert "".join(e["arguments_delta"] for e in r["argDeltas"] if e["index"] == t) == \
            json.dumps(tool_args(t), separators=(",", ":")), r["argDeltas"]


@test
def openai_embeddings():
    model = "text-embedding-3-small"
    before = len(M.requests())
    r = openai("embeddings", model)
    assert r["sent"]["encoding_format"] == "base64", r["sent"]    # the SDK's default, decoded by the SDK
    resp = r["response"]
    assert resp["object"] == "list" and [d["index"] for d in resp["data"]] == [0, 1], resp
    got = [d["embedding"] for d in resp["data"]]
    assert all(isinstance(v, list) and len(v) == 8 for v in got), got
    reqs = [x for x in M.requests()[before:] if x.get("model") == model]
    assert len(reqs) == 1 and reqs[0]["path"] == "/v1/embeddings", reqs
    # The same input straight from the mock as floats: the SDK decoded gate's relayed base64 exactly.
    rc, out, err = curl("-X", "POST", M.url("/v1/embeddings"), "-H", "authorization: Bearer " + UPSTREAM_KEY,
                        "-H", "content-type: application/json", "--data-binary",
                        json.dumps({"model": model, "input": ["hello", "world"], "encoding_format": "float"}))
    assert rc == 0, err
    assert got == [d["embedding"] for d in json.loads(out)["data"]], (got, out)


@test
def openai_models_list():
    r = openai("models", "unused")
    assert r["ids"] == OPENAI_LISTED + ANTHROPIC_LISTED, r
    assert all(m["object"] == "model" for m in r["items"]), r
    assert {m["id"]: m["owned_by"] for m in r["items"]}["gpt-4o-mini"] == "oai", r
    assert r["requests"] == 1, r


@test
def openai_responses_create():
    model = "mock-resp+chunks=4"
    r = openai("responses", model)
    assert r["output_text"] == text_of(4), r
    resp = r["response"]
    assert resp["object"] == "response" and resp["status"] == "completed", resp
    assert resp["instructions"] == "Be brief.", resp
    req = upstream(model)
    assert req["path"] == "/v1/responses", req
    assert_key_swapped(req, "openai")


@test
def openai_responses_stream():
    model = "mock-resps+chunks=4+pace_ms=5"
    r = openai("responses_stream", model)
    assert r["types"][:2] == ["response.created", "response.in_progress"], r["types"]
    assert r["types"][-1] == "response.completed", r["types"]
    assert r["types"].count("response.output_text.delta") == 4, r["types"]
    assert "".join(r["deltas"]) == text_of(4), r
    assert r["seq"] == list(range(len(r["seq"]))), r["seq"]
    assert r["completed"]["status"] == "completed", r["completed"]
    assert r["completed"]["output"][0]["content"][0]["text"] == text_of(4), r["completed"]


@test
def openai_responses_stream_helper():
    model = "mock-respsh+chunks=3+pace_ms=5"
    r = openai("responses_stream_helper", model)
    assert r["deltas"] == pieces_of(3), r
    assert r["text"] == text_of(3), r
    assert r["final"]["status"] == "completed", r["final"]


@test
def openai_error_429_is_rate_limit_error():
    model = "oai/mock-e429+error=429"
    e = openai("error", model)
    assert e["name"] == "RateLimitError" and "RateLimitError" in e["instanceOf"], e
    assert e["status"] == 429, e
    assert e["code"] == "rate_limit_exceeded" and e["type"] == "requests", e
    assert len([x for x in M.requests() if x.get("model") == "mock-e429+error=429"]) >= 1


@test
def openai_stream_error_429_is_rate_limit_error():
    e = openai("stream_error", "oai/mock-e429s+error=429")
    assert e["name"] == "RateLimitError" and e["status"] == 429, e


@test
def openai_unknown_model_is_not_found_error():
    before = len(M.requests())
    e = openai("error", "no-such-model")
    assert e["name"] == "NotFoundError" and "NotFoundError" in e["instanceOf"], e
    assert e["status"] == 404 and e["code"] == "model_not_found", e
    assert len(M.requests()) == before     # gate answered it itself


def check_abort(case):
    model = "oai/mock-ab-%s+chunks=100+pace_ms=100" % case
    r = openai(case, model)
    # Two chunks (the role chunk and tok0), then the abort: the loop ends at once, quietly.
    assert r["chunks"] == 2, r
    assert r["threw"] is None, r
    assert r["ms"] < 3000, r
    req = upstream(model.split("/", 1)[1])
    ev = M.wait_event(req["id"], timeout=5)
    assert ev["event"] == "aborted", ev


@test
def openai_stream_abort_stream_controller():
    check_abort("abort_controller")


@test
def openai_stream_abort_signal():
    check_abort("abort_signal")


@test
def openai_image_base64_unchanged():
    model = "mock-img"
    r = openai("image", model)
    assert len(r["sent"]) > 200000, len(r["sent"])
    req = upstream(model)
    # Byte for byte what the SDK put on the wire, and the message as the script built it.
    assert req["body"] == r["sent"], (len(req["body"]), len(r["sent"]))
    assert json.loads(req["body"]) == r["built"]
    url = json.loads(req["body"])["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,iVBORw0KGgo"), url[:60]
    assert r["response"]["choices"][0]["message"]["content"] == text_of(5), r["response"]


# ---- Anthropic SDK ----

@test
def anthropic_messages_create():
    model = "claude-m+chunks=3"
    r = anthropic("messages", model)
    m = r["message"]
    assert m["type"] == "message" and m["role"] == "assistant" and m["model"] == model, m
    assert m["content"] == [{"type": "text", "text": text_of(3)}], m
    assert m["stop_reason"] == "end_turn" and m["usage"]["output_tokens"] == 3, m
    assert r["headers"].get("x-gate-provider") == "anth", r["headers"]
    req = upstream(model)
    assert req["path"] == "/v1/messages", req
    assert_key_swapped(req, "anthropic", r["sentHeaders"])


@test
def anthropic_messages_stream_helper():
    model = "claude-s+chunks=5+pace_ms=5"
    r = anthropic("stream", model)
    assert r["texts"] == pieces_of(5), r["texts"]
    assert r["finalText"] == text_of(5), r
    f = r["final"]
    assert f["content"] == [{"type": "text", "text": text_of(5), "citations": None}] or \
        f["content"] == [{"type": "text", "text": text_of(5)}], f["content"]
    assert f["stop_reason"] == "end_turn" and f["usage"]["output_tokens"] == 5, f
    assert f["usage"]["input_tokens"] > 0, f
    assert r["events"][0] == "message_start" and r["events"][-2:] == ["message_delta", "message_stop"], r["events"]
    req = upstream(model)
    assert json.loads(req["body"])["stream"] is True, req["body"]
    assert_key_swapped(req, "anthropic", r["sentHeaders"])


@test
def anthropic_tool_use_stream():
    model = "claude-t+tools=2+preamble=1+chunks=2+pace_ms=2"
    r = anthropic("tool_stream", model)
    f = r["final"]
    assert f["stop_reason"] == "tool_use", f
    content = f["content"]
    assert [b["type"] for b in content] == ["text", "tool_use", "tool_use"], content
    assert content[0]["text"] == text_of(2), content
    # input_json_delta pieces assembled by the SDK into each tool_use block's input.
    assert [(b["id"], b["name"], b["input"]) for b in content[1:]] == [
        ("toolu_0", "get_weather", tool_args(0)), ("toolu_1", "get_time", tool_args(1))], content
    assert "content_block_start:1:tool_use" in r["events"] and "content_block_start:2:tool_use" in r["events"]
    assert r["events"].count("content_block_delta:1:input_json_delta") == 5, r["events"]
    assert r["json"][-1]["snapshot"] == tool_args(1), r["json"][-1]
    sent_tools = json.loads(upstream(model)["body"])["tools"]
    assert [t["name"] for t in sent_tools] == ["get_weather", "get_time"], sent_tools


@test
def anthropic_count_tokens():
    model = "claude-ct"
    r = anthropic("count_tokens", model)
    req = upstream(model)
    assert req["path"] == "/v1/messages/count_tokens", req
    assert req["body"] == r["sent"], (req["body"], r["sent"])
    assert r["count"] == {"input_tokens": max(len(req["body"].encode()) // 4, 1)}, (r, len(req["body"]))
    assert_key_swapped(req, "anthropic", r["sentHeaders"])


@test
def anthropic_models_list():
    r = anthropic("models", "unused")
    assert r["ids"] == OPENAI_LISTED + ANTHROPIC_LISTED or r["ids"] == ANTHROPIC_LISTED, r
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"] for m in r["items"]), r
    assert r["requests"] == 1, r


@test
def anthropic_error_529_is_api_error():
    e = anthropic("error", "anth/claude-e529+error=529")
    assert "APIError" in e["instanceOf"] and e["status"] == 529, e
    assert e["error"]["error"]["type"] == "overloaded_error", e
    assert e["requestID"] == "req_mock_%d" % upstream("claude-e529+error=529")["id"], e


@test
def anthropic_stream_error_529_is_api_error():
    e = anthropic("stream_error", "anth/claude-e529s+error=529")
    assert "APIError" in e["instanceOf"] and e["status"] == 529, e
    assert e["error"]["error"]["type"] == "overloaded_error", e


@test
def anthropic_error_429_is_rate_limit_error():
    e = anthropic("error", "anth/claude-e429+error=429")
    assert e["name"] == "RateLimitError" and "RateLimitError" in e["instanceOf"] and e["status"] == 429, e
    assert e["error"]["error"]["type"] == "rate_limit_error", e


@test
def anthropic_unknown_model_is_not_found_error():
    before = len(M.requests())
    e = anthropic("error", "no-such-model")
    assert e["name"] == "NotFoundError" and "NotFoundError" in e["instanceOf"] and e["status"] == 404, e
    assert e["error"]["type"] == "error" and e["error"]["error"]["type"] == "not_found_error", e
    assert len(M.requests()) == before


# ---- the client's own key passed through (providers without api_key) ----

PASSTHROUGH = """
[provider.oai]
type = openai-compatible
responses_api = native
base_url = http://%s/v1
models = mock-*

[provider.anth]
type = anthropic
base_url = %s
models = claude-*
""" % (M.address, M.base_url)


@test
def passthrough_of_the_sdks_keys():
    g2 = Gate(config=PASSTHROUGH)
    with g2:
        g2.start()
        model = "mock-pt+chunks=2"
        r = openai("chat", model, key=UPSTREAM_KEY, gate=g2)
        assert r["completion"]["choices"][0]["message"]["content"] == text_of(2), r
        assert upstream(model)["headers"]["authorization"] == "Bearer " + UPSTREAM_KEY
        model = "claude-pt+chunks=2"
        r = anthropic("messages", model, key=UPSTREAM_KEY, gate=g2)
        assert r["message"]["content"][0]["text"] == text_of(2), r
        assert upstream(model)["headers"]["x-api-key"] == UPSTREAM_KEY
        # A wrong key reaches the mock, whose 401 the SDK raises as AuthenticationError.
        e = openai("error", "mock-pt-bad", key="sk-wrong", gate=g2)
        assert e["name"] == "AuthenticationError" and e["status"] == 401, e


g.stop()
M.stop()
finish()
