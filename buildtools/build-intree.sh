#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Apply the in-tree series (patches/<major.minor>/in-tree/*.patch) to the
# prepared Samba tree and build the modules with Samba's own build, as a
# Samba developer carrying them upstream would.  Nothing is installed and
# the prepared tree is never written.
#
# The series applies, in order and without offset or fuzz, to copies of
# the files it touches.  Samba's configure decides which modules are built
# (the series adds them to source3/wscript's default shared modules), so a
# copy of the prepared tree is configured again with the prepared tree's
# own arguments (4.17's "waf reconfigure" fails in its wildcard helper);
# then only the engine library and the five module targets are built,
# with what they link (samba-util and its dependencies, Heimdal among
# them), not the whole of Samba.
#
# That configured and built copy is cached next to the prepared tree,
# keyed by the series' changes to Samba's configure scripts (wscript
# files), not by the module sources or build rules: when only those
# change, the patched files are copied in and waf rebuilds just what they
# touch.  A copy for another key is removed.
#
# Usage: build-intree.sh
# Prints the directory of the built modules as its last line of stdout.
set -euo pipefail

die() {
	echo "build-intree: $*" >&2
	exit 1
}
log() {
	echo "build-intree: $*" >&2
}

# WAFLOCK names this project's waf lock under make SAMBA=<series>;
# Samba's own waf must find its own.
unset WAFLOCK

here=$(cd "$(dirname "$0")/.." && pwd)
tree=$(bash "$here/buildtools/prepare-samba.sh" | tail -1)
series_version=$(sed -n -e 's/^SAMBA_VERSION_MAJOR=//p' \
	-e 's/^SAMBA_VERSION_MINOR=//p' "$tree/VERSION" | paste -sd.)
series="$here/patches/$series_version/in-tree"
shopt -s nullglob
patches=("$series"/*.patch)
[ ${#patches[@]} -gt 0 ] || die "no in-tree series for Samba $series_version"
modules="vfs_async_uring vfs_async_xattr vfs_async_dosattr vfs_async_open
	vfs_async_brl"
targets=$(echo async_vfs_engine $modules | tr ' ' ',')

start=$(date +%s)
staged=$(mktemp -d /tmp/asvfs-intree.XXXXXX)
trap 'rm -rf "$staged"' EXIT
for path in $(sed -n 's|^+++ b/||p' "${patches[@]}" | sort -u); do
	if [ -f "$tree/$path" ]; then
		mkdir -p "$staged/$(dirname "$path")"
		cp -p "$tree/$path" "$staged/$path"
	fi
done
for p in "${patches[@]}"; do
	out=$(patch -d "$staged" -p1 --forward --batch <"$p") ||
		die "$(basename "$p") does not apply: $out"
	case "$out" in
	*offset*|*fuzz*) die "$(basename "$p") applies only loosely: $out" ;;
	esac
done
log "the ${#patches[@]} patches apply to $tree"

# The key: what the series changes in files named wscript (configure).
key=$(python3 - "${patches[@]}" <<'PY'
import hashlib, re, sys
h = hashlib.sha256()
for path in sys.argv[1:]:
    for diff in re.split(r'(?m)^(?=diff --git )', open(path).read()):
        m = re.match(r'diff --git a/(\S+) ', diff)
        if m and m.group(1).split('/')[-1] == 'wscript':
            h.update(re.sub(r'(?m)^index .*\n', '', diff).encode())
print(h.hexdigest()[:16])
PY
)
cache=$(dirname "$tree")
top="$cache/intree-$key"
copy="$top/src"
outdir="$copy/bin/default/source3/modules"

stamp="$copy/.asvfs-configured"
if [ ! -f "$stamp" ]; then
	for old in "$cache"/intree-*; do
		[ "$old" = "$top" ] || rm -rf "$old"
	done
	rm -rf "$top"
	mkdir -p "$top"
	log "copying $tree"
	cp -a "$tree" "$copy"
fi
cp -a "$staged/." "$copy/"

# The arguments the prepared tree was configured with, after "configure".
mapfile -t config_args < <(python3 -c '
import ast, sys
for line in open(sys.argv[1]):
    if line.startswith("argv = "):
        argv = ast.literal_eval(line[len("argv = "):])
        print("\n".join(argv[argv.index("configure") + 1:]))
' "$tree/.lock-wscript")
[ ${#config_args[@]} -gt 0 ] ||
	die "no configure arguments in $tree/.lock-wscript"
configure=1
[ -f "$stamp" ] && configure=0

# waf refuses to build a tree anywhere but where it was configured: build
# the copy mounted over the original, in a mount namespace of its own, so
# the prepared tree itself is never written to.
if [ $configure = 1 ]; then
	log "configuring the copy, then building --targets=$targets;" \
		"the first time takes long (log: $top/build.log)"
else
	log "building --targets=$targets in the configured copy (log: $top/build.log)"
fi
# Inside a release's chroot (make SAMBA=<series>) the root is no mount
# point, so its propagation cannot be changed; there in-runtime.sh's own
# private namespace already keeps the bind mount from the host.
propagation=private
unshare --mount --propagation private true 2>/dev/null ||
	propagation=unchanged
unshare --mount --propagation "$propagation" -- sh -c \
	'mount --bind "$1" "$2" && cd "$2" && targets=$3 configure=$4 &&
	 shift 4 && export PYTHONHASHSEED=1 PYTHON=python3 &&
	 if [ "$configure" = 1 ]; then
		./buildtools/bin/waf -j"$(nproc)" configure "$@" || exit 1
		touch .asvfs-configured
	 fi &&
	 ./buildtools/bin/waf build --targets="$targets" -j"$(nproc)"' \
	sh "$copy" "$tree" "$targets" "$configure" "${config_args[@]}" \
	>"$top/build.log" 2>&1 || {
	tail -5 "$top/build.log" >&2
	die "the in-tree build failed (log: $top/build.log)"
}
for m in $modules; do
	[ -f "$outdir/libvfs_module_${m#vfs_}.so" ] ||
		die "no libvfs_module_${m#vfs_}.so in $outdir after the build"
done
log "built in $(( $(date +%s) - start )) s"
echo "$outdir"
