#!/usr/bin/env bash
# Builds the sandbox host image: a Debian 12 root filesystem made with debootstrap and
# imported into podman as TAG. There is no registry to pull from, so this is the only way
# a sandbox host comes to exist. Callers cache by tag (see ella_deploy/sandbox.py).
#
# usage: build.sh TAG
set -euo pipefail

tag=${1:?usage: build.sh TAG}
here=$(cd "$(dirname "$0")" && pwd)
testbed=$(dirname "$here")

# debootstrap from this machine's mirror: $work, $rootfs, in_root (testbed/debootstrap.sh).
image_name=ella-host-image
# shellcheck source=../debootstrap.sh
. "$here/../debootstrap.sh"

# Users: `deploy` is the operator's login (key only, sudo), `ella` the service user that
# owns the shared storage and runs supervisord. Fixed uids, because the shared storage is
# one bind-mounted directory seen by several hosts.
in_root useradd --create-home --uid 1000 --shell /bin/bash deploy
in_root useradd --create-home --uid 1500 --shell /bin/bash ella
echo 'deploy ALL=(ALL) NOPASSWD: ALL' >"$rootfs/etc/sudoers.d/deploy"
chmod 0440 "$rootfs/etc/sudoers.d/deploy"

# sshd: host keys come from the sandbox (one per host, pinned); none baked into the image.
rm -f "$rootfs"/etc/ssh/ssh_host_*
install -m 0644 "$here/sshd_config" "$rootfs/etc/ssh/sshd_config"
install -d -m 0755 "$rootfs/etc/ssh/host_keys" "$rootfs/etc/ssh/authorized_keys"

install -m 0755 "$here/sandbox-init" "$rootfs/usr/local/sbin/sandbox-init"
# Stand-in for Singularity, which Debian 12 does not package (see testbed/README.md), and
# the directory Singularity mounts a container's session on.
install -m 0755 "$testbed/singularity" "$rootfs/usr/local/bin/singularity"
install -d -m 0755 "$rootfs/var/lib/singularity/mnt/session"

# PostgreSQL: reachable from the sandbox network with passwords, as the site's DB server is.
postgres_cluster </dev/null

import_rootfs "$tag" /usr/local/sbin/sandbox-init ella-sandbox-host
