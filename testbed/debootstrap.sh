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
