#!/bin/bash
# System suite: boots a real systemd (PID 1 of a PID+mount+net+uts+cgroup namespace) with gate installed
# into overlays, and checks gate's units, D-Bus policy, path unit, journal fields and CLI against it.
#
# Root only; prints "SKIP system-systemd: ..." and exits 77 otherwise. One run at a time (flock).
# Nothing on the host changes: /run, /tmp, /var/tmp, /dev and the cgroup tree are private, /etc /usr /var
# are overlays with their upper dirs in the private /run, and /, /sys, /proc/sys are read-only inside
# (see ns-init.sh; docs/systemd.md §7 for why each of these matters).
#
# Environment: SRCDIR, BUILDDIR (set by meson). GATE_NS_BUILD: where the prefix=/usr build lives
# (default $BUILDDIR/system-usr, kept between runs). GATE_NS_WORKROOT: parent of the work dir (/root).
# GATE_NS_HOLD=1: keep the namespace up after the checks until $WORK/release exists (debugging).
set -uo pipefail

NAME=system-systemd
T0=$(date +%s%N)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$HERE/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
SYSBUILD=${GATE_NS_BUILD:-$BUILDDIR/system-usr}
# Boot, teardown and the check helpers (skip, note, IN, check, abort, ...): shared with run-deb.sh.
. "$HERE/ns-lib.sh"

# ---- preconditions --------------------------------------------------------------------------------------
ns_preconditions curl openssl meson ninja
case $SYSBUILD in /run/*|/tmp/*|/dev/*) skip "GATE_NS_BUILD must not be under /run, /tmp or /dev" ;; esac

# ---- one run at a time; the work dir --------------------------------------------------------------------------
ns_lock
ns_workdir

# ---- build with the packaging layout (prefix /usr, /etc, /var) -------------------------------------------------
if [ ! -f "$SYSBUILD/build.ninja" ]; then
        meson setup "$SYSBUILD" "$SRCDIR" --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
                >"$WORK/setup.log" 2>&1 || { log_tail "$WORK/setup.log"; abort "meson setup $SYSBUILD failed"; }
fi
# Regenerate first if meson.build files changed, so that the introspection below is current.
ninja -C "$SYSBUILD" build.ninja >"$WORK/build.log" 2>&1 || { log_tail "$WORK/build.log"; abort "meson could not regenerate $SYSBUILD"; }
# Only what `meson install` installs (the unit tests are not needed here).
targets=$(meson introspect --targets "$SYSBUILD" | /usr/bin/python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if t.get("installed"):
        for f in t["filename"]:
            print(os.path.relpath(f, sys.argv[1]))' "$SYSBUILD") || abort "meson introspect $SYSBUILD failed"
ninja -C "$SYSBUILD" $targets >"$WORK/build.log" 2>&1 || { log_tail "$WORK/build.log"; abort "build in $SYSBUILD failed"; }
note "built $SYSBUILD ($(elapsed) ms since start)"

# ---- fixtures: two certificate pairs for localhost ----------------------------------------------------------------
mkdir -p "$WORK/certs"
mkcert() {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$2" \
                -subj "/CN=localhost/O=gate system test $1" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
                -keyout "$WORK/certs/$1.key" -out "$WORK/certs/$1.crt" >/dev/null 2>&1
}
mkcert old 30 && mkcert new 60 || abort "openssl could not make the test certificates"
chmod 0644 "$WORK"/certs/*
serial_of() { openssl x509 -noout -serial | sed 's/^serial=//'; }
OLD_SERIAL=$(serial_of <"$WORK/certs/old.crt")
NEW_SERIAL=$(serial_of <"$WORK/certs/new.crt")
OLD_FP=$(openssl x509 -noout -fingerprint -sha256 <"$WORK/certs/old.crt" | sed 's/.*=//; s/://g' | tr A-F a-f)

# ---- boot ---------------------------------------------------------------------------------------------------------
ns_boot GATE_NS_BUILD="$SYSBUILD"

# ---- checks -------------------------------------------------------------------------------------------------------
GATE_DBUS=(ai.hellas.Gate /ai/hellas/Gate ai.hellas.Gate1)
prop() { IN busctl get-property "${GATE_DBUS[@]}" "$1" | awk '{print $2}'; }
listening() { IN ss -Hltn "sport = :$1" | grep -q LISTEN; }

check_socket() {
        IN systemctl start gate.socket || return 1
        local p
        for p in 31145 4919; do listening $p || { echo "nothing listens on $p"; return 1; }; done
        local s
        s=$(IN systemctl is-active gate.service)
        [ "$s" = inactive ] || { echo "gate.service is $s before the first connection"; return 1; }
        IN systemctl is-active gate.socket gate-p2p.socket >/dev/null || { echo "sockets not active"; return 1; }
}

check_activation() {
        local out st
        out=$(IN curl -fsS -m 15 http://127.0.0.1:31145/health) || { echo "GET /health failed"; return 1; }
        echo "GET /health: $out"
        IN systemctl is-active -q gate.service || { echo "gate.service is not active"; return 1; }
        st=$(IN systemctl show -p StatusText --value gate.service)
        echo "StatusText: $st"
        [[ $st == *Serving* ]] || { echo "StatusText lacks 'Serving'"; return 1; }
}

check_writer_priority() { # the usage writer yields to the event loop, under the unit's seccomp filter too
        local pid t got=""
        pid=$(IN systemctl show -p MainPID --value gate.service)
        for t in $(IN ls /proc/"$pid"/task); do
                [ "$(IN cat /proc/"$pid"/task/"$t"/comm)" = gate-usage ] &&
                        got=$(IN awk '{print "nice " $19 ", policy " $41}' /proc/"$pid"/task/"$t"/stat)
        done
        echo "gate-usage thread: $got"
        # SCHED_IDLE (5) while it keeps up; nice 10 for its SCHED_BATCH spells behind a backlog.
        [ "$got" = "nice 10, policy 5" ] || { echo "expected nice 10, policy 5 (SCHED_IDLE)"; return 1; }
}

check_reload_dbus() {
        local g0 g1
        g0=$(prop Generation) || return 1
        IN busctl call "${GATE_DBUS[@]}" Reload || return 1
        g1=$(prop Generation)
        echo "Generation $g0 -> $g1"
        [ "$g1" -gt "$g0" ]
}

check_reload_systemctl() {
        local g0 g1
        g0=$(prop Generation) || return 1
        IN systemctl reload gate.service || { echo "systemctl reload failed"; return 1; }
        g1=$(prop Generation)
        echo "Generation $g0 -> $g1"
        [ "$g1" -gt "$g0" ]
}

check_bad_config() {
        local g0 g1 rc st
        g0=$(prop Generation)
        IN sh -c 'if [ -e /etc/gate/gate.conf ]; then cp -p /etc/gate/gate.conf /run/gate.conf.saved; fi
                  printf "[server]\nmax_body_bytes = bogus\n" >/etc/gate/gate.conf' || return 1
        IN systemctl reload gate.service
        rc=$?
        st=$(IN systemctl show -p StatusText --value gate.service)
        g1=$(prop Generation)
        IN sh -c 'if [ -e /run/gate.conf.saved ]; then mv /run/gate.conf.saved /etc/gate/gate.conf;
                  else rm -f /etc/gate/gate.conf; fi'
        echo "reload rc=$rc; StatusText: $st; Generation $g0 -> $g1"
        [ $rc -ne 0 ] || { echo "systemctl reload succeeded with a broken configuration"; return 1; }
        IN systemctl is-active -q gate.service || { echo "gate.service did not stay active"; return 1; }
        IN curl -fsS -m 10 -o /dev/null http://127.0.0.1:31145/health || { echo "not serving after it"; return 1; }
        [ "$g1" = "$g0" ] || { echo "Generation changed on a failed reload"; return 1; }
        IN systemctl reload gate.service || { echo "reload after restoring the config failed"; return 1; }
}

check_policy() {
        local out rc
        out=$(IN systemd-run --wait -q -p User=nobody --pipe busctl call "${GATE_DBUS[@]}" Reload </dev/null 2>&1)
        rc=$?
        echo "nobody: busctl call Reload -> rc=$rc: $out"
        [ $rc -ne 0 ] || { echo "an unprivileged caller could reload gate"; return 1; }
        [[ $out == *"Access denied"* ]] || { echo "expected 'Access denied'"; return 1; }
        out=$(IN systemd-run --wait -q -p User=nobody --pipe busctl get-property "${GATE_DBUS[@]}" Version \
                </dev/null 2>&1) || { echo "nobody: get-property Version failed: $out"; return 1; }
        echo "nobody: get-property Version -> $out"
        [[ $out == s\ * ]]
}

served_serial() {
        IN sh -c 'openssl s_client -connect 127.0.0.1:31146 -servername localhost </dev/null 2>/dev/null |
                  openssl x509 -noout -serial' | sed 's/^serial=//'
}

check_certs() {
        local s0 s1 n0 n fin na0 na1
        IN systemctl start gate-certs.path || return 1
        IN systemctl is-active -q gate-certs.path || { echo "gate-certs.path is not active"; return 1; }
        # https is opt-in: systemd refuses to add a socket to a running service, so stop gate first; the
        # next connection starts it with all three fds.
        if ! IN systemctl is-active -q gate-https.socket; then
                IN systemctl stop gate.service || return 1
                IN systemctl start gate-https.socket || return 1
        fi
        listening 31146 || { echo "nothing listens on 31146 (gate-https.socket: $(IN systemctl is-active gate-https.socket))"; return 1; }
        s0=$(served_serial)
        echo "before: serial $s0 (old pair $OLD_SERIAL)"
        [ "$s0" = "$OLD_SERIAL" ] || { echo "gate does not serve the installed pair"; return 1; }
        na0=$(prop CertificateNotAfter)

        # A connection that stays open across the rotation.
        IN rm -f /run/gate-test-go
        IN python3 "$HERE/tls-client.py" 127.0.0.1 31146 /run/gate-test-go >"$WORK/tls.out" 2>&1 &
        local client=$!
        for _ in $(seq 100); do grep -q '^first\|^error' "$WORK/tls.out" && break; sleep 0.1; done
        echo "client: $(head -n 1 "$WORK/tls.out")"
        grep -q "^first $OLD_FP 200" "$WORK/tls.out" || { kill "$client" 2>/dev/null; return 1; }

        n0=$(IN journalctl -u gate-certs-reload.service -o cat --no-pager | grep -c '^Finished')
        IN sh -e -c 'cd /var/lib/gate/certs
                install -o gate -g gate -m 0640 "$1/new.key" localhost.key.tmp
                install -o gate -g gate -m 0640 "$1/new.crt" localhost.crt.tmp
                mv -f localhost.key.tmp localhost.key
                mv -f localhost.crt.tmp localhost.crt' sh "$WORK/certs" || { kill "$client"; return 1; }
        for _ in $(seq 150); do
                fin=$(IN journalctl -u gate-certs-reload.service -o cat --no-pager)
                n=$(grep -c '^Finished' <<<"$fin")
                [ "$n" -gt "$n0" ] && break
                grep -q '^Failed' <<<"$fin" && break
                sleep 0.1
        done
        echo "gate-certs-reload.service: $(tail -n 1 <<<"$fin")"
        [ "$n" -gt "$n0" ] || { echo "gate-certs-reload.service did not finish"; kill "$client"; return 1; }
        s1=$(served_serial)
        na1=$(prop CertificateNotAfter)
        echo "after: serial $s1 (new pair $NEW_SERIAL); CertificateNotAfter $na0 -> $na1"

        IN touch /run/gate-test-go
        for _ in $(seq 100); do grep -q '^second\|^error' "$WORK/tls.out" && break; sleep 0.1; done
        wait "$client" 2>/dev/null
        echo "client: $(tail -n 1 "$WORK/tls.out")"
        [ "$s1" = "$NEW_SERIAL" ] || { echo "a new handshake does not get the new certificate"; return 1; }
        [ "$na1" != "$na0" ] || { echo "CertificateNotAfter did not change"; return 1; }
        grep -q "^second $OLD_FP 200" "$WORK/tls.out" || { echo "the old connection got no answer"; return 1; }
}

check_restart() {
        local pid0 pid1 res
        pid0=$(IN systemctl show -p MainPID --value gate.service)
        IN bash -c 'n=0 bad=0; end=$((SECONDS + 4))
                    while [ $SECONDS -lt $end ]; do
                        curl -fsS -m 10 -o /dev/null http://127.0.0.1:31145/health || bad=$((bad + 1))
                        n=$((n + 1))
                    done
                    echo "$n $bad"' >"$WORK/loop.out" 2>&1 &
        local loop=$!
        sleep 1
        IN systemctl restart gate.service || { echo "systemctl restart failed"; wait $loop; return 1; }
        wait $loop
        pid1=$(IN systemctl show -p MainPID --value gate.service)
        res=$(tail -n 1 "$WORK/loop.out")
        echo "requests/failed: $res; MainPID $pid0 -> $pid1"
        grep -v '^[0-9]* [0-9]*$' "$WORK/loop.out" | head -n 5
        [ "$pid0" != "$pid1" ] || { echo "MainPID did not change"; return 1; }
        [ "${res#* }" = 0 ] && [ "${res% *}" -gt 10 ]
}

GATE_UNITS="gate.socket gate-p2p.socket gate-https.socket gate.service gate-certs.path gate-certs-reload.service"
verify() { # only what concerns gate: the rest of the namespace's units are the host's business
        IN sh -c "cd /usr/lib/systemd/system && systemd-analyze verify $* $GATE_UNITS 2>&1" | grep -i gate
}

check_verify() {
        local out
        out=$(verify --man=no)
        [ -z "$out" ] || { echo "$out"; return 1; }
}

check_verify_man() { # the Documentation= man pages exist (systemd-analyze verify's default check)
        local out
        out=$(verify --man=yes)
        [ -z "$out" ] || { echo "$out"; return 1; }
}

check_security() {
        local out score
        out=$(IN systemd-analyze security --no-pager gate.service 2>&1)
        score=$(sed -n 's/.*Overall exposure level for gate.service: \([0-9.]*\).*/\1/p' <<<"$out")
        echo "exposure: ${score:-?}"
        [ -n "$score" ] || { echo "$out" | tail -n 5; return 1; }
        awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { grep '✗' <<<"$out" | head -n 20; return 1; }
}

check_journal() {
        local n out
        n=$(IN journalctl -u gate.service GATE_COMPONENT=daemon -o verbose --no-pager | grep -c 'GATE_COMPONENT=daemon')
        echo "entries with GATE_COMPONENT=daemon: $n"
        [ "$n" -gt 0 ] || return 1
        out=$(IN journalctl -u gate.service -o json --no-pager | /usr/bin/python3 -c '
import json, sys
found = [e for e in map(json.loads, sys.stdin) if "Reloaded configuration" in str(e.get("MESSAGE", ""))]
with_id = [e for e in found if e.get("MESSAGE_ID")]
print(len(found), len(with_id), with_id[-1]["MESSAGE_ID"] if with_id else "-")')
        echo "reload entries / with MESSAGE_ID / id: $out"
        set -- $out
        [ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ]
}

check_cli_status() {
        local out g
        out=$(IN gate status 2>&1) || { echo "gate status failed: $out"; return 1; }
        echo "$out"
        g=$(prop Generation)
        grep -Eq '^ *State: running$' <<<"$out" || { echo "no 'State: running'"; return 1; }
        grep -Eq "^ *Generation: $g\$" <<<"$out" || { echo "no 'Generation: $g' (the D-Bus property)"; return 1; }
}

check 01-socket-listening check_socket
check 02-socket-activation check_activation
check 02-usage-writer-priority check_writer_priority
check 03-reload-dbus check_reload_dbus
check 03-reload-systemctl check_reload_systemctl
check 04-reload-bad-config check_bad_config
check 05-dbus-policy check_policy
check 06-certs-path-reload check_certs
check 07-restart-keeps-sockets check_restart
check 08-analyze-verify check_verify
if IN test -x /usr/bin/man; then
        check 08-analyze-verify-man check_verify_man
else
        note "08-analyze-verify-man not run: man-db is not installed"
fi
check 08-analyze-security check_security
check 09-journal-fields check_journal
check 10-cli-status check_cli_status

[ "$FAILED" = 0 ] || dump_journal
if [ "${GATE_NS_HOLD:-0}" = 1 ]; then
        note "holding: nsenter -t $SD -a bash; touch $WORK/release to tear down"
        while [ ! -e "$WORK/release" ]; do sleep 1; done
fi
note "$NAME: $PASSED passed, $FAILED failed in $(elapsed) ms"
[ "$FAILED" = 0 ]
