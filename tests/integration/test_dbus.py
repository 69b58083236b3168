"""D-Bus API on a private dbus-daemon: properties, Reload (and its InvalidConfig error), signals,
ReloadCertificates, gate status/reload, and the introspection XML in dbus/ equal to what gate serves."""
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


g.stop()


@test
def cli_without_daemon_is_clear():
    rc, _, err = gate_cli("status")
    assert rc == 1 and "not running" in err, err


bus.terminate()
bus.wait()
shutil.rmtree(busdir, ignore_errors=True)
shutil.rmtree(ca, ignore_errors=True)
finish()
