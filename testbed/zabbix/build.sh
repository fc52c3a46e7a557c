#!/usr/bin/env bash
# Builds the Zabbix test image: Debian 12 made with debootstrap, Zabbix 6.0 server and
# frontend (Apache, mod_php) on PostgreSQL from Debian's packages, imported into podman as
# TAG. One image, two roles (see ./zabbix-init): the Zabbix server and, for tests that do
# not use the sandbox's, a PostgreSQL server. Callers cache by tag, a hash of this
# directory (tests/zabbix/server.py).
#
# usage: build.sh TAG
set -euo pipefail

tag=${1:?usage: build.sh TAG}
here=$(cd "$(dirname "$0")" && pwd)

# The Debian mirror this machine's apt already uses (as testbed/host-image/build.sh).
mirror=${ELLA_SANDBOX_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
    echo "build.sh: no Debian mirror found in apt sources; set ELLA_SANDBOX_DEBIAN_MIRROR" >&2
    exit 2
fi

work=$(mktemp -d /var/tmp/ella-zbx-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
packages=$(grep -v -e '^#' -e '^$' "$here/packages.txt" | paste -sd, -)

echo "build.sh: debootstrap bookworm into $rootfs" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2
    exit 1
}

in_root() { LANG=C.UTF-8 LC_ALL=C.UTF-8 chroot "$rootfs" "$@"; }

# The frontend under /zabbix (the API is /zabbix/api_jsonrpc.php); its configuration is
# written at start, when the database's address is known.
in_root a2enconf -q zabbix-frontend-php
in_root a2dismod -q -f status autoindex >/dev/null || true
echo 'ServerName localhost' >"$rootfs/etc/apache2/conf-available/servername.conf"
in_root a2enconf -q servername

# PostgreSQL for the `db` role: reachable from the test network with passwords.
if [ ! -d "$rootfs/etc/postgresql/15/main" ]; then
    in_root pg_createcluster --locale C.UTF-8 15 main
fi
cat >>"$rootfs/etc/postgresql/15/main/postgresql.conf" <<'CONF'
listen_addresses = '*'
# A test server: durability traded for a fast schema load.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
echo 'host all all 0.0.0.0/0 scram-sha-256' >>"$rootfs/etc/postgresql/15/main/pg_hba.conf"

# The server's settings for a test: few processes, the configuration cache read often (a
# host created through the API is known to the trappers within a second or two).
cat >"$rootfs/etc/zabbix/zabbix_server.conf.d/10-test.conf" <<'CONF'
LogType=console
CacheUpdateFrequency=2
StartPollers=1
StartPollersUnreachable=1
StartPingers=1
StartTrappers=2
StartDiscoverers=1
StartHTTPPollers=1
StartLLDProcessors=1
CONF

install -m 0755 "$here/zabbix-init" "$rootfs/usr/local/sbin/zabbix-init"

in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

echo "build.sh: importing as $tag" >&2
tar -C "$rootfs" -c . | podman import --quiet \
    --change 'CMD ["/usr/local/sbin/zabbix-init"]' \
    --change 'LABEL org.opencontainers.image.title=ella-zbx-server' \
    - "$tag" >/dev/null
echo "$tag"
