"""test_mock_golden: the mock's answers stay byte for byte what tests/fixtures/mock-golden/ recorded.

The mock is deterministic (ids follow the request number, usage follows the body's size), so a fresh mock
given the cases in order must give exactly the recorded bodies. The streams are rendered on a fast path
(see tests/mock/mock-stream.c); these recordings came from the jansson-only renderer before it, and keep it
honest. `python3 test_mock_golden.py --update` rewrites the recordings from the current binary (only when an
answer is meant to change)."""
import http.client
import json
import os
import sys

os.environ.setdefault("MOCK_BIN", os.path.join(os.environ.get("BUILDDIR", "build"), "tests", "mock-upstream"))

from gatetest import finish, test  # noqa: E402
from mocktest import Mock  # noqa: E402

GOLDEN = os.path.join(os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..")), "tests",
                      "fixtures", "mock-golden")
CASES = json.load(open(os.path.join(GOLDEN, "cases.json")))
UPDATE = "--update" in sys.argv[1:]


def fetch(port, case):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = dict(case["headers"], **{"Content-Type": "application/json"})
    c.request("POST", case["path"], body=case["body"].encode(), headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def golden_path(i, case):
    return os.path.join(GOLDEN, "%02d-%s.out" % (i + 1, case["name"]))


@test
def answers_are_byte_identical():
    assert len(CASES) >= 20, len(CASES)
    m = Mock().start()
    try:
        diffs = []
        for i, case in enumerate(CASES):
            status, data = fetch(m.port, case)
            assert status == case["status"], (case["name"], status, data[:300])
            if UPDATE:
                with open(golden_path(i, case), "wb") as f:
                    f.write(data)
                continue
            want = open(golden_path(i, case), "rb").read()
            if data != want:
                at = next((k for k in range(min(len(data), len(want))) if data[k] != want[k]),
                          min(len(data), len(want)))
                diffs.append("%s: first difference at byte %d: got %r, want %r" %
                             (case["name"], at, data[max(0, at - 60):at + 60], want[max(0, at - 60):at + 60]))
        assert not diffs, "\n".join(diffs)
    finally:
        m.stop()


@test
def recordings_cover_the_fast_paths():
    # The recordings must exercise what the fast path renders: every streamed endpoint, escapes in the
    # model, tool arguments and max_tokens cuts. A recording of an empty or failed stream would prove nothing.
    names = " ".join(c["name"] for c in CASES)
    for part in ("chat-stream", "completions-stream", "responses-stream", "messages-stream", "odd-model",
                 "tools", "max-tokens", "chunk-bytes", "usage"):
        assert part in names, part
    for i, case in enumerate(CASES):
        data = open(golden_path(i, case), "rb").read()
        if '"stream": true' in case["body"] and case["status"] == 200:
            assert data.count(b"\n\n") >= 3, case["name"]
            assert b"data: " in data, case["name"]


finish()
