"""sdktest: runs the official SDK client scripts in tests/node for the integration tests (test_sdk,
test_translate): checks that node and the pinned packages are there, and returns each case's JSON result."""
import json
import os
import shutil
import subprocess

NODE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node"))
UPSTREAM_KEY = "sk-up-mock"             # what the mock requires and gate's providers hold
CLIENT_KEY = "sk-client-not-for-upstream"


def node_problem():
    """Why the SDK scripts cannot run, or None."""
    if not shutil.which("node"):
        return "node is not installed (tools/install-deps test installs Debian's nodejs and npm)"
    try:
        with open(os.path.join(NODE_DIR, "package.json")) as f:
            pins = json.load(f)["dependencies"]
    except (OSError, ValueError, KeyError) as e:
        return "cannot read tests/node/package.json: %s" % e
    for name, version in sorted(pins.items()):
        try:
            with open(os.path.join(NODE_DIR, "node_modules", name, "package.json")) as f:
                have = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return ("%s is not installed in %s/node_modules: run `npm ci --prefix tests/node` "
                    "(tools/run-tests does)" % (name, NODE_DIR))
        if have != version:
            return "%s %s is installed but package.json pins %s: run `npm ci --prefix tests/node`" % (
                name, have, version)
    return None


NODE_PROBLEM = node_problem()


def node(script, case, **env):
    """Runs tests/node/SCRIPT.mjs CASE with env; returns the case's result (a parsed JSON value)."""
    if NODE_PROBLEM:
        raise AssertionError("the SDK clients cannot run: " + NODE_PROBLEM)
    # Nothing from the caller's environment may steer the SDKs (base URLs, keys, tokens, org ids).
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    e.update({k: str(v) for k, v in env.items()})
    p = subprocess.run(["node", os.path.join(NODE_DIR, script + ".mjs"), case], cwd=NODE_DIR, env=e,
                       capture_output=True, timeout=90)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError("%s %s printed no result (exit %d):\n%s\n%s" % (script, case, p.returncode,
                                                                             out[-3000:], err[-3000:]))
    res = json.loads(lines[-1])
    if p.returncode != 0 or not res.get("ok"):
        raise AssertionError("%s %s threw: %s\n%s" % (script, case, json.dumps(res.get("thrown"))[:3000],
                                                      err[-3000:]))
    return res["result"]
