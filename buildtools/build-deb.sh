#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build the Debian binary package of the modules, as a distribution would:
# dpkg-buildpackage -us -uc -b on a clean copy of the source with
# packaging/debian as its debian/, against the prepared Samba tree of the
# installed samba, then lintian on the result.
#
# Usage: build-deb.sh [--samba MAJOR.MINOR] [--no-lintian] [OUTDIR]
#   OUTDIR defaults to bin/deb.  --samba names the Samba flavour; only the
#   installed one (4.17 on Debian 12) can be built here today: the 4.22
#   flavour needs that version's build root (the Samba 4.22 port, issue 21).
# Prints the path of the .deb as its last line of stdout.
set -euo pipefail

die() {
	echo "build-deb: $*" >&2
	exit 1
}
log() {
	echo "build-deb: $*" >&2
}

here=$(cd "$(dirname "$0")/.." && pwd)
flavour=""
lintian=1
out="$here/bin/deb"
while [ $# -gt 0 ]; do
	case "$1" in
	--samba) flavour="$2"; shift 2 ;;
	--no-lintian) lintian=0; shift ;;
	-*) die "unknown argument '$1'" ;;
	*) out=$1; shift ;;
	esac
done

installed=$(dpkg-query -W -f='${Version}' samba 2>/dev/null) ||
	die "the package 'samba' is not installed (run buildtools/bootstrap.sh)"
installed_mm=$(echo "$installed" | sed -E 's/^([0-9]+:)?([0-9]+\.[0-9]+).*/\2/')
if [ -n "$flavour" ] && [ "$flavour" != "$installed_mm" ]; then
	die "Samba $flavour packages are built inside that version's build root, which this tree does not have yet (the Samba 4.22 port, issue 21); here only $installed_mm (the installed samba $installed) can be built"
fi
for tool in dpkg-buildpackage dh lintian; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "'$tool' is missing (run buildtools/bootstrap.sh)"
done

tree=$(bash "$here/buildtools/prepare-samba.sh" | tail -1)
version=$(dpkg-parsechangelog -l "$here/packaging/debian/changelog" -S Version)
src="$out/samba-async-vfs-${version%-*}"
rm -rf "$out"
mkdir -p "$src"
# The source as a fresh clone has it (no build output, no VCS data), with
# the packaging where dpkg-buildpackage expects it.
tar -C "$here" -c --exclude-vcs --exclude=./bin --exclude='./.lock-waf*' \
	--exclude=./debian --exclude='*.pyc' --exclude=__pycache__ . |
	tar -C "$src" -x
cp -a "$here/packaging/debian" "$src/debian"

log "dpkg-buildpackage -us -uc -b in $src (log: $out/build.log)"
(cd "$src" && SAMBA_SOURCE="$tree" dpkg-buildpackage -us -uc -b) \
	>"$out/build.log" 2>&1 || {
	tail -15 "$out/build.log" >&2
	die "dpkg-buildpackage failed (log: $out/build.log)"
}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb="$out/samba-async-vfs_${version}_$arch.deb"
[ -f "$deb" ] || die "no $deb after the build"
if [ "$lintian" = 1 ]; then
	changes="$out/samba-async-vfs_${version}_$arch.changes"
	# Errors and warnings fail the build; info and pedantic tags are
	# printed for the reader.  Overrides carry their reason in
	# packaging/debian/*.lintian-overrides.
	lintian --info --display-info --fail-on error,warning "$changes" \
		>"$out/lintian.log" 2>&1 || {
		cat "$out/lintian.log" >&2
		die "lintian found errors or warnings (log: $out/lintian.log)"
	}
	if [ -s "$out/lintian.log" ]; then
		cat "$out/lintian.log" >&2
	fi
	log "lintian: no errors, no warnings"
fi
log "built $deb"
echo "$deb"
