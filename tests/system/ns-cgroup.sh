#!/bin/bash
# Second stage of the system suite's launch: gives the namespace its own child cgroups (under this
# process's current cgroup in every hierarchy), records them in $GATE_NS_WORK/cgroups for the teardown,
# then becomes `unshare` (same PID) with a cgroup namespace rooted there. The booted systemd therefore
# creates init.scope/system.slice below these children, never at the host's hierarchy roots, and
# everything it creates is removed with them.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
list=${GATE_NS_WORK:?}/cgroups
name=gate-ns.$$
: >"$list"

while read -r mp type opts; do
        rel=
        if [ "$type" = cgroup2 ]; then
                rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        else
                # v1: the /proc/self/cgroup line whose controllers (or name=) all appear in the mount options.
                while IFS=: read -r _ ctrls p; do
                        [ -n "$ctrls" ] || continue
                        ok=1
                        for c in ${ctrls//,/ }; do
                                case ",$opts," in *",$c,"*) ;; *) ok=0 ;; esac
                        done
                        if [ $ok = 1 ]; then rel=$p; break; fi
                done </proc/self/cgroup
        fi
        [ -n "$rel" ] || continue
        parent=$mp${rel%/}
        dir=$parent/$name
        mkdir "$dir"
        echo "$dir" >>"$list"
        # A new v1 cpuset group starts with no CPUs and no memory nodes: nothing could join it.
        if [ -e "$dir/cpuset.cpus" ]; then
                cat "$parent/cpuset.cpus" >"$dir/cpuset.cpus"
                cat "$parent/cpuset.mems" >"$dir/cpuset.mems"
        fi
        echo $$ >"$dir/cgroup.procs"
done < <(awk '$5 ~ "^/sys/fs/cgroup" { n = split($0, a, " - "); split(a[2], b, " ");
                                      if (b[1] == "cgroup" || b[1] == "cgroup2") print $5, b[1], b[3] }' \
         /proc/self/mountinfo)

# --kill-child: if unshare dies, PID 1 inside gets SIGKILL and the whole PID namespace goes with it.
exec unshare --kill-child --cgroup --pid --fork --mount --mount-proc --net --uts \
        bash "$(dirname "$0")/ns-init.sh"
