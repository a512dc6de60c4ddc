#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A throwaway Debian root with exactly the Samba a package was built for,
# to install that package into and run the root's own smbd.  Nothing of the
# project is in it: the package test (selftest/package_tests.py) lays a
# fresh overlay over it per run, so the cached root stays pristine.
#
# debootstrap --variant=minbase, then samba, smbclient and man-db at the
# exact Debian version from the Debian archive (no host packages copied).
# Cached, keyed by suite and Samba version, under
#   $SAMBA_ASYNC_VFS_CACHE (default: ${XDG_CACHE_HOME:-~/.cache}/samba-async-vfs)
# A second run finds the stamp and returns at once.
#
# Usage: prepare-install-root.sh [--suite SUITE] [--samba DEBIAN_VERSION]
#   (defaults: bookworm, and the version of the host's installed samba)
# Prints the path of the root as its last line of stdout.
set -euo pipefail

die() {
	echo "prepare-install-root: $*" >&2
	exit 1
}
log() {
	echo "prepare-install-root: $*" >&2
}

suite=bookworm
samba=""
while [ $# -gt 0 ]; do
	case "$1" in
	--suite) suite="$2"; shift 2 ;;
	--samba) samba="$2"; shift 2 ;;
	*) die "unknown argument '$1'" ;;
	esac
done
if [ -z "$samba" ]; then
	samba=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) ||
		die "no --samba given and the package 'samba' is not installed"
fi

cache=${SAMBA_ASYNC_VFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samba-async-vfs}
key=$(echo "installroot-$suite-samba-$samba" | tr ':+~' '___')
root="$cache/$key"
stamp="$cache/$key.stamp"

if [ -f "$stamp" ] && [ -x "$root/usr/sbin/smbd" ]; then
	echo "$root"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null 2>&1 ||
	die "debootstrap is missing (run buildtools/bootstrap.sh)"

mirror=http://deb.debian.org/debian
rm -rf "$root" "$stamp"
mkdir -p "$cache"
log "debootstrap $suite into $root (about a minute; log: $root.log)"
start=$(date +%s)
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
	tail -5 "$root.log" >&2
	die "debootstrap failed (log: $root.log)"
}

# The security suite carries Debian's point updates of Samba first.
cat >"$root/etc/apt/sources.list" <<EOT
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOT
# Packages installed here must not start services in the build host's
# namespaces; the test starts smbd itself.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"

in_root() {
	unshare --mount --propagation private -- sh -c '
		mount -t proc proc "$1/proc" && shift_root=$1 && shift &&
		exec chroot "$shift_root" "$@"' sh "$root" "$@"
}

log "installing samba=$samba, smbclient, man-db into the root"
# The modules' own library dependencies (liburing2) are installed too:
# the test installs the package with dpkg -i, without network.
in_root env DEBIAN_FRONTEND=noninteractive sh -c "
	apt-get update -q -o Acquire::Retries=3 &&
	apt-get install -y -q --no-install-recommends -o Acquire::Retries=3 \
		samba=$samba samba-libs=$samba samba-common=$samba \
		samba-common-bin=$samba smbclient=$samba \
		man-db python3 liburing2 &&
	apt-get clean" >>"$root.log" 2>&1 || {
	tail -5 "$root.log" >&2
	die "installing samba=$samba failed (not in the archive any more? log: $root.log)"
}
got=$(in_root dpkg-query -W -f='${Version}' samba)
[ "$got" = "$samba" ] || die "the root has samba $got, not $samba"
rm -f "$root/etc/resolv.conf"
touch "$stamp"
log "prepared $root in $(( $(date +%s) - start )) s"
echo "$root"
