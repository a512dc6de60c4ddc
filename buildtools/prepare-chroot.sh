#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Prepare a runtime for a Samba release other than the installed one: a
# minimal Debian chroot (debootstrap) holding that release's smbd from
# Debian's packages, the build dependencies, and the Samba source of that
# smbd prepared by prepare-samba.sh run inside it. The modules are then
# built inside the chroot (against the libraries that smbd loads) and the
# selftest runs that smbd through `unshare --mount` + `chroot`, beside the
# host's own Samba, which stays untouched.
#
# Cached, keyed by the Samba series, under
#   $SAMBA_ASYNC_VFS_CACHE/chroot-<series> (default cache: ~/.cache/samba-async-vfs)
# with the exact Debian version in <root>/.asvfs-samba-version once ready;
# a second run finds the stamp and returns at once (a changed package list
# installs the packages again, nothing else).
#
# Usage: prepare-chroot.sh --samba SERIES [--print-root]
# Prints the chroot's root directory as its last line of stdout.
#
# Adding a release: one line in the table below (Debian suite that has it,
# apt suite to install it from).
set -euo pipefail

die() {
	echo "prepare-chroot: $*" >&2
	exit 1
}
log() {
	echo "prepare-chroot: $*" >&2
}

# series -> "debootstrap suite|apt target release|Debian release name"
recipe() {
	case "$1" in
	4.22) echo "bookworm|bookworm-backports|Debian 12 bookworm-backports" ;;
	*) return 1 ;;
	esac
}

series=""
print_root=0
while [ $# -gt 0 ]; do
	case "$1" in
	--samba) series="$2"; shift 2 ;;
	--print-root) print_root=1; shift ;;
	*) die "unknown argument '$1'" ;;
	esac
done
[ -n "$series" ] || die "usage: prepare-chroot.sh --samba SERIES"
r=$(recipe "$series") || die "no runtime recipe for Samba $series (known: 4.22)"
IFS='|' read -r suite target _ <<<"$r"

cache=${SAMBA_ASYNC_VFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samba-async-vfs}
root="$cache/chroot-$series"
if [ "$print_root" = 1 ]; then
	echo "$root"
	exit 0
fi
stamp="$root/.asvfs-prepared"
here=$(cd "$(dirname "$0")" && pwd)
# The host's package lists (bootstrap.sh), minus what is host-side only
# (the clients and test tools), plus what the release's configure needs
# and python3-samba (its SMB3 POSIX client, for the tests of what only
# such clients do).
pkgs_build=$(sed -n '/^PKGS_BUILD="/,/"$/p;/^PKGS_SAMBA_CONFIGURE="/,/"$/p' \
	"$here/bootstrap.sh" | sed -e 's/^[A-Z_]*="//' -e 's/["\\]//g' |
	tr '\n' ' ' | tr -s ' ')
pkgs="samba samba-vfs-modules smbclient liburing2 python3-samba $pkgs_build \
libkrb5-dev xz-utils ca-certificates procps"
if [ -f "$stamp" ] && [ "$(cat "$root/.asvfs-packages" 2>/dev/null)" = "$pkgs" ]
then
	echo "$root"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

mirror=http://deb.debian.org/debian
if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap on the host"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends debootstrap >/dev/null ||
		die "apt-get install debootstrap failed"
fi

t0=$(date +%s)
if [ ! -f "$root/.asvfs-debootstrap" ]; then
	rm -rf "$root"
	mkdir -p "$root"
	log "debootstrap --variant=minbase $suite $root (about a minute)"
	debootstrap --variant=minbase "$suite" "$root" "$mirror" \
		>"$cache/chroot-$series.debootstrap.log" 2>&1 || {
		tail -5 "$cache/chroot-$series.debootstrap.log" >&2
		die "debootstrap failed (log: $cache/chroot-$series.debootstrap.log)"
	}
	touch "$root/.asvfs-debootstrap"
fi
t1=$(date +%s)

# Sources for binaries and source; no service may start in the chroot.
cat >"$root/etc/apt/sources.list.d/asvfs.sources" <<SRC
Types: deb deb-src
URIs: $mirror
Suites: $suite $suite-updates $target
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -f "$root/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"

in_root() {
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}

log "installing Samba and the build dependencies from $target (log: $cache/chroot-$series.apt.log)"
{
	in_root apt-get update -q -o Acquire::Retries=3 &&
		in_root apt-get install -y -q --no-install-recommends \
			-o Acquire::Retries=3 -t "$target" $pkgs
} >"$cache/chroot-$series.apt.log" 2>&1 || {
	tail -10 "$cache/chroot-$series.apt.log" >&2
	die "apt-get in the chroot failed (log: $cache/chroot-$series.apt.log)"
}
in_root apt-get clean
echo "$pkgs" >"$root/.asvfs-packages"
if [ -f "$stamp" ]; then
	log "packages updated: $root"
	echo "$root"
	exit 0
fi
ver=$(in_root dpkg-query -W -f='${Version}' samba)
case "$ver" in
*:"$series".*|"$series".*) ;;
*) die "the chroot's samba is $ver, not $series" ;;
esac
t2=$(date +%s)

# The tree inside the chroot, as prepare-samba.sh caches it on the host.
mkdir -p "$root/usr/local/lib/asvfs"
cp "$here/prepare-samba.sh" "$root/usr/local/lib/asvfs/"
log "preparing the Samba $ver source inside the chroot"
in_root env SAMBA_ASYNC_VFS_CACHE=/var/cache/samba-async-vfs \
	bash /usr/local/lib/asvfs/prepare-samba.sh --version "$ver" \
	>"$cache/chroot-$series.tree" ||
	die "preparing the Samba source inside the chroot failed"
t3=$(date +%s)
tree=$(tail -1 "$cache/chroot-$series.tree")
echo "$ver" >"$root/.asvfs-samba-version"
echo "$tree" >"$root/.asvfs-samba-tree"
echo "debootstrap $((t1 - t0)) s, packages $((t2 - t1)) s, source $((t3 - t2)) s" \
	>"$root/.asvfs-prepare-times"
log "prepared in $((t3 - t0)) s ($(cat "$root/.asvfs-prepare-times")): $root"
touch "$stamp"
echo "$root"
