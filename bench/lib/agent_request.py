"""An agent-sized request body (~150 KB), deterministic: what Claude Code and other agents send on each turn.

A long system prompt (text blocks with cache_control), 24 tools with nested JSON schemas, and a conversation
of 57 messages: user text, assistant text + tool_use, tool_result (string and text-block content, one with
is_error), cache_control on the last block. Text holds prose, code with quotes, backslashes and newlines, and
some non-ASCII (accents, arrows, CJK, an emoji), so the writer's escaping and UTF-8 paths are used as a real
request uses them. anthropic() is the request as an Anthropic client sends it (/v1/messages), chat() the
same conversation as an OpenAI chat client sends it (/v1/chat/completions), responses() as a Responses client
sends it (/v1/responses, stateless: the whole history as input items).

Run as a script to write one body: python3 bench/lib/agent_request.py anthropic|chat|responses [MODEL]
"""
import json
import random
import sys

WORDS = ("the function returns value file stream gate error class import test request response upstream "
         "header body token model buffer socket config provider route retry budget cache index parse write "
         "check translate message block tool result schema string number array object field").split()
UNICODE = ("café", "naïve", "→", "≤", "日本語", "🙂", "Ünïcödé", "façade")
CODE = (
    'def handle(req):\n    if req.get("stream"):\n        return relay(req, "text/event-stream")\n'
    '    raise ValueError("bad request: %r" % req)\n',
    'static int parse(const char *s) {\n\tif (!s)\n\t\treturn -EINVAL;\n\treturn strtol(s, NULL, 10);\n}\n',
    'const path = "C:\\\\Users\\\\dev\\\\project";\nconsole.log(`loaded ${path}`);\n',
    '$ grep -rn "TODO" src/ | head\nsrc/main.c:42: /* TODO: retry */\nsrc/http.c:7: // TODO "quoted"\n',
)


class Text:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def prose(self, n_words):
        r, out = self.r, []
        for i in range(n_words):
            w = r.choice(WORDS) if r.random() > 0.02 else r.choice(UNICODE)
            out.append(w)
            if r.random() < 0.08:
                out[-1] += r.choice((".", ",", ":", ";"))
            if r.random() < 0.01:
                out[-1] += "\n\n"
        return " ".join(out)

    def code(self, n_pieces):
        return "".join(self.r.choice(CODE) for _ in range(n_pieces))

    def mixed(self, n_words):
        return self.prose(n_words // 2) + "\n```\n" + self.code(max(n_words // 40, 1)) + "```\n" + \
            self.prose(n_words // 2)


def schema(t, depth=0):
    r = t.r
    props = {}
    for k in range(r.randint(2, 6)):
        name = "%s_%s" % (r.choice(WORDS), k)
        kind = r.choice(("string", "integer", "boolean", "enum", "array", "object") if depth == 0 else
                        ("string", "integer", "boolean", "enum"))
        if kind == "enum":
            p = {"type": "string", "enum": [r.choice(WORDS) for _ in range(4)]}
        elif kind == "array":
            p = {"type": "array", "items": {"type": "string"}}
        elif kind == "object":
            p = schema(t, depth + 1)
        else:
            p = {"type": kind}
        p["description"] = t.prose(r.randint(8, 30))
        props[name] = p
    return {"type": "object", "properties": props, "required": sorted(props)[:2], "additionalProperties": False}


def conversation(seed=7, turns=28):
    """The dialect-neutral turn: system texts, tools, and steps (user text / assistant text + calls / results)."""
    t = Text(seed)
    system = [t.prose(1300), t.mixed(1000), t.prose(300)]
    tools = [{"name": "tool_%d_%s" % (i, t.r.choice(WORDS)), "description": t.prose(t.r.randint(40, 160)),
              "schema": schema(t)} for i in range(24)]
    steps = [("user", t.prose(200))]
    call = 0
    for turn in range(turns):
        calls = []
        for _ in range(t.r.choice((1, 1, 2))):
            tool = t.r.choice(tools)
            args = {k: (t.r.randint(0, 999) if v.get("type") == "integer" else
                        v["enum"][0] if "enum" in v else True if v.get("type") == "boolean" else
                        [t.prose(3)] if v.get("type") == "array" else {} if v.get("type") == "object" else
                        t.prose(t.r.randint(2, 12)))
                    for k, v in tool["schema"]["properties"].items()}
            calls.append(("toolu_%02d_%s" % (call, "".join(t.r.choice("abcdefABCDEF0123456789") for _ in range(16))),
                          tool["name"], args))
            call += 1
        steps.append(("assistant", t.prose(t.r.randint(20, 90)), calls))
        results = []
        for k, (cid, _, _) in enumerate(calls):
            kind = t.r.choice(("string", "string", "blocks"))
            error = turn == 5 and k == 0
            results.append((cid, kind, [t.mixed(t.r.randint(50, 200)) for _ in range(1 if kind == "string" else 2)],
                            error))
        steps.append(("results", results, t.prose(t.r.randint(5, 40)) if t.r.random() < 0.3 else None))
    return system, tools, steps


def anthropic(model="bench", stream=True, seed=7):
    system, tools, steps = conversation(seed)
    messages = []
    for s in steps:
        if s[0] == "user":
            messages.append({"role": "user", "content": [{"type": "text", "text": s[1]}]})
        elif s[0] == "assistant":
            content = [{"type": "text", "text": s[1]}]
            content += [{"type": "tool_use", "id": cid, "name": name, "input": args} for cid, name, args in s[2]]
            messages.append({"role": "assistant", "content": content})
        else:
            content = []
            for cid, kind, texts, error in s[1]:
                b = {"type": "tool_result", "tool_use_id": cid,
                     "content": texts[0] if kind == "string" else [{"type": "text", "text": x} for x in texts]}
                if error:
                    b["is_error"] = True
                content.append(b)
            if s[2]:
                content.append({"type": "text", "text": s[2]})
            messages.append({"role": "user", "content": content})
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": model, "max_tokens": 32000, "stream": stream,
        "system": [{"type": "text", "text": system[0]}, {"type": "text", "text": system[1]},
                   {"type": "text", "text": system[2], "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": x["name"], "description": x["description"], "input_schema": x["schema"]}
                  for x in tools],
        "messages": messages,
        "metadata": {"user_id": "user_bench_0001"},
        "temperature": 1,
    }


def chat(model="bench", stream=True, seed=7):
    system, tools, steps = conversation(seed)
    messages = [{"role": "system", "content": "\n\n".join(system)}]
    for s in steps:
        if s[0] == "user":
            messages.append({"role": "user", "content": s[1]})
        elif s[0] == "assistant":
            messages.append({"role": "assistant", "content": s[1],
                             "tool_calls": [{"id": cid, "type": "function",
                                             "function": {"name": name, "arguments": json.dumps(args)}}
                                            for cid, name, args in s[2]]})
        else:
            for cid, kind, texts, error in s[1]:
                messages.append({"role": "tool", "tool_call_id": cid,
                                 "content": texts[0] if kind == "string" else
                                 [{"type": "text", "text": x} for x in texts]})
            if s[2]:
                messages.append({"role": "user", "content": [{"type": "text", "text": s[2]}]})
    body = {"model": model, "max_completion_tokens": 32000, "stream": stream, "messages": messages,
            "tools": [{"type": "function", "function": {"name": x["name"], "description": x["description"],
                                                        "parameters": x["schema"]}} for x in tools],
            "user": "user_bench_0001", "temperature": 1}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def responses(model="bench", stream=True, seed=7):
    system, tools, steps = conversation(seed)
    items = []
    for s in steps:
        if s[0] == "user":
            items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s[1]}]})
        elif s[0] == "assistant":
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": s[1]}]})
            items += [{"type": "function_call", "call_id": cid, "name": name, "arguments": json.dumps(args)}
                      for cid, name, args in s[2]]
        else:
            for cid, kind, texts, error in s[1]:
                items.append({"type": "function_call_output", "call_id": cid,
                              "output": texts[0] if kind == "string" else
                              [{"type": "input_text", "text": x} for x in texts]})
            if s[2]:
                items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s[2]}]})
    return {"model": model, "max_output_tokens": 32000, "stream": stream, "store": False,
            "instructions": "\n\n".join(system), "input": items,
            "tools": [{"type": "function", "name": x["name"], "description": x["description"],
                       "parameters": x["schema"]} for x in tools]}


BODIES = {"anthropic": anthropic, "chat": chat, "responses": responses}

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in BODIES:
        sys.exit("usage: agent_request.py anthropic|chat|responses [MODEL] > body.json")
    sys.stdout.write(json.dumps(BODIES[sys.argv[1]](*sys.argv[2:3])))
