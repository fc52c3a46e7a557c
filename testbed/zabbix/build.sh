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
postgres_cluster <<'CONF'
# A test server: durability traded for a fast schema load.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF

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

import_rootfs "$tag" /usr/local/sbin/zabbix-init ella-zbx-server
