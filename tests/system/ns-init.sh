#!/bin/bash
# Pre-exec wrapper for the system suite: runs as PID 1 of a fresh PID+mount+net+uts+cgroup namespace,
# makes everything the booted systemd could write private (or read-only), installs gate into the
# overlays (run-in-ns.sh; run-deb.sh installs its package after boot), and then execs systemd. Started
# only through ns-lib.sh's ns_boot (and ns-cgroup.sh).
#
# Order matters (shared docs/systemd.md §7, pitfalls 1-3):
#   1. private /run; overlays on /etc /usr /var with upper dirs on that tmpfs
#   2. install gate (meson install), sysusers + tmpfiles for gate, test fixtures: before the bus starts;
#      when GATE_NS_BUILD is set. Then $GATE_NS_WORK/prepare.sh, when there is one.
#   3. private /dev, /tmp, /var/tmp and cgroup tree; / /sys /proc/sys read-only
#   4. masks for units that would touch the host (sysctl, udev, modules, gettys, enabled host services)
#   5. exec systemd
# Environment (set through ns_boot): GATE_NS_WORK (work dir with the certs), GATE_NS_BUILD (build dir, or
# empty: nothing of gate is installed before boot).
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8
say() { echo "ns-init: $*"; }
die() { echo "ns-init: FATAL: $*"; exit 1; }

W=${GATE_NS_WORK:?} B=${GATE_NS_BUILD:-}
[ "$$" = 1 ] || die "not PID 1 of a new PID namespace (pid $$)"

# libmount keeps a lock and utab in /run/mount: keep it out of the host's /run (ours is not private yet).
export LIBMOUNT_UTAB=$W/utab
# Nothing below may propagate to the host's mount namespace.
mount --make-rprivate /

# 1. Private /run; overlays with their upper dirs on it.
mount -t tmpfs -o mode=0755,nosuid,size=25% tmpfs /run
mkdir -p /run/gate-ns
export LIBMOUNT_UTAB=/run/gate-ns/utab
for d in etc usr var; do
        mkdir -p /run/gate-ns/$d.u /run/gate-ns/$d.w
        mount -t overlay overlay -o lowerdir=/$d,upperdir=/run/gate-ns/$d.u,workdir=/run/gate-ns/$d.w /$d
done
# /var/run and /var/lock are symlinks into /run on Debian: they now point at the private /run.

# 2. Install gate into the overlays, as a package would (the build dir is configured for prefix /usr).
if [ -n "$B" ]; then
        say "installing $B"
        meson install -C "$B" --no-rebuild --quiet >/run/gate-ns/install.log 2>&1 || {
                cat /run/gate-ns/install.log; die "meson install failed"; }
        # The user must exist and the policy be in place when the bus first loads its configuration.
        systemd-sysusers gate.conf
        systemd-tmpfiles --create gate.conf
        getent passwd gate >/dev/null || die "systemd-sysusers did not create user gate"

        # Fixtures: the first certificate pair, owned by gate as a relay/ACME client would leave it.
        install -o gate -g gate -m 0640 "$W/certs/old.crt" /var/lib/gate/certs/localhost.crt
        install -o gate -g gate -m 0640 "$W/certs/old.key" /var/lib/gate/certs/localhost.key
        # HTTPS through systemd on a high port instead of 443: gate receives it as the fd named "https".
        mkdir -p /etc/systemd/system/gate-https.socket.d
        printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:31146\n' \
                >/etc/systemd/system/gate-https.socket.d/50-system-test.conf
fi
# The calling script's own preparations, in the overlays (before any of the host's files are read-only).
if [ -f "$W/prepare.sh" ]; then
        say "running $W/prepare.sh"
        sh -e "$W/prepare.sh" || die "$W/prepare.sh failed"
fi
# The journal lives in the private /run only.
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' >/etc/systemd/journald.conf.d/50-system-test.conf

# 3. Private /dev (the host's consoles, ttys, kmsg and block devices stay out of reach).
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs /dev
mknod -m 0666 /dev/null c 1 3
mknod -m 0666 /dev/zero c 1 5
mknod -m 0666 /dev/full c 1 7
mknod -m 0666 /dev/random c 1 8
mknod -m 0666 /dev/urandom c 1 9
mknod -m 0666 /dev/tty c 5 0
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm

# Private /tmp and /var/tmp: tmpfiles' "D /tmp" at boot empties these, not the host's /tmp.
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp

# cgroups: we are in a cgroup namespace rooted at the child cgroups ns-cgroup.sh made; mount the
# hierarchies afresh so that systemd's paths are relative to that root (the host's stay untouched).
cg_mounts=$(awk '$5 ~ "^/sys/fs/cgroup" { n = split($0, a, " - "); split(a[2], b, " "); print $5, b[1], b[3] }' \
        /proc/self/mountinfo)
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
else
        mount -t tmpfs -o mode=0755,nosuid,nodev,noexec,size=1m tmpfs /sys/fs/cgroup
        while read -r mp type opts; do
                [ "$mp" != /sys/fs/cgroup ] || continue
                mkdir -p "$mp"
                case $type in
                cgroup2) mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$mp" ;;
                cgroup)
                        o=$(echo "$opts" | tr , '\n' | grep -vxE 'rw|ro' | paste -sd, -)
                        mount -t cgroup -o "nosuid,nodev,noexec,$o" cgroup "$mp" ;;
                esac
        done <<<"$cg_mounts"
fi

# Read-only where a write would reach the host: the root file system (/root, /home, /srv, the work
# tree), the top of /sys (uevents, kernel knobs; the cgroup mounts below it stay writable), and
# /proc/sys (global sysctls). "bind" makes these per-mount flags of this namespace's copies only.
mount -o remount,bind,ro /
mount -o remount,bind,ro /sys
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
        mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
        mount -o remount,bind,ro /proc/sysrq-trigger
fi

ip link set lo up

# 4. Masks: units that touch the kernel or hardware, gettys, and whatever the host has enabled.
mkdir -p /etc/systemd/system /etc/systemd/system-generators
for u in systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service \
        systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
        systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service \
        systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
        sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
        dev-hugepages.mount systemd-random-seed.service systemd-pstore.service systemd-timesyncd.service \
        systemd-firstboot.service systemd-machine-id-commit.service systemd-repart.service \
        systemd-remount-fs.service systemd-fsck-root.service ldconfig.service \
        getty.target console-getty.service getty@.service serial-getty@.service container-getty@.service \
        systemd-ask-password-wall.path systemd-ask-password-console.path timers.target \
        systemd-journald-audit.socket modprobe@.service \
        e2scrub_reap.service apt-daily.service apt-daily-upgrade.service cron.service rsyslog.service \
        ssh.service nginx.service postgresql.service; do
        ln -sfn /dev/null "/etc/systemd/system/$u"
done
for w in /etc/systemd/system/*.wants/*; do
        [ -e "$w" ] || [ -L "$w" ] || continue
        u=${w##*/}
        case $u in dbus*|systemd-journald*|gate*) continue ;; esac
        ln -sfn /dev/null "/etc/systemd/system/$u"
done
for g in systemd-sysv-generator systemd-getty-generator systemd-fstab-generator systemd-gpt-auto-generator \
        systemd-cryptsetup-generator systemd-veritysetup-generator systemd-integritysetup-generator \
        systemd-hibernate-resume-generator; do
        ln -sfn /dev/null "/etc/systemd/system-generators/$g"
done

# 5. systemd, without the capabilities that reach past the namespaces (the set systemd-nspawn drops:
#    modules, clock, raw I/O, kernel log, MAC policy, BPF, accounting, suspend).
say "exec systemd"
exec env -i container=gate-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-bpf,-perfmon,-checkpoint_restore,-mac_admin,-mac_override,-sys_pacct \
        /lib/systemd/systemd --system --unit=multi-user.target --show-status=no --log-color=no
