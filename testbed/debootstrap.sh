# Sourced by the image recipes (host-image/build.sh, zabbix/build.sh): a Debian 12 root file
# system made with debootstrap from this machine's own mirror. Before sourcing, set `here`
# (the recipe's directory, holding packages.txt) and `image_name` (for the scratch directory).
# Leaves: $work (removed at exit), $rootfs, and in_root CMD... (a chroot into it).

# The Debian mirror this machine's apt already uses, so the image matches the host's view.
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

work=$(mktemp -d "/var/tmp/$image_name.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
packages=$(grep -v -e '^#' -e '^$' "$here/packages.txt" | paste -sd, -)

echo "build.sh: debootstrap bookworm into $rootfs" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2
    exit 1
}

in_root() { LANG=C.UTF-8 LC_ALL=C.UTF-8 chroot "$rootfs" "$@"; }

# A PostgreSQL 15 cluster in the image, reachable from the test network with passwords;
# settings for postgresql.conf beyond listen_addresses come on stdin.
postgres_cluster() {
    if [ ! -d "$rootfs/etc/postgresql/15/main" ]; then
        in_root pg_createcluster --locale C.UTF-8 15 main
    fi
    { echo "listen_addresses = '*'"; cat; } >>"$rootfs/etc/postgresql/15/main/postgresql.conf"
    echo 'host all all 0.0.0.0/0 scram-sha-256' >>"$rootfs/etc/postgresql/15/main/pg_hba.conf"
}

# import_rootfs TAG INIT TITLE: the root file system, apt's caches left out, as podman image
# TAG whose command is INIT; prints TAG.
import_rootfs() {
    in_root apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    echo "build.sh: importing as $1" >&2
    tar -C "$rootfs" -c . | podman import --quiet \
        --change "CMD [\"$2\"]" \
        --change "LABEL org.opencontainers.image.title=$3" \
        - "$1" >/dev/null
    echo "$1"
}
