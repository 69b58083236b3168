"""Translations of the command line (po/): the German catalogue is complete and well-formed, gate's help and
its errors come out in German with LANGUAGE=de (with only C.UTF-8, and with a German locale compiled into a
temporary directory), the C locale stays English, and the daemon's logs stay English whatever the locale.

How a German locale is made available without changing the host:
- glibc ignores $LANGUAGE while LC_MESSAGES is the "C" locale, but not under "C.UTF-8", which Debian 12's
  glibc has built in: LANG=C.UTF-8 LANGUAGE=de is enough, no locale needs to be generated;
- a real de_DE.UTF-8 is compiled with localedef into a temporary directory and found through $LOCPATH.
gate looks its catalogue up in the compiled-in LOCALEDIR (gate-build.h), where the build's catalogue is not
installed: gate runs in a private mount namespace (unshare; unprivileged with --map-root-user) in which the
build's po/ directory is mounted on LOCALEDIR. Nothing outside that namespace changes.
"""
import errno
import os
import re
import shutil
import subprocess
import tempfile

from gatetest import GATE, finish, test

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILDDIR = os.environ.get("BUILDDIR", os.path.join(SRCDIR, "build"))
PO = os.path.join(SRCDIR, "po")
XGETTEXT_ARGS = ["--from-code=UTF-8", "--keyword=_", "--keyword=N_", "--add-comments=TRANSLATORS:"]


def localedir():
    with open(os.path.join(BUILDDIR, "gate-build.h")) as f:
        m = re.search(r'#define GATE_LOCALEDIR "([^"]+)"', f.read())
    assert m, "GATE_LOCALEDIR not in gate-build.h"
    return m.group(1)


def lines_of(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def clean_env(**extra):
    """The environment without any locale variable, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LC_") or k in ("LANG", "LANGUAGE", "LOCPATH", "GATE_CONFIG"))}
    env.update(extra)
    return env


_ns_problem = []


def run_ns(args, env, timeout=20, raw=False):
    """Runs `gate ARGS` where LOCALEDIR holds the build's catalogues; returns (rc, stdout, stderr), as
    text, or as bytes when raw."""
    target = localedir()
    mo = os.path.join(BUILDDIR, "po")
    assert os.path.exists(os.path.join(mo, "de", "LC_MESSAGES", "gate.mo")), "the build has no de/gate.mo"
    # LOCALEDIR may not exist (/usr/local/share/locale on a fresh machine): then a tmpfs on its nearest
    # existing ancestor holds a mount point for it. Never on / or /usr.
    anchor = target
    while not os.path.isdir(anchor):
        anchor = os.path.dirname(anchor)
    assert anchor not in ("/", "/usr"), "LOCALEDIR %s: no usable mount point" % target
    script = ('set -e\n'
              'mount --make-rprivate / 2>/dev/null || true\n'
              'if [ "$2" != "$1" ]; then mount -t tmpfs tmpfs "$2"; mkdir -p "$1"; fi\n'
              'mount --bind "$3" "$1"\n'
              'shift 3\n'
              'exec "$@"\n')
    prefix = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    p = subprocess.run(prefix + ["sh", "-c", script, "sh", target, anchor, mo, GATE] + list(args),
                       capture_output=True, env=env, timeout=timeout)
    if raw:
        return p.returncode, p.stdout, p.stderr
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ns_available():
    if _ns_problem:
        return False
    try:
        p = subprocess.run(["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"]) +
                           ["true"], capture_output=True, timeout=10)
        if p.returncode != 0:
            _ns_problem.append(p.stderr.decode().strip())
    except FileNotFoundError:
        _ns_problem.append("unshare is not installed")
    return not _ns_problem


def skip(name, why):
    print("SKIP %s: %s" % (name, why), flush=True)


# ---- the catalogues ----

@test
def potfiles_lists_every_source_with_translations():
    listed = set(lines_of(os.path.join(PO, "POTFILES")))
    for path in listed:
        assert os.path.exists(os.path.join(SRCDIR, path)), "POTFILES names %s, which does not exist" % path
    marked = set()
    for root, _, files in os.walk(os.path.join(SRCDIR, "src")):
        for name in files:
            if name.endswith((".c", ".h")):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    if re.search(r'\b_\(\s*"', f.read()):
                        marked.add(os.path.relpath(path, SRCDIR))
    assert "src/core/cli.c" in marked, marked
    assert marked <= listed, "sources with _(\"...\") missing from po/POTFILES: %s" % sorted(marked - listed)


@test
def every_cli_source_in_potfiles():
    # The command line lives in src/core/cli*.c: what it prints is for people, so it is translated.
    listed = set(lines_of(os.path.join(PO, "POTFILES")))
    cli = {os.path.join("src", "core", n) for n in os.listdir(os.path.join(SRCDIR, "src", "core"))
           if re.fullmatch(r"cli.*\.c", n)}
    assert "src/core/cli.c" in cli, cli
    assert cli <= listed, ("command-line sources missing from po/POTFILES (wrap their messages in _() and "
                           "translate them in every LANG.po): %s" % sorted(cli - listed))


@test
def linguas_has_german_and_every_catalogue_exists():
    langs = lines_of(os.path.join(PO, "LINGUAS"))
    assert "de" in langs, langs
    for lang in langs:
        assert os.path.exists(os.path.join(PO, lang + ".po")), "po/%s.po is missing" % lang


@test
def german_catalogue_complete_for_current_sources():
    # A message changed in the sources without updating de.po (ninja gate-update-po, then translate) fails.
    with tempfile.TemporaryDirectory() as d:
        pot = os.path.join(d, "gate.pot")
        p = subprocess.run(["xgettext", "--files-from=" + os.path.join(PO, "POTFILES"), "--directory=" + SRCDIR,
                            "--output=" + pot] + XGETTEXT_ARGS, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        for lang in lines_of(os.path.join(PO, "LINGUAS")):
            po = os.path.join(PO, lang + ".po")
            # msgcmp: every msgid of the sources is in the catalogue, translated and not fuzzy.
            p = subprocess.run(["msgcmp", po, pot], capture_output=True, text=True)
            assert p.returncode == 0, "%s.po is behind the sources:\n%s" % (lang, p.stderr)
            p = subprocess.run(["msgfmt", "--check", "--statistics", "-o", "/dev/null", po],
                               capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
            assert "untranslated" not in p.stderr and "fuzzy" not in p.stderr, p.stderr


# ---- gate in German ----

def german(name, env, check):
    if not ns_available():
        skip(name, "cannot make a mount namespace: " + _ns_problem[0])
        return
    check(env)


@test
def help_in_german_with_c_utf8_and_language():
    def check(env):
        rc, out, err = run_ns(["--help"], env)
        assert rc == 0, (rc, err)
        for phrase in ["Aufruf: gate [OPTIONEN] BEFEHL", "Befehle:", "Optionen:",
                       "Den Dienst im Vordergrund ausführen", "Siehe gate(8) und gate.conf(5)."]:
            assert phrase in out, (phrase, out)
        # Names stay as they are: commands and options are what people type.
        for word in ["serve", "config check [DATEI]", "--certificates", "--version", "GATE_CONFIG"]:
            assert word in out, (word, out)
        assert "Usage" not in out, out
    german("help_in_german_with_c_utf8_and_language", clean_env(LANG="C.UTF-8", LANGUAGE="de"), check)


@test
def usage_error_in_german():
    def check(env):
        rc, out, err = run_ns(["frobnicate"], env)
        assert rc == 2, (rc, err)
        assert "gate: Unbekannter Befehl „frobnicate“." in err, err
        assert "Mit „gate --help“ erhalten Sie weitere Informationen." in err, err
        rc, _, err = run_ns(["config", "check", "a", "b"], env)
        assert rc == 2 and "config check erwartet höchstens eine DATEI, erhalten: „b“." in err, (rc, err)
    german("usage_error_in_german", clean_env(LANG="C.UTF-8", LANGUAGE="de"), check)


@test
def runtime_error_in_german():
    # A bus that is not there: the CLI's own message in German (the reason is libc's, in whatever
    # language its catalogues have).
    def check(env):
        with tempfile.TemporaryDirectory() as d:
            env = dict(env, DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + os.path.join(d, "no-bus"))
            rc, _, err = run_ns(["status"], env)
        assert rc == 1, (rc, err)
        assert err.startswith("gate: Verbindung zum Systembus fehlgeschlagen: "), err
    german("runtime_error_in_german", clean_env(LANG="C.UTF-8", LANGUAGE="de"), check)


@test
def german_with_a_compiled_locale_and_locpath():
    name = "german_with_a_compiled_locale_and_locpath"
    if not (shutil.which("localedef") and os.path.exists("/usr/share/i18n/locales/de_DE")):
        skip(name, "localedef or the locale sources (package locales) are missing")
        return
    if not ns_available():
        skip(name, "cannot make a mount namespace: " + _ns_problem[0])
        return
    with tempfile.TemporaryDirectory() as d:
        for charset in ["UTF-8", "ISO-8859-1"]:
            # localedef exits 1 for warnings alone; the compiled locale is what counts.
            subprocess.run(["localedef", "-i", "de_DE", "-f", charset, os.path.join(d, "de_DE." + charset)],
                           capture_output=True, timeout=120)
            assert os.path.exists(os.path.join(d, "de_DE." + charset, "LC_CTYPE")), (charset, os.listdir(d))
        env = clean_env(LOCPATH=d, LANG="de_DE.UTF-8")
        rc, out, err = run_ns(["--help"], env)
        assert rc == 0 and "Aufruf: gate" in out and "ausführen" in out, (rc, out, err)
        rc, _, err = run_ns(["--frobnicate"], env)
        assert rc == 2 and "gate: Unbekannte Option „--frobnicate“." in err, (rc, err)
        # A Latin-1 terminal gets the same catalogue in Latin-1.
        rc, out, err = run_ns(["--help"], clean_env(LOCPATH=d, LANG="de_DE.ISO-8859-1"), raw=True)
        assert rc == 0, (rc, err)
        assert "ausführen".encode("iso-8859-1") in out and "ausführen".encode() not in out, out[:300]


@test
def c_locale_stays_english():
    # glibc: LANGUAGE is ignored while the locale is "C", as POSIX wants for scripts.
    def check(env):
        rc, out, err = run_ns(["frobnicate"], env)
        assert rc == 2 and "gate: unknown command 'frobnicate'." in err, err
        assert "Try 'gate --help' for more information." in err, err
    german("c_locale_stays_english", clean_env(LC_ALL="C", LANGUAGE="de"), check)


@test
def daemon_logs_stay_english():
    # Log messages are not translated, and neither is %m in them: `serve` switches to the C locale.
    def check(env):
        rc, out, err = run_ns(["serve"], env)
        assert rc == 1, (rc, out, err)
        assert "Failed to set up the state directory: %s" % os.strerror(errno.ENOTDIR) in err, err
    # The state directory below a file: ENOTDIR, which libc's German catalogue calls "Ist kein Verzeichnis".
    german("daemon_logs_stay_english",
           clean_env(LANG="C.UTF-8", LANGUAGE="de", STATE_DIRECTORY="/dev/null/state", GATE_LOG="info"), check)


finish()
