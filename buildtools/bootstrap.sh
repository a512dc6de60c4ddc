#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install the Debian packages this project needs to build and test.
# Idempotent: installs only what is missing, adds a deb-src entry only when
# none exists (in a file of its own), and says what it did.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo"
fi

PKGS_RUNTIME="samba samba-vfs-modules smbclient samba-testsuite"
PKGS_BUILD="gcc make pkg-config python3 liburing-dev libtalloc-dev \
libtevent-dev libattr1-dev libcmocka-dev fuse3 libfuse3-dev xsltproc \
docbook-xsl dpkg-dev"
# What Samba's own configure needs for the header-only preparation
# (measured on Debian 12 with --disable-python --without-ad-dc). The +dfsg
# tarballs lack a file the embedded Heimdal needs, so prepare-samba.sh
# configures with the system MIT Kerberos: libkrb5-dev (seen missing on a
# fresh machine, 2026-12-07).
PKGS_SAMBA_CONFIGURE="libkrb5-dev libgnutls28-dev libpopt-dev libjansson-dev libtdb-dev \
libacl1-dev libparse-yapp-perl flex bison libarchive-dev libcap-dev \
libbsd-dev python3-dev libdbus-1-dev libldap2-dev libpam0g-dev liblmdb-dev \
libkeyutils-dev libsystemd-dev zlib1g-dev libicu-dev"
# Used by the selftest: unshare/mount (util-linux), impacket for SMB2 locks,
# attr tools for xattr checks, procps for pgrep; libsmbclient for the
# benchmark's C client, nettle (MD4, HMAC-MD5) for the NTLMv2 of its load
# generator, xfsprogs for its XFS storage; smbnetfs (a FUSE SMB
# client, a second client independent of smbtorture) and fio for the
# client tests; ctdb for the three-node cluster of the cluster part.
PKGS_TEST="util-linux python3-impacket attr procps acl strace \
libsmbclient-dev nettle-dev xfsprogs smbnetfs fio ctdb"

# make deb (dpkg-buildpackage, debhelper, lintian) and the package test:
# a debootstrap'd root with the same Samba, man-db for its man pages.
PKGS_PACKAGE="debhelper lintian debootstrap man-db"

ALL="$PKGS_RUNTIME $PKGS_BUILD $PKGS_SAMBA_CONFIGURE $PKGS_TEST $PKGS_PACKAGE"

missing=""
for p in $ALL; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

have_deb_src() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		if grep -qE '^[[:space:]]*(deb-src|Types:.*deb-src)' "$f"; then
			return 0
		fi
	done
	return 1
}

need_update=0
if ! have_deb_src; then
	f=/etc/apt/sources.list.d/samba-async-vfs-deb-src.sources
	echo "bootstrap: no deb-src entry found; adding $f"
	$SUDO tee "$f" >/dev/null <<'SRC'
# Added by samba-async-vfs buildtools/bootstrap.sh: the build needs the
# exact Debian source of the installed smbd (apt-get source samba=<version>).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	need_update=1
fi

if [ -n "$missing" ] || [ "$need_update" = 1 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -q -o Acquire::Retries=3 >/dev/null || {
		echo "bootstrap: apt-get update failed" >&2
		exit 1
	}
fi

if [ -n "$missing" ]; then
	echo "bootstrap: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	if ! $SUDO apt-get install -y -q --no-install-recommends \
		-o Acquire::Retries=3 $missing >/tmp/bootstrap-apt.log 2>&1; then
		tail -20 /tmp/bootstrap-apt.log >&2
		echo "bootstrap: apt-get install failed (log: /tmp/bootstrap-apt.log)" >&2
		exit 1
	fi
	# The Debian package starts the system smbd/nmbd; the selftest runs
	# its own private smbd, so leave the system services as the admin set
	# them (we do not stop them), only note it.
fi
echo "bootstrap: all packages present"
