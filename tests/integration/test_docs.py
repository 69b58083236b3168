"""Docs: gate(8) and gate.conf(5) cover what the sources define, render cleanly, and their examples load.

Every name below is read from the sources (config.c's table, provider.c's key handling, cli.c's help
text and dispatch, getenv() calls, the router's table, the D-Bus vtable, the units), so adding a key,
command, route or property without documenting it fails here.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

from gatetest import GATE, Gate, finish, test

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILDDIR = os.environ.get("BUILDDIR", os.path.join(SRCDIR, "build"))


def source(path):
    with open(os.path.join(SRCDIR, path), encoding="utf-8") as f:
        return f.read()


def c_code(text):
    """C source without comments (string and character literals left alone), so that commented-out
    code and prose never count."""
    token = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|/\*.*?\*/|//[^\n]*', re.S)
    return token.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def function_body(code, name):
    """The text of the C function `name` (from its name to the closing brace at column 0)."""
    m = re.search(r"\b%s\([^)]*\)\s*\{(.*?)\n\}" % re.escape(name), code, re.S)
    assert m, "function %s not found" % name
    return m.group(1)


# ---- the man pages' sources ----

def sections(rst):
    """{title: body} for every section of an rst file: titles underlined with = (sections) or -
    (subsections); a section's body includes its subsections."""
    lines = rst.split("\n")
    heads = []
    for i in range(len(lines) - 1):
        t, u = lines[i], lines[i + 1]
        if t.strip() and not t.startswith(" ") and re.fullmatch(r"([=-])\1+", u) and len(u) >= len(t):
            if i > 0 and re.fullmatch(r"([=-])\1+", lines[i - 1]):
                continue        # the document title and subtitle (overlined)
            heads.append((i, "=-".index(u[0]), t.strip()))
    out = {}
    for n, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1:] if lv <= level), len(lines))
        out[title] = "\n".join(lines[i + 2:end])
    return out


def entries(body):
    """{term: text} for the definition list items of a section whose term is a ``literal``."""
    out = {}
    lines = body.split("\n")
    for i, line in enumerate(lines):
        m = re.fullmatch(r"``([^`]+)``", line.rstrip())
        if not m:
            continue
        text = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and not nxt.startswith(" "):
                break
            text.append(nxt)
        out[m.group(1)] = " ".join(" ".join(text).split())
    return out


def plain(rst):
    """rst text with inline markup removed and whitespace collapsed, for phrase searches."""
    t = rst.replace("\\ ", "").replace("**", "").replace("``", "").replace("*", "")
    return " ".join(t.split())


GATE8 = source("man/gate.8.rst")
GATECONF5 = source("man/gate.conf.5.rst")
S8 = sections(GATE8)
S5 = sections(GATECONF5)


def section(secs, title):
    assert title in secs, "section %r missing; have %r" % (title, list(secs))
    return secs[title]


# ---- what the sources define ----

def config_table():
    """[(group, key, default)] from config.c's config_items[] table; default None when computed."""
    code = c_code(source("src/core/config.c"))
    m = re.search(r"ConfigItem\s+config_items\s*\[\s*\]\s*=\s*\{(.*?)\n\};", code, re.S)
    assert m, "config_items[] table not found in config.c"
    table = m.group(1)
    item = re.compile(r'\{\s*"([a-z0-9_]+)"\s*,\s*"([a-z0-9_.]+)"\s*,\s*&type_\w+\s*,\s*'
                      r'(?:[^,(){}]|\([^()]*\))+,\s*(NULL|"(?:[^"\\]|\\.)*")')
    items = [(g, k, None if d == "NULL" else d[1:-1]) for g, k, d in item.findall(table)]
    # Every entry must parse: a table whose format changed must fail loudly, not go unchecked.
    assert len(items) == table.count("{"), "parsed %d of %d table entries" % (len(items), table.count("{"))
    assert len(items) >= 20, items
    return items


def config_groups():
    code = c_code(source("src/core/config.c"))
    m = re.search(r"config_groups\s*\[\s*\]\s*=\s*\{([^}]*)\}", code)
    assert m, "config_groups[] not found"
    return re.findall(r'"([a-z0-9_]+)"', m.group(1))


def provider_keys():
    """(keys, prefixes) that provider.c handles in a [provider.NAME] group."""
    code = c_code(source("src/proxy/provider.c"))
    body = function_body(code, "provider_from_config")
    keys = set(re.findall(r'streq\(k,\s*"([^"]+)"\)', body))
    keys |= set(re.findall(r'config_provider_find\(cp,\s*"([^"]+)"\)', body))
    prefixes = set(re.findall(r'startswith\(k,\s*"([^"]+)"\)', body))
    assert {"type", "base_url", "models"} <= keys, keys
    return keys, prefixes


def provider_types():
    code = c_code(source("src/proxy/provider.c"))
    types = re.findall(r'\[PROVIDER_[A-Z_]+\]\s*=\s*"([^"]+)"', code)
    assert len(types) >= 3, types
    return types


def provider_defaults():
    """{key: default as written in the docs} from provider_new()'s assignments."""
    body = function_body(c_code(source("src/proxy/provider.c")), "provider_new")
    out = {}
    for field, n in re.findall(r"p->(\w+)\s*=\s*(\d+)\s*\*\s*USEC_PER_SEC\s*;", body):
        out[field] = n + "s"
    for field, n in re.findall(r"p->(\w+)\s*=\s*(\d+)\s*;", body):
        out[field] = n
    assert "connect_timeout" in out, out
    return out


def help_text():
    code = source("src/core/cli.c")
    body = function_body(code, "help")
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body)).replace("\\n", "\n")


def help_block(text, heading):
    lines = text.split("\n")
    i = lines.index(heading)
    out = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


# ---- gate.conf(5) ----

@test
def every_config_key_documented_with_its_default():
    problems = []
    for group, key, default in config_table():
        body = S5.get("[%s]" % group)
        if body is None:
            problems.append("no section [%s] for %s" % (group, key))
            continue
        text = entries(body).get(key)
        if text is None:
            problems.append("[%s] %s is not documented" % (group, key))
            continue
        if "Default:" not in text:
            problems.append("[%s] %s: no default given" % (group, key))
        elif default:
            if ("Default: ``%s``" % " ".join(default.split())) not in text:
                problems.append("[%s] %s: default %r not documented" % (group, key, default))
        elif default == "" and "Default: empty" not in text:
            problems.append("[%s] %s: default is empty, docs say otherwise" % (group, key))
    assert not problems, "\n".join(problems)


@test
def no_undocumented_or_stale_config_sections():
    groups = config_groups()
    for g in groups:
        section(S5, "[%s]" % g)
    known = {(g, k) for g, k, _ in config_table()}
    for title, body in S5.items():
        m = re.fullmatch(r"\[([a-z0-9_]+)\]", title)
        if not m:
            continue
        assert m.group(1) in groups, "gate.conf(5) documents a group config.c does not know: " + title
        for key in entries(body):
            assert (m.group(1), key) in known, "gate.conf(5) documents [%s] %s, config.c has no such key" % (
                m.group(1), key)


@test
def every_provider_key_documented():
    keys, prefixes = provider_keys()
    docs = entries(section(S5, "[provider.NAME]"))
    for k in keys:
        assert k in docs, "[provider.NAME] %s is not documented" % k
    for p in prefixes:
        assert any(t.startswith(p) for t in docs), "[provider.NAME] %sNAME is not documented" % p
    for t in docs:
        assert t in keys or any(t.startswith(p) for p in prefixes), \
            "gate.conf(5) documents provider key %s, provider.c does not handle it" % t


@test
def provider_types_and_defaults_documented():
    docs = entries(section(S5, "[provider.NAME]"))
    for t in provider_types():
        assert ("``%s``" % t) in docs["type"], "provider type %s not documented" % t
    for field, default in provider_defaults().items():
        if field in docs:
            assert ("Default: ``%s``" % default) in docs[field], \
                "[provider.NAME] %s: default %s not documented" % (field, default)


@test
def config_files_and_environment_documented():
    code = source("src/core/config.c")
    paths = re.findall(r'path_join_root\(root,\s*"([^"]+)"', code)
    assert len(paths) >= 3, paths
    text = section(S5, "FILES AND PRECEDENCE")
    for p in paths:
        assert p in text, "config path %s not in FILES AND PRECEDENCE" % p
    for var in re.findall(r'getenv\("([A-Z_]+)"\)', c_code(code)):
        assert ("$" + var) in text, "$%s not in FILES AND PRECEDENCE" % var


# ---- gate(8) ----

@test
def every_command_in_help_documented():
    text = help_text()
    cmds = section(S8, "COMMANDS")
    synopsis = plain(section(S8, "SYNOPSIS"))
    found = 0
    for line in help_block(text, "Commands:"):
        if not line.startswith("  ") or line.startswith("    "):
            continue            # a continuation line of the previous command's description
        usage = re.split(r"\s{2,}", line.strip())[0]
        found += 1
        assert usage in plain(cmds), "command %r from --help not in COMMANDS" % usage
        assert usage.split(" [")[0] in synopsis, "command %r not in SYNOPSIS" % usage
    assert found >= 4, text


@test
def every_dispatched_command_and_argument_documented():
    code = c_code(source("src/core/cli.c"))
    cmds = plain(section(S8, "COMMANDS"))
    for cmd in re.findall(r'streq\(cmd,\s*"([^"]+)"\)', code):
        assert cmd in cmds, "command %s is dispatched by cli.c but not in COMMANDS" % cmd
    for arg in re.findall(r'streq\(argv\[\w+\],\s*"([^"]+)"\)', code):
        assert arg in plain(GATE8), "argument %s is handled by cli.c but not in gate(8)" % arg


@test
def every_option_documented():
    opts = plain(section(S8, "OPTIONS"))
    found = 0
    for line in help_block(help_text(), "Options:"):
        usage = re.split(r"\s{2,}", line.strip())[0]     # "-h --help", "--version", ...
        for opt in usage.split():
            found += 1
            assert opt in opts, "option %s from --help not in OPTIONS" % opt
    assert found >= 3, help_text()
    code = c_code(source("src/core/cli.c"))
    for opt in re.findall(r'\{\s*"([a-z-]+)",\s*(?:no|required|optional)_argument', code):
        assert ("--" + opt) in opts, "option --%s not in OPTIONS" % opt


@test
def exit_codes_documented():
    text = section(S8, "EXIT STATUS")
    codes = {"0", "1"} | set(re.findall(r"#define\s+EXIT_\w+\s+(\d+)", source("src/core/cli.h")))
    assert "78" in codes and "2" in codes, codes
    for code in codes:
        assert ("\n**%s**\n" % code) in "\n" + text, "exit status %s not in EXIT STATUS" % code


@test
def environment_documented():
    text = section(S8, "ENVIRONMENT")
    names = set()
    for path in glob.glob(os.path.join(SRCDIR, "src", "**", "*.c"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names |= set(re.findall(r'getenv\("([A-Z_]+)"\)', c_code(f.read())))
    # What systemd sets and libsystemd reads for gate.
    names |= {"NOTIFY_SOCKET", "LISTEN_FDS", "WATCHDOG_USEC"}
    assert {"GATE_CONFIG", "DATABASE_URL", "GATE_LOG", "STATE_DIRECTORY"} <= names, names
    for name in sorted(names):
        assert ("``%s``" % name) in text, "environment variable %s not in ENVIRONMENT" % name


@test
def routes_and_headers_documented():
    text = plain(section(S8, "HTTP API"))
    code = c_code(source("src/api/router.c"))
    routes = re.findall(r'\{\s*"(/[^"]*)",\s*"([A-Z ]+)"', code)
    assert len(routes) >= 5, routes
    for path, methods in routes:
        assert path in text, "route %s not in HTTP API" % path
        for method in methods.split():
            assert method in text, "method %s of %s not in HTTP API" % (method, path)
    proxy = c_code(source("src/proxy/proxy.c"))
    headers = set(re.findall(r'"(x-gate-[a-z-]+)"', proxy)) | {"x-request-id"}
    assert len(headers) >= 3, headers
    for h in headers:
        assert h in text, "response header %s not in HTTP API" % h
    for f in ["src/api/llm.c", "src/proxy/proxy.c", "src/api/router.c"]:
        for status, code_name in re.findall(r'api_reply_error\(\s*[^,]+,\s*[^,]+,\s*(\d{3})\s*,\s*"([a-z_]+)"',
                                            c_code(source(f))):
            assert code_name in text, "error code %s (%s, %s) not in HTTP API" % (code_name, status, f)


@test
def dbus_interface_documented():
    text = plain(section(S8, "D-BUS INTERFACE"))
    code = c_code(source("src/core/bus.c"))
    members = re.findall(r'SD_BUS_(?:PROPERTY|METHOD_WITH_ARGS|SIGNAL_WITH_ARGS)\(\s*"(\w+)"', code)
    assert len(members) >= 10, members
    for m in members:
        assert m in text, "D-Bus member %s not in D-BUS INTERFACE" % m
    for e in re.findall(r'GATE_BUS_INTERFACE\s*"\.Error\.(\w+)"', code):
        assert ("ai.hellas.Gate1.Error." + e) in text, "D-Bus error %s not documented" % e
    h = source("src/core/bus.h")
    for macro in ["GATE_BUS_NAME", "GATE_BUS_PATH", "GATE_BUS_INTERFACE"]:
        value = re.search(r'#define\s+%s\s+"([^"]+)"' % macro, h).group(1)
        assert value in text, "%s %s not in D-BUS INTERFACE" % (macro, value)


@test
def units_and_socket_names_documented():
    text = plain(section(S8, "SYSTEMD INTEGRATION"))
    units = sorted(glob.glob(os.path.join(SRCDIR, "units", "*.in")))
    assert len(units) >= 6, units
    for path in units:
        name = os.path.basename(path)[:-3]
        assert name in text, "unit %s not in SYSTEMD INTEGRATION" % name
        with open(path) as f:
            for fd_name in re.findall(r"^FileDescriptorName=(\S+)", f.read(), re.M):
                assert ("name %s" % fd_name) in text, "socket name %s (%s) not documented" % (fd_name, name)
    for word in ["READY=1", "STATUS=", "RELOADING=1", "STOPPING=1", "SIGHUP", "SIGTERM", "drain_timeout",
                 "WatchdogSec=", "gate-certs.path", "gate-certs-reload.service", "opt-in"]:
        assert word in text, "%s not in SYSTEMD INTEGRATION" % word


@test
def sections_present():
    for title in ["SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES",
                  "HTTP API", "SYSTEMD INTEGRATION", "D-BUS INTERFACE", "EXAMPLES", "SEE ALSO"]:
        section(S8, title)
    for title in ["SYNOPSIS", "DESCRIPTION", "FILES AND PRECEDENCE", "SYNTAX", "[provider.NAME]", "EXAMPLES",
                  "SEE ALSO"]:
        section(S5, title)


# ---- the built pages ----

def render(page):
    path = os.path.join(BUILDDIR, "man", page)
    assert os.path.exists(path), "%s was not built (is man/ in the build?)" % path
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LC_ALL="C.UTF-8")
    if shutil.which("man"):
        cmd = ["man", "-l", path]
    else:
        assert shutil.which("groff"), "neither man nor groff is installed"
        cmd = ["groff", "-man", "-Tutf8", "-rLL=80n", path]
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, "%s exited %d: %s" % (" ".join(cmd), p.returncode, err)
    assert not err.strip(), "%s warned: %s" % (" ".join(cmd), err)
    # man may emphasize with overstriking when it thinks it writes to a terminal.
    return re.sub(r".\x08", "", out)


@test
def gate_8_renders():
    out = render("gate.8")
    for title in ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES",
                  "HTTP API", "SYSTEMD INTEGRATION", "D-BUS INTERFACE", "EXAMPLES", "SEE ALSO"]:
        assert re.search(r"^%s$" % re.escape(title), out, re.M), "section %s missing in rendered gate(8)" % title
    assert re.search(r"^GATE\(8\)", out, re.M), out[:200]
    wide = [line for line in out.split("\n") if len(line) > 80]
    assert not wide, "lines wider than 80 columns:\n" + "\n".join(wide)


@test
def gate_conf_5_renders():
    out = render("gate.conf.5")
    for title in ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES AND PRECEDENCE", "SYNTAX", "[SERVER]", "[AUTH]",
                  "[DATABASE]", "[TLS]", "[P2P]", "[RELAY]", "[PROVIDER.NAME]", "EXAMPLES", "SEE ALSO"]:
        assert re.search(r"^%s$" % re.escape(title), out, re.M), "section %s missing in rendered gate.conf(5)" % title
    assert re.search(r"^GATE\.CONF\(5\)", out, re.M), out[:200]
    wide = [line for line in out.split("\n") if len(line) > 80]
    assert not wide, "lines wider than 80 columns:\n" + "\n".join(wide)


@test
def pages_are_installed():
    with open(os.path.join(BUILDDIR, "meson-info", "intro-installed.json")) as f:
        installed = json.load(f).values()
    for want in [os.path.join("man8", "gate.8"), os.path.join("man5", "gate.conf.5")]:
        assert any(p.endswith(os.sep + want) for p in installed), "%s is not installed: %r" % (want, installed)


# ---- the examples ----

def example_configs():
    """The literal blocks of gate.conf(5)'s EXAMPLES that are gate configuration."""
    body = section(S5, "EXAMPLES")
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", body + "\n")
    out = []
    for b in blocks:
        text = "\n".join(line[4:] for line in b.split("\n")).strip() + "\n"
        if re.search(r"^\[(server|auth|database|tls|p2p|relay|provider\.[^\]]+)\]$", text, re.M):
            out.append(text)
    assert len(out) >= 3, out
    return out


def example_env(text):
    return {v: "test-key-" + v.lower() for v in re.findall(r"^api_key_env\s*=\s*(\w+)", text, re.M)}


@test
def config_examples_load():
    for text in example_configs():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "example.conf")
            with open(path, "w") as f:
                f.write(text)
            env = dict(os.environ, STATE_DIRECTORY=d, **example_env(text))
            env.pop("GATE_CONFIG", None)
            env.pop("DATABASE_URL", None)
            p = subprocess.run([GATE, "config", "check", path], capture_output=True, env=env, timeout=20)
            err = p.stderr.decode()
            assert p.returncode == 0, "example does not load (%d): %s\n%s" % (p.returncode, err, text)
            assert "unknown" not in err, "example has unknown keys: %s\n%s" % (err, text)


@test
def seed_example_is_in_the_page():
    # The seed's gate.toml, as the original description gives it, is shown and loads unchanged.
    seed = ('[server]\nbind = "127.0.0.1:31145"\n\n[database]\nurl = "sqlite://gate.db"\n\n'
            '[p2p]\nenabled = true\nlisten_port = 4919\n\n[relay]\nenabled = true\n'
            'endpoint = "https://relay.hellas.ai"\n')
    assert seed in example_configs(), "the seed example is not shown verbatim in gate.conf(5)"


@test
def provider_examples_start_the_daemon():
    # config check does not interpret provider groups; the daemon does, at start.
    providers = [t for t in example_configs() if "[provider." in t]
    assert providers, "no provider example"
    for text in providers:
        g = Gate(config=text, env=dict(example_env(text), GATE_BUS="none"))
        with g:
            g.start()
            assert g.proc.poll() is None, g.log()


finish()
