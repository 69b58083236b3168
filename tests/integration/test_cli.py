"""CLI contract: --version, --help, usage errors (exit 2), config check (exit 78 on invalid)."""
import os
import subprocess
import tempfile

from gatetest import GATE, finish, test


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("GATE_CONFIG", None)
    if env:
        e.update(env)
    p = subprocess.run([GATE] + list(args), capture_output=True, env=e, timeout=20)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@test
def version():
    rc, out, _ = run("--version")
    assert rc == 0 and out.startswith("gate "), (rc, out)


@test
def help_lists_commands():
    rc, out, _ = run("--help")
    assert rc == 0
    for word in ["serve", "config check", "GATE_CONFIG"]:
        assert word in out, word


@test
def unknown_command_is_usage_error():
    rc, _, err = run("frobnicate")
    assert rc == 2 and "unknown command 'frobnicate'" in err, (rc, err)


@test
def unknown_option_is_usage_error():
    rc, _, err = run("--frobnicate")
    assert rc == 2 and "--frobnicate" in err, (rc, err)


@test
def no_command_is_usage_error():
    rc, _, err = run()
    assert rc == 2 and "Usage" in err


@test
def config_check_seed_example():
    # The seed's gate.toml from the original description must load unchanged.
    seed = ('[server]\nbind = "127.0.0.1:31145"\n\n[database]\nurl = "sqlite://gate.db"\n\n'
            '[p2p]\nenabled = true\nlisten_port = 4919\n\n[relay]\nenabled = true\n'
            'endpoint = "https://relay.hellas.ai"\n')
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gate.toml")
        with open(path, "w") as f:
            f.write(seed)
        rc, out, err = run("config", "check", path, env={"STATE_DIRECTORY": d})
        assert rc == 0, (rc, err)
        assert "127.0.0.1:31145" in out and "4919" in out and "relay.hellas.ai" in out, out
        assert os.path.join(d, "gate.db") in out, out


@test
def config_check_invalid_is_78_and_names_the_key():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.conf")
        with open(path, "w") as f:
            f.write("[server]\nmax_body_bytes = 12Q\n")
        rc, _, err = run("config", "check", path, env={"STATE_DIRECTORY": d})
        assert rc == 78, (rc, err)
        assert path in err and "max_body_bytes" in err and "12Q" in err, err


@test
def config_check_uses_gate_config():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.conf")
        with open(path, "w") as f:
            f.write("[server]\nbind = 127.0.0.1:40001\n")
        rc, out, err = run("config", "check", env={"STATE_DIRECTORY": d, "GATE_CONFIG": path})
        assert rc == 0 and "127.0.0.1:40001" in out, (rc, out, err)


@test
def config_check_missing_gate_config_fails():
    with tempfile.TemporaryDirectory() as d:
        rc, _, err = run("config", "check", env={"STATE_DIRECTORY": d,
                                                 "GATE_CONFIG": os.path.join(d, "nope.conf")})
        assert rc == 78, (rc, err)
        assert "nope.conf" in err


@test
def serve_with_invalid_config_exits_78():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bad.conf")
        with open(path, "w") as f:
            f.write("[server]\nidle_timeout = forever\n")
        rc, _, err = run("serve", env={"STATE_DIRECTORY": d, "GATE_CONFIG": path})
        assert rc == 78, (rc, err)
        assert "idle_timeout" in err


finish()
