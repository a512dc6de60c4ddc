#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run a command inside the runtime chroot of another Samba release
# (prepared by prepare-chroot.sh), in a private mount namespace: the
# host's users (passwd, group, shadow), its hosts file, /dev, /tmp and
# this checkout are bound in at the same paths, as are any --bind paths;
# --bind-to SRC DST binds a host path over a path inside the chroot (the
# harness puts its copy of the vfs dir over smbd's). The mounts vanish
# with the command.
#
# Usage: in-runtime.sh --samba SERIES [--bind PATH]... [--bind-to SRC DST]...
#                      [--] COMMAND [ARG]...
# The command runs with exec all the way: its pid is this script's pid,
# in the current directory when that is bound in.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
series=""
binds=()
while [ $# -gt 0 ]; do
	case "$1" in
	--samba) series="$2"; shift 2 ;;
	--bind) binds+=("$2" "$2"); shift 2 ;;
	--bind-to) binds+=("$2" "$3"); shift 3 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[ -n "$series" ] && [ $# -gt 0 ] || {
	echo "usage: in-runtime.sh --samba SERIES [--bind PATH]... -- COMMAND" >&2
	exit 2
}
root=$(bash "$here/prepare-chroot.sh" --samba "$series" --print-root)
[ -f "$root/.asvfs-prepared" ] || {
	echo "in-runtime: no runtime for Samba $series: run make SAMBA=$series" >&2
	exit 1
}

# shellcheck disable=SC2016
script='
set -e
root=$1; n=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
# hosts: smbd resolves the host name in every NTLMSSP session setup; a
# name the chroot cannot find goes to DNS, which cost some 5 s each
for f in passwd group shadow hosts; do
	[ -e "$root/etc/$f" ] || : >"$root/etc/$f"
	mount --bind "/etc/$f" "$root/etc/$f"
done
while [ "$n" -gt 0 ]; do
	if [ -d "$1" ]; then mkdir -p "$root$2"; else
		mkdir -p "$(dirname "$root$2")"; [ -e "$root$2" ] || : >"$root$2"
	fi
	mount --rbind "$1" "$root$2"
	shift 2; n=$((n - 1))
done
cwd=$PWD
exec chroot "$root" env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	sh -c '\''cd "$1" 2>/dev/null || cd /; shift; exec "$@"'\'' sh "$cwd" "$@"
'
all=(/tmp /tmp "$top" "$top" ${binds[@]+"${binds[@]}"})
exec unshare --mount --propagation private -- sh -c "$script" sh "$root" \
	$((${#all[@]} / 2)) "${all[@]}" "$@"
