"""D-Bus API on a private dbus-daemon: properties, Reload (and its InvalidConfig error), signals,
ReloadCertificates, gate status/reload, the introspection XML in dbus/ equal to what gate serves, and
ReloadKeys: gate keys create|update|revoke in force when they return, silent without a daemon (and never
starting one), a daemon the policy keeps them from asking still picking the change up by its poll."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from gatetest import GATE, Gate, curl, finish, free_port, test
from mocktest import Mock

SRCDIR = os.environ.get("SRCDIR", ".")
busdir = tempfile.mkdtemp(prefix="gate-bus-")
conf = os.path.join(busdir, "bus.conf")
with open(conf, "w") as f:
    f.write("""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/>
  </policy>
</busconfig>
""" % busdir)
bus = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork", "--print-address=1"],
                       stdout=subprocess.PIPE)
ADDRESS = bus.stdout.readline().decode().strip()
ENV = {"DBUS_SYSTEM_BUS_ADDRESS": ADDRESS, "GATE_BUS": "system"}


def busctl(*args, check=True):
    p = subprocess.run(["busctl", "--address=" + ADDRESS] + list(args), capture_output=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError("busctl %s: %s" % (args, p.stderr.decode()))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def prop(name):
    _, out, _ = busctl("get-property", "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", name)
    return out.strip()


def gate_cli(*args):
    env = dict(os.environ, **ENV)
    p = subprocess.run([GATE] + list(args), capture_output=True, env=env, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


g = Gate(env=ENV, config="[tls]\nbind = 127.0.0.1:%d\n" % free_port())
os.makedirs(os.path.join(g.state, "certs"), exist_ok=True)
ca = tempfile.mkdtemp(prefix="gate-ca-")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", os.path.join(g.state, "certs", "localhost.key"),
                "-out", os.path.join(g.state, "certs", "localhost.crt"), "-days", "1",
                "-subj", "/CN=localhost"], check=True, capture_output=True)
g.start()


@test
def properties_readable():
    assert prop("Version").startswith('s "'), prop("Version")
    assert prop("State") == 's "running"'
    assert prop("Generation") == "u 1"
    assert prop("NodeId") == 's ""'
    assert "http 127.0.0.1:%d" % g.port in prop("ListenAddresses")
    assert prop("CertificateNames") == 'as 1 "localhost"'
    assert int(prop("CertificateNotAfter").split()[1]) > time.time() * 1e6
    assert prop("Peers") == "as 0"
    assert prop("UsageQueueDrops") == "t 0"
    curl(g.url("/health"))
    assert int(prop("RequestsTotal").split()[1]) >= 1


@test
def reload_bumps_generation_and_signals():
    mon = subprocess.Popen(["busctl", "--address=" + ADDRESS, "monitor", "ai.hellas.Gate", "--json=short"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    _, out, _ = busctl("call", "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", "Reload")
    assert out.strip() == "u 2", out
    assert prop("Generation") == "u 2"
    time.sleep(0.5)
    mon.send_signal(signal.SIGINT)
    lines = mon.communicate(timeout=10)[0].decode().splitlines()
    members = [json.loads(l).get("member") for l in lines if l.strip().startswith("{")]
    assert "Reloaded" in members and "PropertiesChanged" in members, members


@test
def reload_invalid_config_is_refused():
    old = open(g.config_path).read()
    g.write_config(old + "\n[server]\nheader_timeout = soon\n")
    rc, _, err = busctl("call", "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", "Reload", check=False)
    g.write_config(old)
    assert rc != 0 and "header_timeout" in err, err
    assert prop("Generation") == "u 2"
    assert prop("State") == 's "running"'
    rc, out, _ = curl("-i", g.url("/health"))
    assert out.startswith("HTTP/1.1 200")


@test
def reload_certificates_signal():
    _, out, _ = busctl("call", "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", "ReloadCertificates")
    assert out.startswith("t "), out


@test
def cli_status_and_reload():
    rc, out, err = gate_cli("status", "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["State"] == "running" and st["Generation"] >= 2, st
    rc, out, err = gate_cli("status")
    assert rc == 0 and "Generation" in out, (out, err)
    rc, out, err = gate_cli("reload")
    assert rc == 0 and "generation" in out, (out, err)
    rc, out, err = gate_cli("reload", "--certificates")
    assert rc == 0, err


@test
def cli_reload_invalid_config_exit_78():
    old = open(g.config_path).read()
    g.write_config(old + "\n[server]\nmax_headers = many\n")
    rc, _, err = gate_cli("reload")
    g.write_config(old)
    assert rc == 78 and "max_headers" in err, (rc, err)


@test
def introspection_matches_dbus_xml():
    _, out, _ = busctl("introspect", "--xml-interface", "ai.hellas.Gate", "/ai/hellas/Gate")
    served = [i for i in ET.fromstring(out).findall("interface") if i.get("name") == "ai.hellas.Gate1"][0]
    shipped = ET.parse(os.path.join(SRCDIR, "dbus", "ai.hellas.Gate1.xml")).getroot().find("interface")

    def canon(e):
        for x in e.iter():
            x.text = x.text.strip() or None if x.text else None
            x.tail = None
        return ET.tostring(e).decode()

    assert canon(served) == canon(shipped), "\nserved:  %s\nshipped: %s" % (canon(served), canon(shipped))


@test
def reload_keys_method():
    _, out, _ = busctl("call", "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", "ReloadKeys")
    assert out.strip() == "u 0", out


g.stop()

M = Mock(require_key="sk-up").start()
KEYS_CONFIG = """[auth]
loopback_without_key = false
passthrough = never
[provider.mock]
type = openai-compatible
base_url = http://%s/v1
models = mock-*
api_key = sk-up
""" % M.address


def chat(gate, key):
    return curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", gate.url("/v1/chat/completions"),
                "-H", "x-api-key: " + key, "--data-binary",
                '{"model":"mock-a","messages":[{"role":"user","content":"hi"}]}')[1]


def keys_cli(gate, *args, env=None):
    e = dict(os.environ, **(env or ENV))
    e.update(GATE_CONFIG=gate.config_path, STATE_DIRECTORY=gate.state, LANG="C", LC_ALL="C")
    e.pop("LANGUAGE", None)
    p = subprocess.run([GATE] + list(args), capture_output=True, env=e, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@test
def key_changes_are_in_force_when_the_command_returns():
    # Not one sleep between a command and the request that depends on it: the daemon's own poll runs
    # once a second, so only ReloadKeys can make these pass.
    with Gate(env=ENV, config=KEYS_CONFIG) as g2:
        g2.start()
        for i in range(3):
            rc, out, err = keys_cli(g2, "keys", "create", "--name", "k%d" % i, "--rpm", "1")
            assert rc == 0 and err.count("\n") == 1, (rc, err)     # one line, "Created key ..."
            key = out.strip()
            assert chat(g2, key) == "200"
            assert chat(g2, key) == "429"
            rc, _, err = keys_cli(g2, "keys", "update", "k%d" % i, "--rpm", "100")
            assert rc == 0, err
            assert chat(g2, key) == "200"
            rc, _, err = keys_cli(g2, "keys", "revoke", "k%d" % i)
            assert rc == 0 and err.count("\n") == 1, (rc, err)
            assert chat(g2, key) == "401"
        assert "Reloaded the API keys on request." in g2.log()


busdir2 = tempfile.mkdtemp(prefix="gate-bus2-")
marker = os.path.join(busdir2, "activated")
os.mkdir(os.path.join(busdir2, "services"))
with open(os.path.join(busdir2, "services", "ai.hellas.Gate.service"), "w") as f:
    f.write("[D-BUS Service]\nName=ai.hellas.Gate\nExec=/bin/sh -c 'touch %s'\n" % marker)
with open(os.path.join(busdir2, "bus.conf"), "w") as f:
    # A session bus (activation without a setuid helper) whose policy keeps everyone from ReloadKeys.
    f.write("""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <servicedir>%s/services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/>
    <deny send_destination="ai.hellas.Gate" send_interface="ai.hellas.Gate1" send_member="ReloadKeys"/>
  </policy>
</busconfig>
""" % (busdir2, busdir2))
bus2 = subprocess.Popen(["dbus-daemon", "--config-file=" + os.path.join(busdir2, "bus.conf"), "--nofork",
                         "--print-address=1"], stdout=subprocess.PIPE)
ENV2 = {"DBUS_SESSION_BUS_ADDRESS": bus2.stdout.readline().decode().strip(), "GATE_BUS": "user"}


@test
def without_a_daemon_keys_commands_are_silent_and_start_none():
    with Gate(env=ENV2, config=KEYS_CONFIG) as g3:
        rc, out, err = keys_cli(g3, "--user", "keys", "create", "--name", "quiet", env=ENV2)
        assert rc == 0 and err.startswith("Created key 1") and err.count("\n") == 1, (rc, err)
        for args in (["keys", "update", "quiet", "--tpm", "5"], ["keys", "revoke", "quiet"]):
            rc, _, err = keys_cli(g3, "--user", *args, env=ENV2)
            assert rc == 0 and err.count("\n") <= 1 and "daemon" not in err, (args, rc, err)
        rc, _, err = keys_cli(g3, "keys", "create", "--name", "sys", env=ENV)    # the system bus: empty too
        assert rc == 0 and err.count("\n") == 1, (rc, err)
        time.sleep(0.5)
        assert not os.path.exists(marker), "gate keys started the bus-activatable service"
    # The test could fail: a call that allows auto-start does activate it.
    subprocess.run(["busctl", "--address=" + ENV2["DBUS_SESSION_BUS_ADDRESS"], "--expect-reply=no", "call",
                    "ai.hellas.Gate", "/ai/hellas/Gate", "ai.hellas.Gate1", "Reload"], capture_output=True, timeout=30)
    deadline = time.time() + 5
    while not os.path.exists(marker):
        assert time.time() < deadline, "activation did not run; the test above proves nothing"
        time.sleep(0.1)


@test
def a_daemon_that_cannot_be_asked_is_named_and_polls():
    with Gate(env=ENV2, config=KEYS_CONFIG) as g4:
        g4.start()
        rc, out, err = keys_cli(g4, "--user", "keys", "create", "--name", "denied", env=ENV2)
        assert rc == 0 and "could not be told at once" in err and "within a second" in err, (rc, err)
        key = out.strip()
        deadline = time.time() + 5
        while chat(g4, key) != "200":
            assert time.time() < deadline, "the poll did not pick the key up"
            time.sleep(0.1)
        rc, _, err = keys_cli(g4, "--user", "keys", "revoke", "denied", env=ENV2)
        assert rc == 0 and "could not be told at once" in err, (rc, err)
        deadline = time.time() + 5
        while chat(g4, key) != "401":
            assert time.time() < deadline, "the poll did not pick the revocation up"
            time.sleep(0.1)


bus2.terminate()
bus2.wait()
shutil.rmtree(busdir2, ignore_errors=True)
M.stop()


@test
def cli_without_daemon_is_clear():
    rc, _, err = gate_cli("status")
    assert rc == 1 and "not running" in err, err


bus.terminate()
bus.wait()
shutil.rmtree(busdir, ignore_errors=True)
shutil.rmtree(ca, ignore_errors=True)
finish()
