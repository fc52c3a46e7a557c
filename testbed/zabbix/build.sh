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

# debootstrap from this machine's mirror: $work, $rootfs, in_root (testbed/debootstrap.sh).
image_name=ella-zbx-image
# shellcheck source=../debootstrap.sh
. "$here/../debootstrap.sh"

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
