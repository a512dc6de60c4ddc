#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Inside the throwaway root (run_in_root.sh): install the package with
# dpkg, run its autopkgtest from the source tree, then purge it and check
# that nothing of it is left.  "ok:" / "FAIL:" lines, as smoke prints.
set -u
deb=$1
pkg=samba-async-vfs
failed=0
ok() { echo "ok: $1"; }
fail() { echo "FAIL: $1: $2"; failed=1; }

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8

# What the package ships, and which of its directories were there before.
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' |
	grep -v '^$' >/tmp/pkg.files
while read -r p; do
	[ -d "$p" ] && echo "$p"
done </tmp/pkg.files >/tmp/pkg.dirs.before

if dpkg -i "$deb" >/tmp/dpkg-i.log 2>&1; then
	ok package_installs_with_dpkg
else
	fail package_installs_with_dpkg "$(tail -3 /tmp/dpkg-i.log | tr '\n' ' ')"
	exit 1
fi

cd /tmp/src || exit 1
ASVFS_SMOKE_REQUIRE_URING=1 sh debian/tests/smoke 2>/tmp/smoke.err ||
	failed=1
cd / || exit 1

if dpkg --purge "$pkg" >/tmp/dpkg-purge.log 2>&1; then
	left=""
	while read -r p; do
		[ -e "$p" ] || continue
		grep -qxF "$p" /tmp/pkg.dirs.before && continue
		left="$left $p"
	done </tmp/pkg.files
	for f in /var/lib/dpkg/info/$pkg.*; do
		[ -e "$f" ] && left="$left $f"
	done
	if [ -z "$left" ]; then
		ok purge_leaves_no_file_behind
	else
		fail purge_leaves_no_file_behind "left:$left"
	fi
else
	fail purge_leaves_no_file_behind "$(tail -3 /tmp/dpkg-purge.log | tr '\n' ' ')"
fi
exit $failed
