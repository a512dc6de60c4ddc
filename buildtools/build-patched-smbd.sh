#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build smbd from the prepared Samba tree with this project's patch series
# for that Samba (patches/<major.minor>/*.patch) applied, so the selftest
# can prove what a patch changes on a real smbd.  Nothing is installed.
#
# The patched copy of the tree is cached next to the prepared tree, keyed
# by the series' contents; a second run only rewrites the launcher.  About
# two minutes cold on two cores (Debian's configure builds without -O).
#
# Usage: build-patched-smbd.sh OUTDIR
# Writes OUTDIR/smbd, a launcher that runs the patched smbd with its own
# libraries, and prints its path as the last line of stdout.
set -euo pipefail

die() {
	echo "build-patched-smbd: $*" >&2
	exit 1
}
log() {
	echo "build-patched-smbd: $*" >&2
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
out=$1
here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(bash "$here/buildtools/prepare-samba.sh" | tail -1)
series_version=$(sed -n -e 's/^SAMBA_VERSION_MAJOR=//p' \
	-e 's/^SAMBA_VERSION_MINOR=//p' "$tree/VERSION" | paste -sd.)
series="$here/patches/$series_version"
shopt -s nullglob
patches=("$series"/*.patch)
[ ${#patches[@]} -gt 0 ] || die "no patches for Samba $series_version"

key=$(cat "${patches[@]}" | sha256sum | cut -c1-16)
top="$(dirname "$tree")/patched-$key"
copy="$top/src"
binary="$copy/bin/default/source3/smbd/smbd"

if [ ! -f "$top/built.stamp" ]; then
	rm -rf "$top"
	mkdir -p "$top"
	log "copying $tree"
	cp -a "$tree" "$copy"
	for p in "${patches[@]}"; do
		patch -d "$copy" -p1 --forward --batch -s <"$p" ||
			die "$(basename "$p") does not apply"
	done
	# waf refuses to build a tree anywhere but where it was configured:
	# build the copy mounted over the original, in a mount namespace of
	# its own, so the prepared tree itself is never written to.
	log "building smbd (log: $top/build.log)"
	unshare --mount --propagation private -- sh -c \
		'mount --bind "$1" "$2" && cd "$2" &&
		 PYTHONHASHSEED=1 ./buildtools/bin/waf build \
			--targets=smbd/smbd -j"$(nproc)"' \
		sh "$copy" "$tree" >"$top/build.log" 2>&1 || {
		tail -5 "$top/build.log" >&2
		die "smbd build failed (log: $top/build.log)"
	}
	[ -x "$binary" ] || die "no smbd in $copy after the build"
	touch "$top/built.stamp"
fi

# Built without an rpath: the launcher names its private libraries.  Its
# modules dir (smbd -b) is in the original tree's path; the selftest
# bind-mounts its own over it, which needs the directory to exist.
libdirs=$(find "$copy/bin/default" -name '*.so.[0-9]*' -printf '%h\n' |
	sort -u | paste -sd:)
mkdir -p "$out"
cat >"$out/smbd.new" <<EOT
#!/bin/sh
# smbd $(cat "$top/../debian-version" 2>/dev/null || true) with patches/$series_version (buildtools/build-patched-smbd.sh)
LD_LIBRARY_PATH="$libdirs" exec "$binary" "\$@"
EOT
chmod +x "$out/smbd.new"
mkdir -p "$("$out/smbd.new" -b | sed -n 's/^ *MODULESDIR: *//p')/vfs"
mv "$out/smbd.new" "$out/smbd"
log "patched smbd: $out/smbd"
echo "$out/smbd"
