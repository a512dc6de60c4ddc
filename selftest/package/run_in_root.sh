#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install a built samba-async-vfs package into a throwaway copy of a root
# from buildtools/prepare-install-root.sh and test it there with that
# root's own smbd: in_root.sh installs it with dpkg, runs the package's
# autopkgtest (debian/tests/smoke) and purges it.
#
# The root itself is never written: an overlay with its upper layer on a
# tmpfs, in a mount namespace of its own, takes every change and vanishes
# with the namespace.  A network namespace of its own gives that smbd the
# standard ports on its own loopback, so its smb.conf is an ordinary one;
# a pid namespace of its own ends every process started in the root
# (smbd, samba-dcerpcd) when the test ends.
#
# Usage: run_in_root.sh ROOT DEB SRCDIR
#   SRCDIR: the package's source tree (debian/tests, docs/manpages)
# Prints the "ok:" / "FAIL:" / "skip:" lines of the checks.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 ROOT DEB SRCDIR" >&2; exit 2; }
root=$1
deb=$2
src=$3
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$root/usr/sbin/smbd" ] || { echo "FAIL: root: no smbd in $root"; exit 1; }

top=$(mktemp -d /tmp/asvfs-pkgroot.XXXXXX)
rc=0
unshare --mount --net --pid --fork --propagation private -- sh -c '
	set -e
	root=$1 deb=$2 src=$3 inside=$4 top=$5
	mount -t tmpfs -o size=512m tmpfs "$top"
	mkdir "$top/upper" "$top/work" "$top/merged"
	mount -t overlay overlay \
		-o "lowerdir=$root,upperdir=$top/upper,workdir=$top/work" \
		"$top/merged"
	m=$top/merged
	mount -t proc proc "$m/proc"
	mount -t tmpfs tmpfs "$m/run"
	mount -t tmpfs tmpfs "$m/tmp"
	ip link set lo up
	mkdir -p "$m/tmp/src"
	cp "$deb" "$m/tmp/"
	cp -a "$src/debian" "$src/docs" "$m/tmp/src/"
	cp "$inside" "$m/tmp/in_root.sh"
	exec chroot "$m" /bin/sh /tmp/in_root.sh "/tmp/$(basename "$deb")"
	' sh "$root" "$deb" "$src" "$here/in_root.sh" "$top" || rc=$?
rmdir "$top"
exit $rc
