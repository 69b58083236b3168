"""test_mock: the mock upstream itself speaks OpenAI and Anthropic as the providers do, and its knobs work."""
import base64
import http.client
import json
import os
import socket
import struct
import subprocess
import time

# The integration suite's environment names gate only: the mock sits beside it in the build tree.
os.environ.setdefault("MOCK_BIN", os.path.join(os.environ.get("BUILDDIR", "build"), "tests", "mock-upstream"))

from gatetest import curl, finish, test  # noqa: E402
from mocktest import Mock, sse_events  # noqa: E402

ANTH = {"anthropic-version": "2023-06-01"}
MSGS = [{"role": "user", "content": "Hello"}]

M = Mock().start()


def call(method, path, body=None, headers=None, mock=None, timeout=10):
    """One request over HTTP/1.1; returns (status, headers, body bytes)."""
    m = mock or M
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=timeout)
    h = {}
    if body is not None:
        h["Content-Type"] = "application/json"
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.headers, data


def post(path, body, headers=None, mock=None):
    return call("POST", path, body, headers, mock)


def post_json(path, body, headers=None, mock=None, status=200):
    st, h, data = post(path, body, headers, mock)
    assert st == status, (st, data)
    return h, json.loads(data)


def openai_stream(path, body, mock=None):
    st, h, data = post(path, dict(body, stream=True), mock=mock)
    assert st == 200, (st, data)
    assert h["content-type"].startswith("text/event-stream"), h["content-type"]
    ev = sse_events(data)
    assert ev[-1] == (None, "[DONE]"), ev[-1]
    assert all(name is None for name, _ in ev)
    return [json.loads(d) for _, d in ev[:-1]]


def named_stream(path, body, headers=None, mock=None):
    """Anthropic and Responses streams: every event is named, and the name is the data's type."""
    st, h, data = post(path, dict(body, stream=True), headers, mock)
    assert st == 200, (st, data)
    assert h["content-type"].startswith("text/event-stream"), h["content-type"]
    out = []
    for name, d in sse_events(data):
        j = json.loads(d)
        assert name == j["type"], (name, j)
        out.append(j)
    return out


def wait_request(model, mock=None, timeout=5.0):
    m = mock or M
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in m.requests():
            if r.get("model") == model:
                return r
        time.sleep(0.02)
    raise AssertionError("mock never logged a request for %r" % model)


def raw_request(path, body, headers=b""):
    s = socket.create_connection(("127.0.0.1", M.port), timeout=5)
    data = json.dumps(body).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
              % (path.encode(), headers, len(data)) + data)
    return s


def read_until(s, needle, limit=1 << 20):
    got = b""
    while needle not in got and len(got) < limit:
        d = s.recv(65536)
        if not d:
            break
        got += d
    return got


# ---- OpenAI ----

@test
def openai_models_list_and_get():
    st, h, data = call("GET", "/v1/models")
    assert st == 200
    j = json.loads(data)
    assert j["object"] == "list" and len(j["data"]) >= 3
    for m in j["data"]:
        assert set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model"
    st, _, data = call("GET", "/v1/models/gpt-4o")
    assert st == 200 and json.loads(data)["id"] == "gpt-4o"
    st, _, data = call("GET", "/v1/models/no-such-model")
    e = json.loads(data)["error"]
    assert st == 404 and e["code"] == "model_not_found" and e["param"] == "model", e


@test
def openai_chat_non_streaming():
    h, j = post_json("/v1/chat/completions", {"model": "gpt-4o", "messages": MSGS})
    assert h["x-request-id"].startswith("req_mock_")
    assert j["id"].startswith("chatcmpl-mock-") and j["object"] == "chat.completion"
    assert j["model"] == "gpt-4o" and isinstance(j["created"], int)
    ch = j["choices"][0]
    assert ch["index"] == 0 and ch["logprobs"] is None and ch["finish_reason"] == "stop"
    assert ch["message"] == {"role": "assistant", "content": "tok0 tok1 tok2 tok3 tok4", "refusal": None,
                             "annotations": []}, ch["message"]
    u = j["usage"]
    assert u["completion_tokens"] == 5 and u["total_tokens"] == u["prompt_tokens"] + 5 and u["prompt_tokens"] > 0


@test
def openai_chat_byte_stable():
    body = {"model": "gpt-4o+chunks=3", "messages": MSGS}
    a = post("/v1/chat/completions", body)[2].decode()
    b = post("/v1/chat/completions", body)[2].decode()
    ida, idb = json.loads(a)["id"], json.loads(b)["id"]
    assert a.replace(ida, "X") == b.replace(idb, "X")


@test
def openai_chat_streaming():
    chunks = openai_stream("/v1/chat/completions", {"model": "gpt-4o+chunks=4", "messages": MSGS,
                                                    "stream_options": {"include_usage": True}})
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o+chunks=4" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": "", "refusal": None} and first["finish_reason"] is None
    text = [c["choices"][0]["delta"]["content"] for c in chunks[1:5]]
    assert text == ["tok0", " tok1", " tok2", " tok3"], text
    fin = chunks[5]["choices"][0]
    assert fin["delta"] == {} and fin["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:6])
    last = chunks[6]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
    # Without include_usage: no usage chunk and no usage field.
    chunks = openai_stream("/v1/chat/completions", {"model": "gpt-4o+chunks=2", "messages": MSGS})
    assert len(chunks) == 4 and all("usage" not in c for c in chunks)


@test
def openai_chat_chunk_bytes_and_max_tokens():
    chunks = openai_stream("/v1/chat/completions", {"model": "m+chunks=3+chunk_bytes=100", "messages": MSGS})
    assert [len(c["choices"][0]["delta"]["content"]) for c in chunks[1:4]] == [100, 100, 100]
    _, j = post_json("/v1/chat/completions", {"model": "m+chunks=9", "max_tokens": 2, "messages": MSGS})
    assert j["choices"][0]["finish_reason"] == "length" and j["choices"][0]["message"]["content"] == "tok0 tok1"


@test
def openai_chat_tool_calls_streaming():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object"}}}]
    chunks = openai_stream("/v1/chat/completions", {"model": "gpt-4o+tools=2", "messages": MSGS, "tools": tools})
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    calls = {}
    for c in chunks:
        for tc in c["choices"][0]["delta"].get("tool_calls", []) if c["choices"] else []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "args": ""})
            if "id" in tc:
                assert slot["id"] is None and tc["type"] == "function"
                slot["id"], slot["name"] = tc["id"], tc["function"]["name"]
            slot["args"] += tc["function"].get("arguments", "")
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "call_0" and calls[1]["id"] == "call_1"
    assert calls[0]["name"] == "lookup" and calls[1]["name"] == "fetch"
    for slot in calls.values():
        assert isinstance(json.loads(slot["args"]), dict)
    arg_pieces = [c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
                  and "id" not in c["choices"][0]["delta"]["tool_calls"][0]]
    assert len(arg_pieces) >= 4, "arguments must come in several pieces"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@test
def openai_chat_tool_calls_non_streaming():
    _, j = post_json("/v1/chat/completions", {"model": "gpt-4o+tools=3", "messages": MSGS})
    msg = j["choices"][0]["message"]
    assert j["choices"][0]["finish_reason"] == "tool_calls" and msg["content"] is None
    assert [t["id"] for t in msg["tool_calls"]] == ["call_0", "call_1", "call_2"]
    assert all(t["type"] == "function" and json.loads(t["function"]["arguments"]) for t in msg["tool_calls"])


@test
def openai_completions():
    _, j = post_json("/v1/completions", {"model": "gpt-3.5-turbo-instruct+chunks=3", "prompt": "Say"})
    assert j["object"] == "text_completion" and j["id"].startswith("cmpl-mock-")
    assert j["choices"][0]["text"] == "tok0 tok1 tok2" and j["choices"][0]["finish_reason"] == "stop"
    assert j["usage"]["completion_tokens"] == 3
    chunks = openai_stream("/v1/completions", {"model": "i+chunks=3", "prompt": "Say",
                                               "stream_options": {"include_usage": True}})
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "tok0 tok1 tok2"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@test
def openai_responses_non_streaming():
    _, j = post_json("/v1/responses", {"model": "gpt-4.1+chunks=2", "input": "Hi", "instructions": "Be brief"})
    assert j["object"] == "response" and j["status"] == "completed" and j["id"].startswith("resp_")
    assert j["instructions"] == "Be brief" and j["error"] is None
    out = j["output"]
    assert len(out) == 1 and out[0]["type"] == "message" and out[0]["role"] == "assistant"
    assert out[0]["content"] == [{"type": "output_text", "annotations": [], "logprobs": [], "text": "tok0 tok1"}]
    u = j["usage"]
    assert u["output_tokens"] == 2 and u["total_tokens"] == u["input_tokens"] + 2


@test
def openai_responses_streaming():
    ev = named_stream("/v1/responses", {"model": "gpt-4.1+chunks=2", "input": "Hi"})
    assert [e["type"] for e in ev] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"], [e["type"] for e in ev]
    assert [e["sequence_number"] for e in ev] == list(range(len(ev)))
    assert ev[0]["response"]["status"] == "in_progress" and ev[0]["response"]["output"] == []
    item_id = ev[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in ev[3:8])
    assert "".join(e["delta"] for e in ev[4:6]) == ev[6]["text"] == "tok0 tok1"
    done = ev[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "tok0 tok1"
    assert done["usage"]["output_tokens"] == 2


@test
def openai_responses_function_calls():
    ev = named_stream("/v1/responses", {"model": "gpt-4.1+tools=2", "input": "Hi",
                                        "tools": [{"type": "function", "name": "lookup"}]})
    types = [e["type"] for e in ev]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    added = [e for e in ev if e["type"] == "response.output_item.added"]
    assert [a["output_index"] for a in added] == [0, 1]
    assert all(a["item"]["type"] == "function_call" and a["item"]["name"] == "lookup" for a in added)
    for a in added:
        deltas = "".join(e["delta"] for e in ev if e["type"] == "response.function_call_arguments.delta"
                         and e["item_id"] == a["item"]["id"])
        done = [e for e in ev if e["type"] == "response.function_call_arguments.done"
                and e["item_id"] == a["item"]["id"]]
        assert done[0]["arguments"] == deltas and json.loads(deltas)
    assert [o["call_id"] for o in ev[-1]["response"]["output"]] == ["call_0", "call_1"]


@test
def openai_embeddings():
    _, j = post_json("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]})
    assert j["object"] == "list" and [d["index"] for d in j["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in j["data"])
    assert j["usage"]["prompt_tokens"] == j["usage"]["total_tokens"] > 0
    _, k = post_json("/v1/embeddings", {"model": "text-embedding-3-small", "input": "a", "dimensions": 16})
    assert len(k["data"]) == 1 and len(k["data"][0]["embedding"]) == 16
    assert k["data"][0]["embedding"][:8] == j["data"][0]["embedding"], "deterministic per input"
    _, b = post_json("/v1/embeddings", {"model": "e", "input": "a", "encoding_format": "base64"})
    floats = list(struct.unpack("<8f", base64.b64decode(b["data"][0]["embedding"])))
    assert floats == j["data"][0]["embedding"]
    post_json("/v1/embeddings", {"model": "e"}, status=400)


# ---- Anthropic ----

@test
def anthropic_models():
    st, _, data = call("GET", "/v1/models", headers=ANTH)
    j = json.loads(data)
    assert st == 200 and set(j) == {"data", "has_more", "first_id", "last_id"} and j["has_more"] is False
    assert all(set(m) == {"type", "id", "display_name", "created_at"} and m["type"] == "model" for m in j["data"])
    assert j["first_id"] == j["data"][0]["id"] and j["last_id"] == j["data"][-1]["id"]
    st, _, data = call("GET", "/v1/models?limit=2", headers=ANTH)
    j2 = json.loads(data)
    assert len(j2["data"]) == 2 and j2["has_more"] is True
    st, _, data = call("GET", "/v1/models?limit=2&after_id=" + j2["last_id"], headers=ANTH)
    assert json.loads(data)["data"][0]["id"] == j["data"][2]["id"]
    st, _, data = call("GET", "/v1/models/" + j["data"][0]["id"], headers=ANTH)
    assert st == 200 and json.loads(data)["type"] == "model"
    st, _, data = call("GET", "/v1/models/nope", headers=ANTH)
    assert st == 404 and json.loads(data)["error"]["type"] == "not_found_error"


@test
def anthropic_messages_non_streaming():
    h, j = post_json("/v1/messages", {"model": "claude-3-5-sonnet+chunks=3", "max_tokens": 100, "messages": MSGS},
                     ANTH)
    assert h["request-id"].startswith("req_mock_")
    assert j["id"].startswith("msg_mock_") and j["type"] == "message" and j["role"] == "assistant"
    assert j["model"] == "claude-3-5-sonnet+chunks=3"
    assert j["content"] == [{"type": "text", "text": "tok0 tok1 tok2"}]
    assert j["stop_reason"] == "end_turn" and j["stop_sequence"] is None
    assert set(j["usage"]) >= {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                               "cache_read_input_tokens"}
    assert j["usage"]["output_tokens"] == 3
    _, j = post_json("/v1/messages", {"model": "c+chunks=10", "max_tokens": 3, "messages": MSGS}, ANTH)
    assert j["stop_reason"] == "max_tokens" and j["content"][0]["text"] == "tok0 tok1 tok2"
    _, j = post_json("/v1/messages", {"model": "c+tools=2", "max_tokens": 30, "messages": MSGS,
                                      "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}, ANTH)
    assert j["stop_reason"] == "tool_use"
    assert [(b["type"], b["id"], b["name"]) for b in j["content"]] == [("tool_use", "toolu_0", "lookup"),
                                                                       ("tool_use", "toolu_1", "lookup")]
    assert all(isinstance(b["input"], dict) and b["input"] for b in j["content"])


@test
def anthropic_messages_streaming():
    ev = named_stream("/v1/messages", {"model": "claude+chunks=2", "max_tokens": 100, "messages": MSGS}, ANTH)
    assert [e["type"] for e in ev] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                       "content_block_delta", "content_block_stop", "message_delta",
                                       "message_stop"], [e["type"] for e in ev]
    msg = ev[0]["message"]
    assert msg["content"] == [] and msg["stop_reason"] is None and msg["usage"]["input_tokens"] > 0
    assert ev[1]["index"] == 0 and ev[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in ev[3:5]] == [{"type": "text_delta", "text": "tok0"},
                                             {"type": "text_delta", "text": " tok1"}]
    assert ev[5]["index"] == 0
    assert ev[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert ev[6]["usage"]["output_tokens"] == 2


@test
def anthropic_messages_streaming_tools():
    ev = named_stream("/v1/messages", {"model": "claude+tools=2+preamble=1+chunks=1", "max_tokens": 100,
                                       "messages": MSGS}, ANTH)
    open_block, blocks = None, {}
    for e in ev:
        if e["type"] == "content_block_start":
            assert open_block is None, "blocks must not overlap"
            open_block = e["index"]
            blocks[open_block] = {"start": e["content_block"], "json": "", "text": "", "first": None}
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_block
            b = blocks[open_block]
            if b["first"] is None:
                b["first"] = e["delta"]
            if e["delta"]["type"] == "input_json_delta":
                b["json"] += e["delta"]["partial_json"]
            else:
                b["text"] += e["delta"]["text"]
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_block
            open_block = None
    assert sorted(blocks) == [0, 1, 2]
    assert blocks[0]["start"]["type"] == "text" and blocks[0]["text"] == "tok0"
    for i in (1, 2):
        assert blocks[i]["start"]["type"] == "tool_use" and blocks[i]["start"]["input"] == {}
        assert blocks[i]["start"]["id"] == "toolu_%d" % (i - 1)
        assert blocks[i]["first"] == {"type": "input_json_delta", "partial_json": ""}
        assert isinstance(json.loads(blocks[i]["json"]), dict)
    assert ev[-2]["delta"]["stop_reason"] == "tool_use" and ev[-1]["type"] == "message_stop"


@test
def anthropic_count_tokens():
    _, j = post_json("/v1/messages/count_tokens", {"model": "claude", "messages": MSGS}, ANTH)
    assert set(j) == {"input_tokens"} and j["input_tokens"] > 0
    _, k = post_json("/v1/messages/count_tokens", {"model": "claude", "messages": MSGS}, ANTH)
    assert j == k


@test
def anthropic_version_required():
    st, _, data = post("/v1/messages", {"model": "c", "max_tokens": 1, "messages": MSGS})
    j = json.loads(data)
    assert st == 400 and j["type"] == "error" and j["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in j["error"]["message"]


@test
def usage_left_out_and_cache_tokens():
    _, j = post_json("/v1/chat/completions", {"model": "g+usage=0", "messages": MSGS})
    assert "usage" not in j
    ev = named_stream("/v1/messages", {"model": "c+usage=0", "max_tokens": 9, "messages": MSGS}, ANTH)
    assert "usage" not in ev[0]["message"] and "usage" not in ev[-2]
    _, a = post_json("/v1/messages", {"model": "c+cache_read=100+cache_write=50", "max_tokens": 9,
                                      "messages": MSGS}, ANTH)
    assert a["usage"]["cache_read_input_tokens"] == 100 and a["usage"]["cache_creation_input_tokens"] == 50
    _, o = post_json("/v1/chat/completions", {"model": "g+cache_read=100", "messages": MSGS})
    assert o["usage"]["prompt_tokens_details"]["cached_tokens"] == 100
    assert o["usage"]["prompt_tokens"] >= 100 + 1


# ---- errors, auth, routing ----

OPENAI_ERRORS = {429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None),
                 503: ("server_error", None), 529: ("server_error", None), 400: ("invalid_request_error", None),
                 401: ("invalid_request_error", "invalid_api_key")}
ANTHROPIC_ERRORS = {429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "api_error",
                    529: "overloaded_error", 400: "invalid_request_error", 401: "authentication_error"}


@test
def error_injection_openai():
    for status, (etype, code) in OPENAI_ERRORS.items():
        st, h, data = post("/v1/chat/completions", {"model": "g+error=%d" % status, "messages": MSGS})
        j = json.loads(data)
        assert st == status and set(j) == {"error"}, (status, j)
        assert set(j["error"]) == {"message", "type", "param", "code"}
        assert j["error"]["type"] == etype and j["error"]["code"] == code, (status, j)
    st, _, data = post("/v1/chat/completions", {"model": "g+error=502", "messages": MSGS})
    assert st == 502 and json.loads(data)["error"]["type"] == "cf_bad_gateway"
    st, h, data = post("/v1/chat/completions", {"model": "g+error=429+retry_after=7", "stream": True,
                                                "messages": MSGS})
    assert st == 429 and h["retry-after"] == "7" and h["content-type"] == "application/json"


@test
def error_injection_anthropic():
    for status, etype in ANTHROPIC_ERRORS.items():
        st, h, data = post("/v1/messages", {"model": "c+error=%d" % status, "max_tokens": 5, "messages": MSGS},
                           ANTH)
        j = json.loads(data)
        assert st == status and j["type"] == "error" and j["error"]["type"] == etype, (status, j)
        assert isinstance(j["error"]["message"], str) and h.get("retry-after") is None
    st, h, _ = post("/v1/messages", {"model": "c+error=529+retry_after=3", "max_tokens": 5, "messages": MSGS}, ANTH)
    assert st == 529 and h["retry-after"] == "3"


@test
def error_mid_stream():
    st, _, data = post("/v1/chat/completions", {"model": "g+error_after=2", "stream": True, "messages": MSGS})
    ev = sse_events(data)
    assert st == 200 and len(ev) == 3 and json.loads(ev[2][1])["error"]["type"] == "server_error"
    st, _, data = post("/v1/messages", {"model": "c+error_after=3", "stream": True, "max_tokens": 9,
                                        "messages": MSGS}, ANTH)
    ev = sse_events(data)
    assert [n for n, _ in ev] == ["message_start", "content_block_start", "ping", "error"], ev
    assert json.loads(ev[3][1])["error"]["type"] == "overloaded_error"


@test
def fail_times_counts_per_model():
    seq = [post("/v1/chat/completions", {"model": "ft-a+fail_times=2", "messages": MSGS})[0] for _ in range(4)]
    assert seq == [503, 503, 200, 200], seq
    seq = [post("/v1/messages", {"model": "ft-b+fail_times=1+error=529", "max_tokens": 5, "messages": MSGS},
                ANTH)[0] for _ in range(3)]
    assert seq == [529, 200, 200], seq
    # Another model string has its own counter.
    assert post("/v1/chat/completions", {"model": "ft-c+fail_times=1", "messages": MSGS})[0] == 503


@test
def unknown_path_invalid_json_bad_directive():
    st, _, data = post("/v1/nothing", {"model": "x"})
    assert st == 404 and json.loads(data)["error"]["message"] == "Invalid URL (POST /v1/nothing)"
    st, _, data = post("/v1/messages/nothing", {"model": "x"}, ANTH)
    assert st == 404 and json.loads(data)["error"]["type"] == "not_found_error"
    st, _, data = post("/v1/chat/completions", b'{"model": "x", "messages": [}')
    j = json.loads(data)
    assert st == 400 and j["error"]["type"] == "invalid_request_error" and set(j["error"]) >= {"param", "code"}
    st, _, data = post("/v1/messages", b'{"model": ', ANTH)
    assert st == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"
    st, _, data = post("/v1/chat/completions", b'{"model": "a", "model": "b", "messages": []}')
    assert st == 400, "duplicate keys are invalid JSON here"
    st, _, data = post("/v1/chat/completions", {"model": "g+chunkz=3", "messages": MSGS})
    assert st == 400 and "chunkz" in json.loads(data)["error"]["message"]
    st, _, data = post("/v1/messages", {"model": "c", "messages": MSGS}, ANTH)
    assert st == 400 and "max_tokens" in json.loads(data)["error"]["message"]


@test
def require_key():
    with Mock(require_key="sk-test") as k:
        st, _, data = post("/v1/chat/completions", {"model": "g", "messages": MSGS}, mock=k)
        assert st == 401 and json.loads(data)["error"]["type"] == "invalid_request_error"
        st, _, data = post("/v1/chat/completions", {"model": "g", "messages": MSGS},
                           {"Authorization": "Bearer wrong"}, mock=k)
        assert st == 401 and json.loads(data)["error"]["code"] == "invalid_api_key"
        assert b"wrong" not in data, "the key is never echoed"
        st, _, _ = post("/v1/chat/completions", {"model": "g", "messages": MSGS},
                        {"Authorization": "Bearer sk-test"}, mock=k)
        assert st == 200
        st, _, data = post("/v1/messages", {"model": "c", "max_tokens": 5, "messages": MSGS}, ANTH, mock=k)
        j = json.loads(data)
        assert st == 401 and j["type"] == "error" and j["error"]["type"] == "authentication_error"
        st, _, _ = post("/v1/messages", {"model": "c", "max_tokens": 5, "messages": MSGS},
                        dict(ANTH, **{"x-api-key": "nope"}), mock=k)
        assert st == 401
        st, _, _ = post("/v1/messages", {"model": "c", "max_tokens": 5, "messages": MSGS},
                        dict(ANTH, **{"x-api-key": "sk-test"}), mock=k)
        assert st == 200
        assert call("GET", "/v1/models", mock=k)[0] == 401
        assert call("GET", "/v1/models", headers={"Authorization": "Bearer sk-test"}, mock=k)[0] == 200


# ---- the request log ----

@test
def request_log_lines():
    body = '{"model": "log-test+chunks=1", "messages": [{"role": "user", "content": "h\\u00e9 \\"q\\""}]}'
    st, _, _ = post("/v1/chat/completions", body, {"X-Custom-Thing": "Value 1"})
    assert st == 200
    r = wait_request("log-test+chunks=1")
    assert r["method"] == "POST" and r["path"] == "/v1/chat/completions" and r["protocol"] == "HTTP/1.1"
    assert r["body"] == body, "the exact body"
    assert r["headers"]["x-custom-thing"] == "Value 1" and r["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in r["headers"])
    assert M.wait_event(r["id"])["event"] == "done"
    assert M.wait_event(r["id"])["status"] == 200
    st, _, _ = post("/v1/chat/completions", b"\xff\xfe")
    bad = M.last_request()
    assert st == 400 and bad["body"] is None and base64.b64decode(bad["body_base64"]) == b"\xff\xfe"


# ---- streams that break, stall, or lose their client ----

@test
def abort_logged_when_client_leaves_mid_stream():
    s = raw_request("/v1/chat/completions", {"model": "abort-1+chunks=200+pace_ms=20", "stream": True,
                                             "messages": MSGS})
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(65536)
    s.close()
    r = wait_request("abort-1+chunks=200+pace_ms=20")
    ev = M.wait_event(r["id"], timeout=5)
    assert ev["event"] == "aborted" and 3 <= ev["events"] < 200, ev


@test
def abort_logged_when_client_leaves_before_first_byte():
    s = raw_request("/v1/messages", {"model": "abort-2+ttfb_ms=5000", "max_tokens": 5, "messages": MSGS},
                    b"anthropic-version: 2023-06-01\r\n")
    r = wait_request("abort-2+ttfb_ms=5000")
    time.sleep(0.1)
    s.close()
    ev = M.wait_event(r["id"], timeout=3)
    assert ev["event"] == "aborted", ev


@test
def abort_logged_over_h2():
    model = "abort-3+chunks=500+pace_ms=20"
    rc, out, err = curl("--http2-prior-knowledge", "-N", "-H", "content-type: application/json", "-d",
                        json.dumps({"model": model, "stream": True, "messages": MSGS}),
                        M.url("/v1/chat/completions"), timeout=1)
    assert rc == 28, (rc, err)
    r = wait_request(model)
    assert r["protocol"] == "HTTP/2"
    assert M.wait_event(r["id"], timeout=5)["event"] == "aborted"


def broken_stream(*extra):
    model = "reset-%s+chunks=20+reset_after=3" % ("h2" if extra else "h1")
    rc, out, err = curl(*extra, "-N", "-H", "content-type: application/json", "-d",
                        json.dumps({"model": model, "stream": True, "messages": MSGS}),
                        M.url("/v1/chat/completions"), timeout=10)
    # 18: partial file (HTTP/1.1), 16/92: HTTP/2 stream error, 56: receive failure.
    assert rc in (16, 18, 56, 92), (rc, err)
    if extra:
        # curl drops the DATA that arrives together with the RST_STREAM; nghttp shows every frame.
        body = json.dumps({"model": model, "stream": True, "messages": MSGS}).encode()
        path = os.path.join(M.dir, "reset-body.json")
        with open(path, "wb") as f:
            f.write(body)
        p = subprocess.run(["nghttp", "-v", "-d", path, M.url("/v1/chat/completions")],
                           capture_output=True, timeout=10)
        out = "".join(l + "\n\n" for l in p.stdout.decode().splitlines() if l.startswith("data:"))
        assert "recv RST_STREAM" in p.stdout.decode(), p.stdout
    assert len(sse_events(out)) == 3, out
    assert "[DONE]" not in out
    r = wait_request(model)
    ev = M.wait_event(r["id"])
    assert ev["event"] == "reset" and ev["events"] == 3, ev


@test
def reset_after_breaks_the_stream_http1():
    broken_stream()


@test
def reset_after_breaks_the_stream_h2c():
    broken_stream("--http2-prior-knowledge")


@test
def reset_after_non_streaming():
    rc, out, err = curl("-H", "content-type: application/json", "-d",
                        json.dumps({"model": "reset-ns+reset_after=0", "messages": MSGS}),
                        M.url("/v1/chat/completions"))
    assert rc in (18, 56), (rc, err)


@test
def stall_after_keeps_the_connection_silent():
    s = raw_request("/v1/chat/completions", {"model": "stall-1+stall_after=2", "stream": True, "messages": MSGS})
    got = b""
    while got.count(b"data: ") < 2:
        got += s.recv(65536)
    s.settimeout(0.7)
    try:
        more = s.recv(65536)
        assert False, "stalled stream sent more: %r" % more
    except socket.timeout:
        pass
    r = wait_request("stall-1+stall_after=2")
    assert M.events(r["id"]) == [], "still open"
    s.close()
    assert M.wait_event(r["id"], timeout=3)["event"] == "aborted"


@test
def ttfb_and_pacing():
    t0 = time.time()
    st, _, _ = post("/v1/chat/completions", {"model": "g+ttfb_ms=300", "messages": MSGS})
    assert st == 200 and time.time() - t0 >= 0.3
    t0 = time.time()
    chunks = openai_stream("/v1/chat/completions", {"model": "g+chunks=4+pace_ms=60", "messages": MSGS})
    # role, 4 deltas, finish, [DONE]: six gaps of 60ms.
    assert len(chunks) == 6 and time.time() - t0 >= 0.33, time.time() - t0


@test
def h2c_streams_and_answers():
    rc, out, err = curl("--http2-prior-knowledge", "-N", "-H", "content-type: application/json",
                        "-H", "anthropic-version: 2023-06-01", "-d",
                        json.dumps({"model": "h2c-1+chunks=3", "stream": True, "max_tokens": 50, "messages": MSGS}),
                        M.url("/v1/messages"))
    assert rc == 0, err
    names = [n for n, _ in sse_events(out)]
    assert names[0] == "message_start" and names[-1] == "message_stop" and names.count("content_block_delta") == 3
    rc, out, err = curl("--http2-prior-knowledge", "-sS", M.url("/v1/models"))
    assert rc == 0 and json.loads(out)["object"] == "list"
    assert wait_request("h2c-1+chunks=3")["protocol"] == "HTTP/2"


@test
def backpressure_bounds_memory():
    before = M.rss_kib()
    s = socket.create_connection(("127.0.0.1", M.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    body = json.dumps({"model": "bp+chunks=1000+chunk_bytes=65536", "stream": True, "messages": MSGS}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: m\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    got = 0
    t0 = time.time()
    while time.time() - t0 < 1.0:
        got += len(s.recv(16384))
        time.sleep(0.01)
    grown = M.rss_kib() - before
    assert grown < 16 * 1024, "mock buffered %d KiB for a slow reader" % grown
    tail = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        got += len(d)
        tail = (tail + d)[-64:]
        if b"data: [DONE]" in tail:
            break
    s.close()
    assert got > 1000 * 65536 and b"[DONE]" in tail


@test
def sigterm_exits_zero():
    k = Mock().start()
    assert k.stop() == 0
    rc = M.stop()
    assert rc == 0, (rc, M.stderr()[-2000:])


finish()
