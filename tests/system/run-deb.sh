#!/bin/bash
# System suite: builds gate's Debian package, checks it with lintian, boots a real systemd in namespaces
# (ns-lib.sh) and there installs, uses, upgrades, removes, purges and reinstalls the package with apt-get,
# checking what each step must leave behind: the user, the enabled sockets and path unit, socket
# activation, `gate status`, `systemctl reload gate`, the German catalogue, an upgrade that restarts the
# service but not its sockets (no request fails during it) and keeps the database, a removal that keeps
# the configuration and the database, and a purge that removes them.
#
# Root only; prints "SKIP system-deb: ..." and exits 77 otherwise. One run of the suite at a time (flock).
# The package is installed inside the namespace only: /etc, /usr and /var are overlays there (ns-init.sh).
#
# The package is built on every run (about 30 s), with plain dpkg-buildpackage (no ccache; nocheck, as the
# unit and fuzz suites run by themselves), from a copy of the source tree (its git-tracked and untracked but
# not ignored files) in $GATE_DEB_DIR/gate-VERSION: the .debs land in $GATE_DEB_DIR, never beside the
# repository. The upgrade installs the same build under a higher version (repacked with dpkg-deb), so that
# the new package's maintainer scripts run as in an upgrade.
#
# Environment: SRCDIR, BUILDDIR (set by meson). GATE_DEB_DIR: where to build (default $BUILDDIR/deb,
# emptied first). GATE_NS_WORKROOT: parent of the work dir (/root). GATE_NS_HOLD=1: keep the namespace up
# after the checks until $WORK/release exists (debugging).
set -uo pipefail

NAME=system-deb
T0=$(date +%s%N)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRCDIR=${SRCDIR:-$(cd "$HERE/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
DEBDIR=${GATE_DEB_DIR:-$BUILDDIR/deb}

. "$HERE/ns-lib.sh"

# ---- preconditions --------------------------------------------------------------------------------------
ns_preconditions curl dpkg-buildpackage dpkg-deb dpkg-checkbuilddeps dh apt-get sqlite3
case $DEBDIR in
/run/*|/tmp/*|/dev/*) skip "GATE_DEB_DIR must not be under /run, /tmp or /dev (private in the namespace)" ;;
/*) ;;
*) skip "GATE_DEB_DIR must be an absolute path" ;;
esac
missing=$(cd "$SRCDIR" && dpkg-checkbuilddeps 2>&1) || skip "build dependencies missing (tools/install-deps test): ${missing#*: }"

ns_lock
ns_workdir

# ---- build ----------------------------------------------------------------------------------------------
VERSION=$(cd "$SRCDIR" && dpkg-parsechangelog -S Version) || abort "cannot read debian/changelog"
ARCH=$(dpkg --print-architecture)
UPVERSION=$VERSION+systemtest1
DEB=$DEBDIR/gate_${VERSION}_$ARCH.deb
DEB2=$DEBDIR/gate_${UPVERSION}_$ARCH.deb

build_package() {
        local tree=$DEBDIR/gate-$VERSION t
        t=$(date +%s%N)
        # Emptied only when it is one of ours (marked, or holding nothing but what a build leaves), never a
        # directory someone pointed GATE_DEB_DIR at.
        if [ -e "$DEBDIR" ] && [ ! -e "$DEBDIR/.gate-system-deb" ] &&
           ls -A "$DEBDIR" | grep -qv '^gate[-_]\|^build\.log$'; then
                echo "$DEBDIR holds files this test did not make: refusing to empty it"
                return 1
        fi
        rm -rf "$DEBDIR" && mkdir -p "$tree" && touch "$DEBDIR/.gate-system-deb" || return 1
        # The working tree as it is (changes not yet committed included), without build dirs or .git.
        if git -C "$SRCDIR" rev-parse --git-dir >/dev/null 2>&1; then
                (cd "$SRCDIR" && git ls-files -z --cached --others --exclude-standard |
                        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
                        tar --null -T - -cf -) | tar -xf - -C "$tree" || return 1
        else
                tar -C "$SRCDIR" --exclude='./build*' --exclude=./.git --exclude=./tests/node/node_modules \
                        -cf - . | tar -xf - -C "$tree" || return 1
        fi
        # A clean environment: nothing of meson's test environment (or a developer's ccache) leaks in.
        # nocheck: the unit and fuzz suites, which debian/rules runs, run on their own in the same
        # `meson test`; a failure there need not hide what this test finds about the package.
        if ! (cd "$tree" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LC_ALL=C.UTF-8 \
                DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) >"$DEBDIR/build.log" 2>&1; then
                echo "dpkg-buildpackage failed; the end of $DEBDIR/build.log:"
                tail -n 40 "$DEBDIR/build.log"
                return 1
        fi
        echo "dpkg-buildpackage: $((($(date +%s%N) - t) / 1000000)) ms"
        ls "$DEBDIR" | grep '\.deb$'
        [ -f "$DEB" ] || { echo "no $DEB"; return 1; }
        # Debhelper makes a -dbgsym package of the stripped debug info.
        ls "$DEBDIR"/gate-dbgsym_"${VERSION}"_"$ARCH".deb >/dev/null || return 1
        # The next version: the same files, so that the upgrade exercises the maintainer scripts.
        dpkg-deb -R "$DEB" "$WORK/repack" &&
                sed -i "s/^Version: .*/Version: $UPVERSION/" "$WORK/repack/DEBIAN/control" &&
                dpkg-deb --root-owner-group -b "$WORK/repack" "$DEB2" >/dev/null || return 1
        rm -rf "$WORK/repack"
        touch "$WORK/built"
}

check_lintian() {
        local out
        out=$(cd "$DEBDIR" && lintian --info --pedantic --fail-on none "gate_${VERSION}_$ARCH.changes" 2>&1 |
                grep -v '^running with root privileges')
        [ -z "$out" ] && echo "lintian: nothing to report" || echo "$out"
        ! grep -q '^[EW]: ' <<<"$out"
}

check 00-build-package build_package
[ -e "$WORK/built" ] || abort "the package did not build: no checks can run"
if command -v lintian >/dev/null 2>&1; then
        check 00-lintian check_lintian
else
        note "00-lintian not run: lintian is not installed"
fi

# ---- boot ---------------------------------------------------------------------------------------------------------
# A Docker-style /usr/sbin/policy-rc.d (exit 101) would keep maintainer scripts from starting anything;
# a real machine has none. Removed in the namespace's overlay only.
cat >"$WORK/prepare.sh" <<'EOF'
rm -f /usr/sbin/policy-rc.d
EOF
ns_boot

# ---- checks -------------------------------------------------------------------------------------------------------
GATE_DBUS=(ai.hellas.Gate /ai/hellas/Gate ai.hellas.Gate1)
prop() { IN busctl get-property "${GATE_DBUS[@]}" "$1" | awk '{print $2}'; }
listening() { IN ss -Hltn "sport = :$1" | grep -q LISTEN; }
socket_inode() { IN ss -Hltne "sport = :$1" | grep -o 'ino:[0-9]*' | sort | tr '\n' ' '; }
apt() { # apt-get inside, logged to $WORK/apt.log
        local t rc
        t=$(date +%s%N)
        IN env DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends "$@" >"$WORK/apt.log" 2>&1
        rc=$?
        echo "apt-get $1 ${2##*/}: rc=$rc in $((($(date +%s%N) - t) / 1000000)) ms"
        [ $rc = 0 ] || { tail -n 20 "$WORK/apt.log"; return 1; }
}
status_of() { IN dpkg-query -W -f='${db:Status-Abbrev}${Version}' gate 2>/dev/null; }
db_created() { IN sqlite3 -readonly /var/lib/gate/gate.db "SELECT value FROM meta WHERE key = 'created_at'"; }
absent() { local p; for p; do IN test ! -e "$p" || { echo "$p is still there"; return 1; }; done; }
present() { local p; for p; do IN test -e "$p" || { echo "$p is missing"; return 1; }; done; }

check_install() {
        local s
        apt install "$DEB" || return 1
        s=$(status_of)
        echo "dpkg: $s"
        [ "$s" = "ii $VERSION" ]
}

check_user() {
        local pw uid
        pw=$(IN getent passwd gate) || { echo "no user gate"; return 1; }
        echo "$pw"
        uid=$(cut -d: -f3 <<<"$pw")
        [ "$uid" -lt 1000 ] || { echo "uid $uid is not a system uid"; return 1; }
        [[ $pw == *:/var/lib/gate:/usr/sbin/nologin ]] || { echo "home or shell wrong"; return 1; }
        IN getent group gate >/dev/null || { echo "no group gate"; return 1; }
}

check_enabled() {
        local u want got bad=0
        for u in gate.socket:enabled gate-p2p.socket:enabled gate-certs.path:enabled \
                 gate.service:disabled gate-https.socket:disabled; do
                want=${u#*:} u=${u%%:*}
                got=$(IN systemctl is-enabled "$u" 2>&1)
                echo "$u: $got"
                [ "$got" = "$want" ] || { echo "  expected $want"; bad=1; }
        done
        got=$(IN systemctl is-active gate-certs.path gate-https.socket | tr '\n' ' ')
        echo "gate-certs.path, gate-https.socket: $got"
        [ "$got" = "active inactive " ] || bad=1
        return $bad
}

check_listening() {
        local p s
        for p in 31145 4919; do listening $p || { echo "nothing listens on $p"; return 1; }; done
        listening 443 && { echo "443 listens: gate-https.socket must not be started"; return 1; }
        IN systemctl is-active -q gate.socket gate-p2p.socket || { echo "sockets not active"; return 1; }
        s=$(IN systemctl is-active gate.service)
        echo "gate.service after installation: $s"
        [ "$s" = inactive ] || { echo "the package must not start gate.service: its sockets do"; return 1; }
}

check_files() {
        local m out
        m=$(IN stat -c '%a %U:%G' /etc/gate /etc/gate/gate.conf.d /var/lib/gate/certs | tr '\n' ',')
        echo "modes of /etc/gate, gate.conf.d, /var/lib/gate/certs: $m"
        [ "$m" = "750 root:gate,750 root:gate,750 gate:gate," ] || { echo "tmpfiles.d not applied"; return 1; }
        IN dpkg-query -W -f='${Conffiles}\n' gate | grep -q '^ /etc/gate/gate.conf ' ||
                { echo "/etc/gate/gate.conf is not a conffile"; return 1; }
        # The shipped file, all comments, loads and means the defaults (the state directory as the service has it).
        out=$(IN env STATE_DIRECTORY=/var/lib/gate gate config check /etc/gate/gate.conf) || { echo "gate config check failed: $out"; return 1; }
        grep -qx 'max_connections = 4096' <<<"$out" || { echo "$out"; return 1; }
        present /usr/share/man/man8/gate.8.gz /usr/share/man/man5/gate.conf.5.gz \
                /usr/share/dbus-1/system.d/ai.hellas.Gate.conf /usr/share/dbus-1/system-services/ai.hellas.Gate.service \
                /usr/share/locale/de/LC_MESSAGES/gate.mo /usr/share/doc/gate/copyright
}

check_activation() {
        local out st
        out=$(IN curl -fsS -m 15 http://127.0.0.1:31145/health) || { echo "GET /health failed"; return 1; }
        echo "GET /health: $out"
        IN systemctl is-active -q gate.service || { echo "gate.service is not active"; return 1; }
        st=$(IN systemctl show -p StatusText --value gate.service)
        echo "StatusText: $st"
        [[ $st == *Serving* ]] || { echo "StatusText lacks 'Serving'"; return 1; }
        IN stat -c '%U %n' /var/lib/gate/gate.db || return 1
        # The database's birth certificate: the checks after the upgrade and the removal compare it.
        db_created >"$WORK/db-created" && [ -s "$WORK/db-created" ] || { echo "no created_at in the database"; return 1; }
        echo "database created_at: $(cat "$WORK/db-created")"
}

check_status() {
        local out g
        out=$(IN gate status 2>&1) || { echo "gate status failed: $out"; return 1; }
        echo "$out" | head -n 4
        g=$(prop Generation)
        grep -Eq '^ *State: running$' <<<"$out" || { echo "no 'State: running'"; return 1; }
        grep -Eq "^ *Generation: $g\$" <<<"$out" || { echo "no 'Generation: $g'"; return 1; }
}

check_reload() {
        local g0 g1
        g0=$(prop Generation) || return 1
        IN systemctl reload gate || { echo "systemctl reload gate failed"; return 1; }
        g1=$(prop Generation)
        echo "Generation $g0 -> $g1"
        [ "$g1" -gt "$g0" ]
}

check_german() {
        local out rc
        out=$(IN env LANGUAGE=de gate --help) || return 1
        grep -q '^Aufruf: gate \[OPTIONEN\] BEFEHL' <<<"$out" || { echo "$out"; return 1; }
        out=$(IN env LANGUAGE=de gate frobnicate 2>&1)
        rc=$?
        echo "LANGUAGE=de gate frobnicate: rc=$rc: $(head -n 1 <<<"$out")"
        [ $rc = 2 ] && grep -q 'Unbekannter Befehl „frobnicate“' <<<"$out"
}

check_no_failed_units() {
        local out
        # gate-certs-reload.service runs a second after a change in the cert directory: let it finish.
        for _ in $(seq 50); do
                [ "$(IN systemctl is-active gate-certs-reload.service)" = activating ] || break
                sleep 0.1
        done
        out=$(IN systemctl list-units --failed --plain --no-legend 'gate*')
        [ -z "$out" ] && return 0
        echo "$out"
        IN journalctl -b -u gate-certs-reload.service -o cat --no-pager | tail -n 5
        return 1
}

check_upgrade() {
        local pid0 pid1 ino0 ino1 ts0 ts1 res s created DB_CREATED
        DB_CREATED=$(cat "$WORK/db-created" 2>/dev/null)
        pid0=$(IN systemctl show -p MainPID --value gate.service)
        ino0="$(socket_inode 31145)$(socket_inode 4919)"
        ts0=$(IN systemctl show -p ActiveEnterTimestampMonotonic --value gate.socket gate-p2p.socket | tr '\n' ' ')
        # Requests all through the upgrade: none may fail while the service restarts behind its sockets.
        IN rm -f /run/gate-test-upgraded
        IN bash -c 'n=0 bad=0; end=$((SECONDS + 120))
                    while [ ! -e /run/gate-test-upgraded ] && [ $SECONDS -lt $end ]; do
                        curl -fsS -m 10 -o /dev/null http://127.0.0.1:31145/health || bad=$((bad + 1))
                        n=$((n + 1))
                    done
                    echo "$n $bad"' >"$WORK/loop.out" 2>&1 &
        local loop=$!
        sleep 0.5
        apt install "$DEB2"
        local rc=$?
        sleep 0.5
        IN touch /run/gate-test-upgraded
        wait $loop
        [ $rc = 0 ] || return 1
        s=$(status_of)
        pid1=$(IN systemctl show -p MainPID --value gate.service)
        ino1="$(socket_inode 31145)$(socket_inode 4919)"
        ts1=$(IN systemctl show -p ActiveEnterTimestampMonotonic --value gate.socket gate-p2p.socket | tr '\n' ' ')
        res=$(tail -n 1 "$WORK/loop.out")
        created=$(db_created)
        echo "dpkg: $s; MainPID $pid0 -> $pid1; requests/failed during the upgrade: $res"
        echo "listening sockets: $ino0 -> $ino1; database created_at $DB_CREATED -> $created"
        grep -v '^[0-9]* [0-9]*$' "$WORK/loop.out" | head -n 5
        [ "$s" = "ii $UPVERSION" ] || { echo "not upgraded"; return 1; }
        IN systemctl is-active -q gate.service || { echo "gate.service is not active after the upgrade"; return 1; }
        [ "$pid0" != "$pid1" ] || { echo "gate.service was not restarted (MainPID unchanged)"; return 1; }
        [ "$ino0" = "$ino1" ] && [ "$ts0" = "$ts1" ] || { echo "the sockets were restarted"; return 1; }
        [ "${res#* }" = 0 ] && [ "${res% *}" -gt 0 ] || { echo "requests failed during the upgrade"; return 1; }
        [ "$created" = "$DB_CREATED" ] || { echo "the database did not survive"; return 1; }
        IN curl -fsS -m 10 -o /dev/null http://127.0.0.1:31145/health
}

check_remove() {
        local s p created DB_CREATED
        DB_CREATED=$(cat "$WORK/db-created" 2>/dev/null)
        apt remove gate || return 1
        s=$(status_of)
        echo "dpkg: $s"
        [ "$s" = "rc $UPVERSION" ] || { echo "expected state rc (removed, configuration kept)"; return 1; }
        for p in 31145 4919; do listening $p && { echo "$p still listens"; return 1; }; done
        s=$(IN systemctl is-active gate.service gate.socket gate-p2p.socket gate-certs.path | tr '\n' ' ')
        echo "gate.service, gate.socket, gate-p2p.socket, gate-certs.path: $s"
        [ "$s" = "inactive inactive inactive inactive " ] || return 1
        absent /usr/bin/gate /lib/systemd/system/gate.socket /lib/systemd/system/gate.service \
                /usr/share/dbus-1/system.d/ai.hellas.Gate.conf || return 1
        # Kept: the configuration, the database, the user.
        present /etc/gate/gate.conf /var/lib/gate/gate.db || return 1
        created=$(db_created)
        [ "$created" = "$DB_CREATED" ] || { echo "database created_at $DB_CREATED -> $created"; return 1; }
        IN getent passwd gate >/dev/null || { echo "user gate is gone"; return 1; }
}

check_purge() {
        local s left
        apt purge gate || return 1
        s=$(status_of)
        echo "dpkg: ${s:-not installed}"
        [ -z "$s" ] || [[ $s == un* ]] || { echo "still known to dpkg"; return 1; }
        absent /etc/gate /var/lib/gate /var/cache/gate /etc/systemd/system/sockets.target.wants/gate.socket \
                /etc/systemd/system/sockets.target.wants/gate-p2p.socket \
                /etc/systemd/system/paths.target.wants/gate-certs.path || return 1
        left=$(IN sh -c 'ls /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
                2>/dev/null | grep gate')
        [ -z "$left" ] || { echo "deb-systemd-helper state left: $left"; return 1; }
        # Debian keeps system users on purge (files they own may remain elsewhere): so does gate.
        IN getent passwd gate >/dev/null && echo "user gate kept, as intended"
}

check_reinstall() {
        apt install "$DEB" || return 1
        listening 31145 || { echo "nothing listens on 31145"; return 1; }
        IN systemctl is-active -q gate.service && { echo "gate.service runs before the first request"; return 1; }
        IN curl -fsS -m 15 -o /dev/null http://127.0.0.1:31145/health || { echo "GET /health failed"; return 1; }
        IN systemctl is-active -q gate.service
}

check 01-install check_install
check 02-user check_user
check 03-units-enabled check_enabled
check 04-sockets-listening check_listening
check 05-files-and-conffile check_files
check 06-socket-activation check_activation
check 07-cli-status check_status
check 08-systemctl-reload check_reload
check 09-cli-german check_german
check 10-no-failed-units check_no_failed_units
check 11-upgrade-keeps-sockets-and-db check_upgrade
check 12-remove-keeps-config-and-db check_remove
check 13-purge check_purge
check 14-reinstall-after-purge check_reinstall

[ "$FAILED" = 0 ] || dump_journal
if [ "${GATE_NS_HOLD:-0}" = 1 ]; then
        note "holding: nsenter -t $SD -a bash; touch $WORK/release to tear down"
        while [ ! -e "$WORK/release" ]; do sleep 1; done
fi
note "$NAME: $PASSED passed, $FAILED failed in $(elapsed) ms"
[ "$FAILED" = 0 ]
