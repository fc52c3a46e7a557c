#!/bin/bash
# usage: run-in-image.sh IMAGE STATE_DIR [KEY=VALUE ...] -- COMMAND [ARG ...]
# For checking an image by hand (it is not the sandbox's Singularity stand-in); as root.
# Runs COMMAND in IMAGE roughly as `singularity exec` does: the squashfs mounted read-only
# (squashfuse) as root, /proc, /dev, a tmpfs /tmp, the host's resolv.conf and hosts, and
# STATE_DIR/{logs,data,socket} bound to /logs /data /socket; uid/gid 1500 ("ella"), a clean
# environment plus KEY=VALUE, through /.singularity.d/actions/exec. Private mount and pid
# namespaces: everything goes away when COMMAND ends (an empty mount point
# /tmp/ella-imgtest-root.* stays behind). `singularity run`: COMMAND /.singularity.d/runscript.
#   run-in-image.sh ella-release-v1.17.2.sif /tmp/state ELLA_CONFIG=/data/ella_config.yml \
#       DB_URL=postgresql://user:pw@127.0.0.1:5432/ella -- ella-cli database current
set -euo pipefail
img=$1 state=$2; shift 2
envs=()
while [ "$1" != -- ]; do envs+=("$1"); shift; done
shift
mkdir -p "$state"/{logs,data,socket}
chown 1500:1500 "$state"/{logs,data,socket}
exec unshare --mount --pid --fork --kill-child --propagation private bash -c '
  set -e
  img=$1 state=$2 n=$3; shift 3
  envs=("${@:1:$n}"); shift "$n"
  mnt=$(mktemp -d /tmp/ella-imgtest-root.XXXXXX)
  squashfuse -o allow_other "$img" "$mnt"
  mount -t proc proc "$mnt/proc"
  mount --bind /dev "$mnt/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$mnt/tmp"
  mount --bind /etc/resolv.conf "$mnt/etc/resolv.conf"
  mount --bind /etc/hosts "$mnt/etc/hosts"
  for d in logs data socket; do mount --bind "$state/$d" "$mnt/$d"; done
  cd "$mnt"
  chroot --userspec=1500:1500 "$mnt" /usr/bin/env -i HOME=/tmp USER=ella LOGNAME=ella \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${envs[@]}" \
      /.singularity.d/actions/exec "$@"
' _ "$img" "$state" "${#envs[@]}" "${envs[@]}" "$@"
