"""data/gate.conf, the commented configuration file the package installs as /etc/gate/gate.conf: it lists
every key of config.c's table, commented out at its default, under its group, and loading it changes
nothing (gate config check prints the same as for an empty file)."""
import os
import re
import subprocess
import tempfile

from gatetest import GATE, finish, test

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CONF = os.path.join(SRCDIR, "data", "gate.conf")


def config_table():
    """[(group, key, default)] from config.c's config_items[]; default None when it is computed."""
    with open(os.path.join(SRCDIR, "src", "core", "config.c"), encoding="utf-8") as f:
        code = f.read()
    m = re.search(r"ConfigItem\s+config_items\s*\[\s*\]\s*=\s*\{(.*?)\n\};", code, re.S)
    assert m, "config_items[] not found in config.c"
    item = re.compile(r'\{\s*"([a-z0-9_]+)"\s*,\s*"([a-z0-9_.]+)"\s*,\s*&type_\w+\s*,\s*'
                      r'(?:[^,(){}]|\([^()]*\))+,\s*(NULL|"(?:[^"\\]|\\.)*")')
    items = [(g, k, None if d == "NULL" else d[1:-1]) for g, k, d in item.findall(m.group(1))]
    assert len(items) >= 20, items
    return items


def commented_keys():
    """{(group, key): value} for the lines "#key = value" of data/gate.conf, by the group they are in
    ("[group]" lines, commented or not, switch the group)."""
    out, group = {}, None
    with open(CONF, encoding="utf-8") as f:
        for line in f:
            m = re.fullmatch(r"#?\[([^\]\s]+)\]\s*", line)
            if m:
                group = m.group(1)
                continue
            m = re.fullmatch(r"#([a-z0-9_.]+) =(?: (.*))?\n?", line)
            if m and group:
                out[(group, m.group(1))] = (m.group(2) or "").strip()
    return out


def config_check(path):
    env = dict(os.environ)
    env.pop("GATE_CONFIG", None)
    with tempfile.TemporaryDirectory() as d:
        env["STATE_DIRECTORY"] = d
        p = subprocess.run([GATE, "config", "check", path], capture_output=True, env=env, timeout=20)
        out = p.stdout.decode().replace(d, "STATE")
    return p.returncode, out, p.stderr.decode()


@test
def every_key_listed_at_its_default():
    listed = commented_keys()
    problems = []
    for group, key, default in config_table():
        if (group, key) not in listed:
            problems.append("[%s] %s is not in data/gate.conf" % (group, key))
        elif default is not None and " ".join(listed[(group, key)].split()) != " ".join(default.split()):
            problems.append("[%s] %s: data/gate.conf says %r, the default is %r"
                            % (group, key, listed[(group, key)], default))
    assert not problems, "\n".join(problems)


@test
def no_stale_keys():
    known = {(g, k) for g, k, _ in config_table()}
    for (group, key) in commented_keys():
        if group.startswith(("provider.", "price.")):
            continue            # the examples; test_docs checks their keys against gate.conf(5)
        assert (group, key) in known, "data/gate.conf lists [%s] %s, which config.c does not know" % (group, key)


@test
def loading_it_changes_nothing():
    rc, out, err = config_check(CONF)
    assert rc == 0, (rc, err)
    assert "warning" not in err.lower(), err
    with tempfile.TemporaryDirectory() as d:
        empty = os.path.join(d, "empty.conf")
        open(empty, "w").close()
        rc, base, err = config_check(empty)
        assert rc == 0, (rc, err)

    def body(text):         # without the header comment naming the source files
        return [l for l in text.split("\n") if not l.startswith("#")]
    assert body(out) == body(base), "\n".join(body(out))


finish()
