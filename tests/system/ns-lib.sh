# Shared by the system suite's scripts (run-in-ns.sh, run-deb.sh); sourced, not run. Boots a real systemd
# as PID 1 of a PID+mount+net+uts+cgroup namespace (ns-cgroup.sh, then ns-init.sh), tears it down, and
# offers the helpers the checks use. Nothing on the host changes: see ns-init.sh for what is private,
# read-only or an overlay, and docs/systemd.md §7 for why each of these matters.
#
# The sourcing script sets NAME (its test name), T0 (date +%s%N at its start) and HERE (this directory),
# then calls, in this order:
#   ns_preconditions CMD...   SKIP (exit 77) unless root, the commands, namespaces and overlayfs work
#   ns_lock                   one run of the suite at a time (both scripts share the lock)
#   ns_workdir                $WORK below GATE_NS_WORKROOT (/root), removed with the namespace on exit
#   ns_boot [VAR=VALUE...]    boots; the variables reach ns-init.sh (GATE_NS_BUILD: a meson build dir to
#                             install before boot; without it nothing of gate is installed)
# and uses IN (a command inside), check/ok/fail/abort/note and the others below. If $WORK/prepare.sh
# exists, ns-init.sh runs it in the overlays before systemd starts.

NSPATH=/usr/sbin:/usr/bin:/sbin:/bin
UNSHARE='' SD='' WORK=''
PASSED=0 FAILED=0

skip() { echo "SKIP $NAME: $*"; exit 77; }
note() { echo "#    $*"; }
elapsed() { echo $((($(date +%s%N) - T0) / 1000000)); }
log_tail() { tail -n 30 "$1" | sed 's/^/|    /'; }

ns_preconditions() {
        [ "$(id -u)" = 0 ] || skip "needs root (boots systemd in namespaces)"
        local c
        for c in unshare nsenter setsid setpriv flock mount mknod ip ss "$@"; do
                command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
        done
        [ -x /lib/systemd/systemd ] || skip "systemd is not installed"
        [ -x /usr/bin/python3 ] || skip "python3 is not installed in /usr/bin"
        [ -e /usr/share/dbus-1/system.conf ] || skip "no system bus implementation (dbus) is installed"
        unshare --cgroup --pid --fork --mount --net --uts true 2>/dev/null || skip "cannot create namespaces here"
}

ns_lock() {
        LOCK=/run/lock/gate-system-test.lock
        [ -d /run/lock ] || LOCK=/var/lock/gate-system-test.lock
        exec 9>"$LOCK" || skip "cannot open $LOCK"
        flock -w 300 9 || { echo "FAIL $NAME-lock"; note "another run held $LOCK for 5 minutes"; exit 1; }
}

remove_cgroups() { # the namespace's cgroups: the children ns-cgroup.sh made below the runner's cgroups
        local d
        while read -r d; do
                case $d in /sys/fs/cgroup/*/gate-ns.*|/sys/fs/cgroup/gate-ns.*) ;; *) continue ;; esac
                for _ in $(seq 50); do
                        [ -d "$d" ] || break
                        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
                        [ -d "$d" ] && sleep 0.1
                done
                [ -d "$d" ] && note "could not remove cgroup $d"
        done <"$1"
}

ns_workdir() {
        WORKROOT=${GATE_NS_WORKROOT:-/root}
        local old
        # Leftovers of a run that was killed without its trap (its namespace died with it: see --pdeathsig
        # in ns_boot). We hold the lock, so no other run is using them.
        for old in "$WORKROOT"/gate-ns.??????; do
                [ -f "$old/console.log" ] || continue
                note "removing the leftovers of an earlier run: $old"
                [ -s "$old/cgroups" ] && remove_cgroups "$old/cgroups"
                rm -rf "$old"
        done
        WORK=$(mktemp -d "$WORKROOT/gate-ns.XXXXXX") || skip "cannot create a work dir"
        # libmount would otherwise create /run/mount on the host for its utab lock.
        export LIBMOUNT_UTAB=$WORK/utab
        trap ns_cleanup EXIT
        trap 'exit 130' INT TERM

        # overlayfs with upper dirs on tmpfs, tried in a throwaway mount namespace.
        mkdir -p "$WORK/probe"
        unshare --mount sh -c 'mount -t tmpfs tmpfs "$1" && mkdir "$1/l" "$1/u" "$1/w" "$1/m" &&
                mount -t overlay overlay -o "lowerdir=$1/l,upperdir=$1/u,workdir=$1/w" "$1/m"' sh "$WORK/probe" \
                >/dev/null 2>&1 || skip "overlayfs (upper dir on tmpfs) cannot be mounted here"
}

alive() { # PID is our unshare and has not exited
        local s
        s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        [[ $s == *"(unshare) "[!Z]* ]]
}

ns_cleanup() {
        local rc=$?
        set +e
        trap - EXIT INT TERM
        local t
        t=$(date +%s%N)
        if [ -n "$UNSHARE" ] && alive "$UNSHARE"; then
                [ -n "$SD" ] && timeout 10 nsenter -t "$SD" -a systemctl exit >/dev/null 2>&1
                for _ in $(seq 100); do alive "$UNSHARE" || break; sleep 0.1; done
                if alive "$UNSHARE"; then
                        note "systemd did not exit in 10 s: SIGKILL to unshare $UNSHARE (takes the namespace with it)"
                        kill -KILL "$UNSHARE"
                fi
                wait "$UNSHARE" 2>/dev/null
                note "teardown: namespace gone after $((($(date +%s%N) - t) / 1000000)) ms"
        fi
        [ -n "$WORK" ] && [ -s "$WORK/cgroups" ] && remove_cgroups "$WORK/cgroups"
        case $WORK in */gate-ns.??????) rm -rf "$WORK" ;; esac
        exit "$rc"
}

IN() { nsenter -t "$SD" -a env -i PATH=$NSPATH LC_ALL=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"; }

ok() { echo "ok   $1"; PASSED=$((PASSED + 1)); }
fail() {
        local name=$1
        shift
        echo "FAIL $name"
        for l in "$@"; do note "$l"; done
        FAILED=$((FAILED + 1))
}
# check NAME CMD...: one named check from a function that prints its reasons on failure.
check() {
        local name=$1 out
        shift
        if out=$("$@" 2>&1); then
                ok "$name"
                [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/#    /'
        else
                echo "FAIL $name"
                printf '%s\n' "$out" | sed 's/^/#    /'
                FAILED=$((FAILED + 1))
        fi
}
abort() { # setup failed: no checks can run
        fail "$NAME-setup" "$@"
        [ -n "$SD" ] && dump_journal
        [ -n "$WORK" ] && [ -s "$WORK/console.log" ] && { note "console:"; log_tail "$WORK/console.log"; }
        exit 1
}
dump_journal() {
        note "tail of the namespace's journal:"
        IN journalctl -b --no-pager -n 200 2>&1 | sed 's/^/|    /'
}

ns_boot() {
        local state failed_units
        # setsid does not fork here (we are not a process group leader), so $! becomes unshare after the
        # execs. --pdeathsig: should the script die without its trap, unshare gets SIGKILL and takes the
        # namespace along (unshare --kill-child). The lock fd stays here.
        setsid setpriv --pdeathsig KILL env -i PATH=$NSPATH GATE_NS_WORK="$WORK" "$@" \
                bash "$HERE/ns-cgroup.sh" >"$WORK/console.log" 2>&1 </dev/null 9>&- &
        UNSHARE=$!
        for _ in $(seq 100); do
                alive "$UNSHARE" && SD=$(pgrep -P "$UNSHARE" -x systemd) && [ -n "$SD" ] && break
                SD=
                [ -e "/proc/$UNSHARE" ] || break
                sleep 0.1
        done
        [ -n "$SD" ] || abort "systemd did not start in the namespace"
        for _ in $(seq 200); do
                state=$(IN systemctl is-system-running 2>/dev/null)
                case $state in running|degraded) break ;; esac
                alive "$UNSHARE" || break
                sleep 0.25
        done
        note "boot: $state ($(elapsed) ms since start; systemd is PID $SD on the host)"
        case $state in running|degraded) ;; *) abort "the namespace's systemd did not finish booting (state: ${state:-none})" ;; esac
        if [ "$state" = degraded ]; then
                failed_units=$(IN systemctl list-units --failed --plain --no-legend | awk '{print $1}')
                note "degraded boot; failed units: $(echo $failed_units)"
                if echo "$failed_units" | grep -q '^gate'; then abort "gate units failed during boot"; fi
        fi
}
