#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Prepare the exact Debian source of the installed smbd for building VFS
# modules against it: fetch (apt-get source samba=<version>, Debian patches
# applied), configure with Debian's options minus the heavy optional
# backends, and generate only the headers a VFS module includes.
#
# The prepared tree is cached, keyed by the Debian version, under
#   $SAMBA_ASYNC_VFS_CACHE (default: ${XDG_CACHE_HOME:-~/.cache}/samba-async-vfs)
# A second run finds the stamp and returns at once.
#
# Usage: prepare-samba.sh [--version DEBIAN_VERSION] [--print-version]
# Prints the path of the prepared tree as its last line of stdout.
set -euo pipefail

die() {
	echo "prepare-samba: $*" >&2
	exit 1
}
log() {
	echo "prepare-samba: $*" >&2
}

want_version=""
print_version=0
while [ $# -gt 0 ]; do
	case "$1" in
	--version) want_version="$2"; shift 2 ;;
	--print-version) print_version=1; shift ;;
	*) die "unknown argument '$1'" ;;
	esac
done

if [ -z "$want_version" ]; then
	command -v smbd >/dev/null 2>&1 ||
		die "smbd is not installed (run buildtools/bootstrap.sh)"
	want_version=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) ||
		die "the Debian package 'samba' is not installed; cannot tell which Samba source to fetch"
fi
if [ "$print_version" = 1 ]; then
	echo "$want_version"
	exit 0
fi

cache=${SAMBA_ASYNC_VFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samba-async-vfs}
key=$(echo "samba-$want_version" | tr ':+~' '___')
top="$cache/$key"
tree="$top/src"
stamp="$top/prepared.stamp"

if [ -f "$stamp" ] && [ -d "$tree/bin/default" ]; then
	echo "$tree"
	exit 0
fi

for tool in dpkg-source apt-get python3 bison flex; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "'$tool' is missing (run buildtools/bootstrap.sh)"
done

rm -rf "$top"
mkdir -p "$top/dl"
log "fetching Debian source samba=$want_version into $top"
# A failure is judged by what arrived (see the orig fallback below).
(cd "$top/dl" && apt-get source -q --download-only "samba=$want_version") \
	>"$top/fetch.log" 2>&1 ||
	log "apt-get source samba=$want_version failed in part (no deb-src entry? see $top/fetch.log)"
dsc=$(ls "$top"/dl/samba_*.dsc 2>/dev/null | head -1 || true)
orig=$(ls "$top"/dl/samba_*.orig.tar.* 2>/dev/null | head -1 || true)
if [ -n "$dsc" ]; then
	dpkg-source --no-check -x "$dsc" "$tree" >>"$top/fetch.log" 2>&1 ||
		die "dpkg-source -x failed (see $top/fetch.log)"
elif [ -n "$orig" ]; then
	# Seen with bookworm-backports' 4.22: the mirror has the orig tarball
	# but answers 404 for the .dsc and the Debian packaging. The upstream
	# source then stands in for Debian's (their patches do not touch the
	# VFS headers); say so, it is recorded next to the tree.
	log "no .dsc for $want_version: using the upstream tarball $(basename "$orig") without Debian's patches"
	mkdir -p "$tree"
	tar -xf "$orig" -C "$tree" --strip-components=1 ||
		die "extracting $orig failed"
	echo "upstream tarball $(basename "$orig"), no Debian patches" \
		>"$top/source-note"
else
	die "neither a .dsc nor an orig tarball downloaded (see $top/fetch.log)"
fi
rm -rf "$top/dl" "$top"/samba_*.tar.*

cd "$tree"
# Debian brands the version string ("4.17.12-Debian"); do the same so the
# tree's samba_version.h matches what the installed smbd reports.
# Newer Debian packages add their version ("4.22.6-Debian-4.22.6+dfsg-0+
# deb13u1~bpo12+1"): take the suffix from the smbd of this version when it
# is the installed one.
vendor=$(dpkg-vendor --query Vendor 2>/dev/null || echo Debian)
upstream=$(sed -n -e 's/^SAMBA_VERSION_MAJOR=//p' VERSION).$(sed -n \
	-e 's/^SAMBA_VERSION_MINOR=//p' VERSION).$(sed -n \
	-e 's/^SAMBA_VERSION_RELEASE=//p' VERSION)
if [ "$(dpkg-query -W -f='${Version}' samba 2>/dev/null)" = "$want_version" ]
then
	smbd_ver=$(smbd -V 2>/dev/null | sed -n 's/^Version //p')
	case "$smbd_ver" in
	"$upstream"-*) vendor=${smbd_ver#"$upstream"-} ;;
	esac
fi
sed -i -r -e "s/^(SAMBA_VERSION_VENDOR_SUFFIX).*/\1=$vendor/" VERSION

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
	gcc -print-multiarch)
# Debian's config-args (debian/rules), minus what needs heavy or absent
# dependencies and has no effect on the VFS ABI: python, the AD DC, ceph,
# glusterfs, spotlight, avahi, gpgme, etcd. Options that change struct
# layouts or macros a module sees (profiling data, cluster support, quota,
# utmp, winbind, ads, ldap) are kept.
config_args=(
	--prefix=/usr --enable-fhs --sysconfdir=/etc --localstatedir=/var
	--libexecdir=/usr/libexec --libdir="/usr/lib/$multiarch"
	--datadir=/usr/share --with-modulesdir="/usr/lib/$multiarch/samba"
	--with-pammodulesdir="/lib/$multiarch/security"
	--with-privatedir=/var/lib/samba/private
	--with-smbpasswd-file=/etc/samba/smbpasswd
	--with-piddir=/run/samba --with-lockdir=/run/samba
	--with-sockets-dir=/run/samba --with-statedir=/var/lib/samba
	--with-cachedir=/var/cache/samba
	--with-pam --with-syslog --with-utmp --with-winbind --with-automount
	--with-ldap --with-ads --with-profiling-data
	--disable-rpath --disable-rpath-install
	--bundled-libraries=NONE,pytevent,ldb
	--with-cluster-support --with-quota --with-systemd
	--disable-python --without-ad-dc
	--disable-cephfs --disable-glusterfs --disable-spotlight
	--disable-avahi --without-gpgme
)
# The +dfsg tarball of 4.22 lacks a file the embedded Heimdal needs;
# Debian builds against MIT Kerberos anyway.
if [ ! -f third_party/heimdal/lib/wind/rfc3454.txt ] &&
	[ -d third_party/heimdal ]; then
	config_args+=(--with-system-mitkrb5)
fi
log "configuring (about a minute; log: $top/configure.log)"
export PYTHONHASHSEED=1 PYTHON=python3
./buildtools/bin/waf -j"$(nproc)" configure "${config_args[@]}" \
	>"$top/configure.log" 2>&1 || {
	tail -5 "$top/configure.log" >&2
	die "Samba configure failed (log: $top/configure.log)"
}

# Only the generated headers that source3 VFS modules include: the IDL
# files the release still builds (4.22 dropped dcom, oxidresolver and
# remact from its lists), and the generated error tables it has.
targets=$( (ls librpc/idl/*.idl source3/librpc/idl/*.idl) |
	while read -r idl; do
		b=$(basename "$idl")
		grep -qs "$b" "$(dirname "$idl")/wscript_build" && echo "${b%.idl}"
	done | tr '[:lower:]' '[:upper:]' | sed 's/^/PIDL_/' | sort -u |
	paste -sd, -)
targets="$targets,ntstatus_generated,werror_generated,s3_param_proto_h"
targets="$targets,param_functions.h,param_local.h,param_global.h"
if grep -qs "'hresult_generated'" libcli/util/wscript_build; then
	targets="$targets,hresult_generated"
fi
log "generating headers (log: $top/headers.log)"
./buildtools/bin/waf -j"$(nproc)" build --targets="$targets" \
	>"$top/headers.log" 2>&1 || {
	tail -5 "$top/headers.log" >&2
	die "Samba header generation failed (log: $top/headers.log)"
}
echo "$want_version" >"$top/debian-version"
touch "$stamp"
log "prepared $tree"
echo "$tree"
