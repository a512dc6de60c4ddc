#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# test_slowfs.sh SLOWFS_BINARY
#
# Mounts slowfs over a temporary backing directory and checks pass-through,
# xattrs, fault/latency injection, config reload, multi-user credentials,
# locks and statistics. Needs root, /dev/fuse, fusermount3, setpriv and
# /usr/bin/python3. Creates the users slowfs_t1, slowfs_t2 and the group
# slowfs_tg if missing (they are left in place).
#
# Prints "ok: NAME", "FAIL: NAME: why" or "skip: NAME: why" per test and
# "N passed, N failed" at the end; exits non-zero if anything failed.

set -u

PASS=0
FAILED=0
SKIPPED=0

ok() { echo "ok: $1"; PASS=$((PASS + 1)); }
fail() { echo "FAIL: $1: $2"; FAILED=$((FAILED + 1)); }
skip() { echo "skip: $1: $2"; SKIPPED=$((SKIPPED + 1)); }

summary() {
	echo "$PASS passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 SLOWFS_BINARY" >&2
	exit 2
fi
SLOWFS=$(readlink -f "$1")
PY=/usr/bin/python3

for need in fusermount3 setpriv mountpoint useradd; do
	if ! command -v "$need" >/dev/null; then
		skip all "$need not installed"
		summary
		exit 1
	fi
done
if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ] || [ ! -x "$PY" ]; then
	skip all "needs root, /dev/fuse and $PY"
	summary
	exit 1
fi

# slowfs exits only when its mount is gone from every mount namespace. A
# namespace made while it is mounted (any "unshare --mount", such as a
# selftest smbd of another run on this machine) keeps a copy of the mount,
# and slowfs runs on after our unmount until that namespace ends. The
# mounts of this script therefore live in a private namespace of its own,
# which no later namespace copies.
# fd 9 keeps the namespace we came from, for the test that unmounting
# works while a namespace made from it exists.
if [ -z "${SLOWFS_TEST_PRIVATE_NS:-}" ] &&
   unshare --mount --propagation private true 2>/dev/null; then
	exec 9</proc/self/ns/mnt
	SLOWFS_TEST_PRIVATE_NS=1 exec unshare --mount --propagation private \
		-- bash "$0" "$@"
fi

# Users must be able to reach the mount point: start from / not $HOME.
cd / || exit 1

WORK=$(mktemp -d /tmp/slowfs-test.XXXXXX) || exit 1
chmod 755 "$WORK"
BACK=$WORK/back
MNT=$WORK/mnt
MNT2=$WORK/mnt2
CONF=$WORK/slowfs.conf
STATS=$WORK/stats
LOG=$WORK/slowfs.log
LOG2=$WORK/slowfs2.log
HELPER=$WORK/helper.py
mkdir -m 755 "$BACK" "$MNT" "$MNT2"
: >"$CONF"
PID1=
PID2=
OTHER_NS=

cleanup() {
	local m p
	for m in "$MNT2" "$MNT"; do
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null ||
				fusermount3 -uz "$m" 2>/dev/null
		fi
	done
	# only our own processes, by pid
	for p in $OTHER_NS $PID2 $PID1; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if ! mountpoint -q "$MNT" 2>/dev/null &&
	   ! mountpoint -q "$MNT2" 2>/dev/null; then
		rm -rf "$WORK"
	else
		echo "warning: $WORK still mounted, not removed" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Python helpers: one subcommand per check, exit 0 = pass, message on
# stderr otherwise.
cat >"$HELPER" <<'EOF'
import ctypes, errno, fcntl, os, struct, sys, time

def die(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)

def expect_errno(fn, want):
    try:
        fn()
    except OSError as e:
        if e.errno != want:
            die("got %s, want %s" % (errno.errorcode.get(e.errno),
                                     errno.errorcode[want]))
        return
    die("no error, want %s" % errno.errorcode[want])

def cmd_time_getxattr(path, name):
    t0 = time.monotonic()
    try:
        os.getxattr(path, name)
    except OSError:
        pass
    print("%.3f" % (time.monotonic() - t0))

def cmd_getxattr_errno(path, name):
    expect_errno(lambda: os.getxattr(path, "user.x"), getattr(errno, name))

def cmd_read_errno(path, name):
    fd = os.open(path, os.O_RDONLY)
    expect_errno(lambda: os.read(fd, 4096), getattr(errno, name))
    os.close(fd)

def cmd_read_ok(path):
    with open(path, "rb") as f:
        if len(f.read()) == 0:
            die("read nothing")

def cmd_write_errno(path, name):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    expect_errno(lambda: os.write(fd, b"x" * 100), getattr(errno, name))
    os.close(fd)

def cmd_error_every(path, n, every):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    failed = []
    for i in range(int(n)):
        try:
            os.write(fd, b"y" * 10)
        except OSError as e:
            if e.errno != errno.EIO:
                die("call %d: unexpected %s" % (i + 1, e))
            failed.append(i + 1)
    os.close(fd)
    want = [i for i in range(1, int(n) + 1) if i % int(every) == 0]
    if failed != want:
        die("failed calls %s, want %s" % (failed, want))

def cmd_short_read(path, limit, ref):
    want = open(ref, "rb").read()
    fd = os.open(path, os.O_RDONLY)
    first = os.read(fd, 4096)
    if len(first) != int(limit):
        die("first read gave %d bytes, want %s" % (len(first), limit))
    data = first
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    if data != want:
        die("looped read gave %d bytes, content differs" % len(data))

def cmd_short_write(path, limit, backing):
    payload = bytes(range(256)) * 40
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = os.write(fd, payload)
    if n != int(limit):
        die("first write wrote %d bytes, want %s" % (n, limit))
    done = n
    while done < len(payload):
        done += os.write(fd, payload[done:])
    os.close(fd)
    if open(backing, "rb").read() != payload:
        die("backing file content differs")

def cmd_bigdir(mnt_dir, back_dir, count):
    os.mkdir(mnt_dir)
    for i in range(int(count)):
        os.close(os.open("%s/entry_%05d" % (mnt_dir, i),
                         os.O_CREAT | os.O_WRONLY, 0o644))
    seen = sorted(os.listdir(mnt_dir))
    if len(seen) != int(count):
        die("listdir gave %d entries, want %s" % (len(seen), count))
    if seen != sorted(os.listdir(back_dir)):
        die("mount and backing listings differ")

def cmd_fileops(mnt, back):
    mib = 1 << 20
    fd = os.open(mnt + "/ops", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.posix_fallocate(fd, 0, mib)
    if os.stat(back + "/ops").st_size != mib:
        die("fallocate did not reach the backing file")
    os.ftruncate(fd, 0)
    os.ftruncate(fd, 4 * mib)
    os.pwrite(fd, b"x" * 4096, 2 * mib)
    os.fsync(fd)
    if os.lseek(fd, 0, os.SEEK_DATA) != 2 * mib:
        die("SEEK_DATA did not find the data at 2MiB")
    out = os.open(mnt + "/ops_copy", os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                  0o644)
    n = os.copy_file_range(fd, out, 4096, 2 * mib, 0)
    os.close(out)
    os.close(fd)
    if n != 4096 or open(back + "/ops_copy", "rb").read() != b"x" * 4096:
        die("copy_file_range copied wrong data")

class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]

def cmd_seekdir(path):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    d = libc.opendir(path.encode())
    if not d:
        die("opendir failed")
    def read_rest(limit=None):
        out = []
        while limit is None or len(out) < limit:
            e = libc.readdir(d)
            if not e:
                break
            out.append(e.contents.d_name)
        return out
    names, pos = [], []
    while True:
        pos.append(libc.telldir(d))
        e = libc.readdir(d)
        if not e:
            break
        names.append(e.contents.d_name)
    if len(names) < 100:
        die("too few entries: %d" % len(names))
    for k in (len(names) // 2, 7, len(names) - 3, 0, len(names) // 3):
        libc.seekdir(d, pos[k])
        if read_rest(5) != names[k:k + 5]:
            die("after seekdir to entry %d got other entries" % k)
    libc.seekdir(d, pos[42])
    if read_rest() != names[42:]:
        die("reading on after seekdir lost or duplicated entries")
    libc.closedir(d)

def cmd_renameat2(mnt):
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, NOREPLACE, EXCHANGE = -100, 1, 2
    a, b = mnt + "/ren_a", mnt + "/ren_b"
    open(a, "w").write("A")
    open(b, "w").write("B")
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), NOREPLACE)
    if r == 0 or ctypes.get_errno() != errno.EEXIST:
        die("RENAME_NOREPLACE did not fail with EEXIST")
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), EXCHANGE)
    if r != 0:
        die("RENAME_EXCHANGE failed: %s" % os.strerror(ctypes.get_errno()))
    if open(a).read() != "B" or open(b).read() != "A":
        die("RENAME_EXCHANGE did not swap")

DOSATTRIB = (b"0x20\x00\x00\x00\x04\x00\x04\x00\x00\x00\x20\x00\x00\x00"
             b"\x00\xd3\x9a\x5f\x37\xe0\xda\x01\xff\x00")

def cmd_xattr_user(path, backing):
    os.setxattr(path, "user.DOSATTRIB", DOSATTRIB)
    if os.getxattr(path, "user.DOSATTRIB") != DOSATTRIB:
        die("value read through slowfs differs")
    if os.getxattr(backing, "user.DOSATTRIB") != DOSATTRIB:
        die("value in backing file differs")
    if "user.DOSATTRIB" not in os.listxattr(path):
        die("listxattr misses user.DOSATTRIB")
    os.removexattr(path, "user.DOSATTRIB")
    expect_errno(lambda: os.getxattr(path, "user.DOSATTRIB"), errno.ENODATA)

def cmd_xattr_ntacl(path):
    blob = bytes(range(256)) * 4
    os.setxattr(path, "security.NTACL", blob)
    if os.getxattr(path, "security.NTACL") != blob:
        die("security.NTACL value differs")

def cmd_setxattr_denied(path):
    try:
        os.setxattr(path, "user.test", b"x")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return
        die("unexpected %s" % e)
    die("setxattr on another user's file succeeded")

def cmd_setxattr_ok(path):
    os.setxattr(path, "user.test", b"mine")
    if os.getxattr(path, "user.test") != b"mine":
        die("value differs")

def cmd_getxattr_denied(path):
    expect_errno(lambda: os.getxattr(path, "user.test"), errno.EACCES)

def cmd_names(path, want_trusted):
    names = os.listxattr(path)
    if "user.test" not in names:
        die("user.test not listed: %s" % names)
    if ("trusted.test" in names) != (want_trusted == "yes"):
        die("trusted.test listed=%s, want %s" % (names, want_trusted))

# --- locks: a child process plays the second client ---------------------

F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)

def ofd(fd, typ, cmd=F_OFD_SETLK):
    return fcntl.fcntl(fd, cmd, struct.pack("hhqqi4x", typ, 0, 0, 0, 0))

def in_child(path, how):
    """Run how(fd) in a child on a new open: 0 got lock, 2 refused."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            fd = os.open(path, os.O_RDWR)
            how(fd)
            code = 0
        except OSError as e:
            code = 2 if e.errno in (errno.EAGAIN, errno.EACCES) else 4
        except BaseException:
            code = 5
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def want(code, expected, what):
    if code != expected:
        die("%s: child exit %d, want %d (0 locked, 2 refused)"
            % (what, code, expected))

def posix_nb(fd):
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

def posix_getlk(fd):
    res = fcntl.fcntl(fd, fcntl.F_GETLK,
                      struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
    if struct.unpack("hhqqi4x", res)[0] == fcntl.F_UNLCK:
        raise OSError(errno.ENOLCK, "F_GETLK sees no lock")
    raise OSError(errno.EAGAIN, "conflict seen")

def cmd_lock_posix(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    want(in_child(path, posix_nb), 2, "F_SETLK against held lock")
    # the child's exit closed its copy of fd: must not drop our lock
    want(in_child(path, posix_nb), 2, "F_SETLK after child close")
    want(in_child(path, posix_getlk), 2, "F_GETLK")
    fcntl.lockf(fd, fcntl.LOCK_UN)
    want(in_child(path, posix_nb), 0, "F_SETLK after unlock")
    os.close(fd)

def cmd_lock_posix_close(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    want(in_child(path, posix_nb), 2, "F_SETLK against held lock")
    os.close(os.open(path, os.O_RDONLY))
    want(in_child(path, posix_nb), 0, "F_SETLK after closing other fd")
    os.close(fd)

def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]

def cmd_lock_wait(path):
    """No timing: the holder tells the waiter before it lets go, and lets
    go only once the waiter sleeps in F_SETLKW (S, or D for FUSE's
    killable wait)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    ready_r, ready_w = os.pipe()
    going_r, going_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        f2 = os.open(path, os.O_RDWR)
        os.write(ready_w, b"r")
        fcntl.lockf(f2, fcntl.LOCK_EX)
        os.set_blocking(going_r, False)
        try:
            os._exit(0 if os.read(going_r, 1) == b"u" else 1)
        except BlockingIOError:
            os._exit(1)
    os.read(ready_r, 1)
    end = time.monotonic() + 60
    while proc_state(pid) not in ("S", "D"):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            die("blocking F_SETLKW returned while the lock was held")
        if time.monotonic() > end:
            die("the waiter never went to sleep in F_SETLKW")
        time.sleep(0.01)
    os.write(going_w, b"u")
    fcntl.lockf(fd, fcntl.LOCK_UN)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code != 0:
        die("blocking F_SETLKW returned before the lock was free")

def ofd_nb(fd):
    ofd(fd, fcntl.F_WRLCK)

def cmd_lock_ofd(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    ofd(fd, fcntl.F_WRLCK)
    want(in_child(path, ofd_nb), 2, "F_OFD_SETLK against held lock")
    # OFD locks belong to the open file: another open of ours conflicts,
    # and closing it does not drop the lock
    fd2 = os.open(path, os.O_RDWR)
    expect_errno(lambda: ofd(fd2, fcntl.F_WRLCK), errno.EAGAIN)
    os.close(fd2)
    want(in_child(path, ofd_nb), 2, "F_OFD_SETLK after other close")
    os.close(fd)
    want(in_child(path, ofd_nb), 0, "F_OFD_SETLK after holder closed")

def flock_nb(fd):
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

def cmd_flock(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    want(in_child(path, flock_nb), 2, "flock against held lock")
    fcntl.flock(fd, fcntl.LOCK_UN)
    want(in_child(path, flock_nb), 0, "flock after unlock")
    os.close(fd)

def cmd_stress(mnt, seconds):
    end = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < end:
        p = "%s/stress_%d_%d" % (mnt, os.getpid(), n % 10)
        with open(p, "wb") as f:
            f.write(b"z" * 8192)
        with open(p, "rb") as f:
            f.read()
        os.listdir(mnt)
        n += 1

def create_in(path, times, i, start):
    start.wait()
    t0 = time.monotonic()
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    times[i] = time.monotonic() - t0

def cmd_overlap(mnt, n):
    """n creates one after the other, then n at once, each in a directory
    of its own (the kernel runs creates in one directory one at a time):
    the n at once must take well under the n in a row, whatever the
    machine's load does to both."""
    import threading
    n = int(n)
    for i in range(n):
        os.mkdir("%s/ovl_%d" % (mnt, i))
    t0 = time.monotonic()
    for i in range(n):
        os.close(os.open("%s/ovl_%d/serial" % (mnt, i),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    serial = time.monotonic() - t0
    times = [None] * n
    start = threading.Barrier(n + 1)
    threads = [threading.Thread(target=create_in,
                                args=("%s/ovl_%d/parallel" % (mnt, i),
                                      times, i, start))
               for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    parallel = time.monotonic() - t0
    if None in times:
        die("a create failed")
    print("%d creates: %.3f s in a row, %.3f s at once" % (n, serial,
                                                          parallel))
    if parallel >= serial / 2:
        die("%d creates at once took %.3f s, in a row %.3f s: slowfs "
            "serialises them" % (n, parallel, serial))

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
EOF

# Run a helper subcommand with a time limit (a hung lock must not hang
# us), well above WAIT_SECS, the helpers' own bound on a wait.
py() {
	timeout 300 "$PY" "$HELPER" "$@"
}

# Record a test result from a command: ok, or FAIL with its last line.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		fail "$name" "$(printf '%s' "$out" | tail -n 1)"
	fi
}

# Generous bounds on every wait for a condition: on a busy machine a
# verdict must not depend on how long slowfs takes to get a time slice.
WAIT_SECS=60

# Run "$@" until it succeeds, at most WAIT_SECS seconds.
wait_until() {
	local end=$((SECONDS + WAIT_SECS))
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.05
	done
}

wait_mounted() {
	wait_until mountpoint -q "$1"
}

loads() {
	grep -c "config .* loaded" "$LOG" 2>/dev/null
}

loaded_since() {
	[ "$(loads)" -gt "$1" ]
}

# Replace the config atomically and wait until slowfs has loaded it.
set_conf() {
	local before
	before=$(loads)
	printf '%s\n' "$@" >"$CONF.tmp"
	mv -f "$CONF.tmp" "$CONF"
	wait_until loaded_since "$before" && return 0
	echo "config was not reloaded within ${WAIT_SECS}s" >&2
	return 1
}

# Elapsed seconds >= $1 (and, if given, < $2)?
in_range() {
	"$PY" -c 'import sys; t=float(sys.argv[1]); lo=float(sys.argv[2]); \
hi=float(sys.argv[3]) if len(sys.argv)>3 else 1e9; \
sys.exit(0 if lo<=t<hi else 1)' "$@"
}

as_user() {
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"
}

# --- mount ----------------------------------------------------------------

"$SLOWFS" "$BACK" "$MNT" -f -o allow_other,default_permissions \
	--config="$CONF" --stats="$STATS" >"$LOG" 2>&1 &
PID1=$!
if wait_mounted "$MNT"; then
	ok "mount"
else
	fail "mount" "not mounted after ${WAIT_SECS}s: $(tail -n 1 "$LOG")"
	summary
	exit 1
fi

# --- pass-through ---------------------------------------------------------

t_readwrite() {
	head -c 1048576 /dev/urandom >"$WORK/data" &&
	cp "$WORK/data" "$MNT/f1" &&
	cmp "$WORK/data" "$MNT/f1" &&
	cmp "$WORK/data" "$BACK/f1"
}
check "pass-through write/read 1MiB" t_readwrite

t_namespace() {
	mkdir "$MNT/d" && echo x >"$MNT/d/a" && mv "$MNT/d/a" "$MNT/d/b" &&
	[ -f "$BACK/d/b" ] && [ ! -e "$BACK/d/a" ] &&
	rm "$MNT/d/b" && [ ! -e "$BACK/d/b" ] &&
	rmdir "$MNT/d" && [ ! -e "$BACK/d" ]
}
check "mkdir/rename/unlink/rmdir" t_namespace
check "rename flags (NOREPLACE, EXCHANGE)" py renameat2 "$MNT"

t_misc() {
	ln -s f1 "$MNT/sym" && [ "$(readlink "$MNT/sym")" = f1 ] &&
	ln "$MNT/f1" "$MNT/hard" && [ "$(stat -c %h "$BACK/f1")" = 2 ] &&
	chmod 640 "$MNT/hard" && [ "$(stat -c %a "$BACK/f1")" = 640 ] &&
	truncate -s 1000 "$MNT/hard" && [ "$(stat -c %s "$BACK/f1")" = 1000 ] &&
	touch -d @1000000000 "$MNT/hard" &&
	[ "$(stat -c %Y "$BACK/f1")" = 1000000000 ] &&
	[ "$(stat -c %i "$MNT/f1")" = "$(stat -c %i "$BACK/f1")" ] &&
	df "$MNT" >/dev/null && rm "$MNT/hard" "$MNT/sym"
}
check "symlink/link/chmod/truncate/utimens/statfs/inode numbers" t_misc

check "fallocate/fsync/lseek SEEK_DATA/copy_file_range" \
	py fileops "$MNT" "$BACK"

check "readdir with 3000 entries" py bigdir "$MNT/big" "$BACK/big" 3000
check "telldir/seekdir" py seekdir "$MNT/big"

# --- xattrs ---------------------------------------------------------------

echo data >"$MNT/xf"
check "xattr user.DOSATTRIB binary set/get/list/remove" \
	py xattr_user "$MNT/xf" "$BACK/xf"
check "xattr security.NTACL as root" py xattr_ntacl "$MNT/xf"

# --- latency --------------------------------------------------------------

t_delay() {
	local t
	set_conf "getxattr.delay_ms = 400" || return 1
	t=$(py time_getxattr "$MNT/xf" user.nothing) || return 1
	in_range "$t" 0.4 ||
		{ echo "getxattr took ${t}s, want >= 0.4s"; return 1; }
}
check "getxattr.delay_ms delays getxattr" t_delay

# With an error, not a delay: "the other path was not delayed" would be
# an upper bound on time, which a busy machine can break.
t_filter() {
	echo s >"$MNT/slow_file" && echo f >"$MNT/fast_file" &&
	set_conf "getxattr.error = EIO" "path_filter = slow_" || return 1
	py getxattr_errno "$MNT/slow_file" EIO ||
		{ echo "filtered path: no EIO"; return 1; }
	py getxattr_errno "$MNT/fast_file" ENODATA ||
		{ echo "other path: not passed through"; return 1; }
}
check "path_filter limits injection to matching paths" t_filter

# --- faults ---------------------------------------------------------------

t_read_eio() {
	set_conf "read.error = EIO" && py read_errno "$MNT/f1" EIO
}
check "read.error=EIO fails reads with EIO" t_read_eio

t_reload() {
	set_conf "# nothing injected any more" && py read_ok "$MNT/f1"
}
check "config re-read at runtime (error cleared)" t_reload

t_ack() {
	set_conf "read.delay_ms = 0  # acknowledged" || return 1
	cmp -s "$CONF" "$CONF.loaded" ||
		{ echo "$CONF.loaded differs from what was loaded"; return 1; }
	rm -f "$CONF"
	wait_until test ! -e "$CONF.loaded" ||
		{ echo "$CONF.loaded left after the config was removed"
		  return 1; }
	set_conf ""
}
check "each loaded config acknowledged in FILE.loaded" t_ack

t_enospc() {
	set_conf "write.error = ENOSPC" && py write_errno "$MNT/wfile" ENOSPC
}
check "write.error=ENOSPC fails writes with ENOSPC" t_enospc

t_every() {
	set_conf "write.error = EIO" "write.error_every = 3" &&
	py error_every "$MNT/wfile" 7 3
}
check "error_every=3 fails every 3rd call" t_every

t_short_read() {
	head -c 65536 /dev/urandom >"$BACK/shortr" &&
	set_conf "read.short = 100" &&
	py short_read "$MNT/shortr" 100 "$BACK/shortr"
}
check "read.short gives short reads, loop reads all" t_short_read

t_short_write() {
	set_conf "write.short = 100" &&
	py short_write "$MNT/shortw" 100 "$BACK/shortw"
}
check "write.short gives short writes, loop writes all" t_short_write

t_invalid() {
	set_conf "this is garbage" "read.delay_ms = lots" "frob.error = EIO" \
		"read.error = EWHATEVER" "getxattr.short = 3" \
		"getxattr.delay_ms = 300   # valid line after bad ones" ||
		return 1
	grep -q "line ignored" "$LOG" ||
		{ echo "no message about bad lines"; return 1; }
	[ "$(grep -c "line ignored" "$LOG")" -ge 5 ] ||
		{ echo "not every bad line reported"; return 1; }
	kill -0 "$PID1" && mountpoint -q "$MNT" ||
		{ echo "slowfs died"; return 1; }
	t=$(py time_getxattr "$MNT/xf" user.nothing) && in_range "$t" 0.3 ||
		{ echo "valid line not applied"; return 1; }
}
check "invalid config lines are reported and ignored" t_invalid

t_stress() {
	local i p pids=
	set_conf "all.delay_ms = 0" || return 1
	for i in 1 2 3 4; do
		py stress "$MNT" 2 &
		pids="$pids $!"
	done
	for i in $(seq 10); do
		set_conf "read.delay_ms = $((i % 3))" "path_filter = stress" ||
			return 1
	done
	for p in $pids; do
		wait "$p" || { echo "stress worker failed"; return 1; }
	done
	kill -0 "$PID1" && mountpoint -q "$MNT"
}
check "concurrent I/O during config reloads" t_stress
set_conf "" >/dev/null

# Issue 24: injected latency overlaps across concurrent requests.  Compared
# with the same creates made one after the other in this test, not with a
# wall-clock bound: 16 at +50 ms each take 0.8 s in a row, about 0.05 s
# at once; at once must take less than half of in a row.
t_overlap() {
	set_conf "create.delay_ms = 50" "path_filter = /ovl_" || return 1
	py overlap "$MNT" 16
}
check "16 creates at once overlap their delays" t_overlap
set_conf "" >/dev/null

# --- multi-user -------------------------------------------------------------

setup_users() {
	local u
	for u in slowfs_t1 slowfs_t2; do
		id -u "$u" >/dev/null 2>&1 ||
			useradd --no-create-home --user-group \
				--shell /usr/sbin/nologin "$u" || return 1
	done
	getent group slowfs_tg >/dev/null || groupadd slowfs_tg || return 1
	id -nG slowfs_t2 | grep -qw slowfs_tg ||
		usermod -a -G slowfs_tg slowfs_t2
}

if ! setup_users >/dev/null 2>&1; then
	skip "multi-user" "cannot create users slowfs_t1/slowfs_t2"
else
	mkdir -m 1777 "$BACK/shared"
	mkdir -m 755 "$BACK/rootonly"

	# A second mount without default_permissions: the kernel checks
	# nothing, so any refusal here comes from slowfs's credentials.
	"$SLOWFS" "$BACK" "$MNT2" -f -o allow_other >"$LOG2" 2>&1 &
	PID2=$!
	wait_mounted "$MNT2" || fail "second mount" "$(tail -n 1 "$LOG2")"

	t_owner() {
		as_user slowfs_t2 sh -c "echo hi > '$MNT/shared/t2file'" &&
		[ "$(stat -c %U:%G "$BACK/shared/t2file")" = \
		  slowfs_t2:slowfs_t2 ] ||
		{ echo "owner $(stat -c %U:%G "$BACK/shared/t2file")"
		  return 1; }
	}
	check "file created by user owned by that user" t_owner

	t_umask() {
		as_user slowfs_t2 sh -c "umask 027; : > '$MNT/shared/um_f';
			mkdir '$MNT/shared/um_d'" &&
		[ "$(stat -c %a "$BACK/shared/um_f")" = 640 ] &&
		[ "$(stat -c %a "$BACK/shared/um_d")" = 750 ] ||
		{ echo "modes $(stat -c %a "$BACK/shared/um_f") \
$(stat -c %a "$BACK/shared/um_d"), want 640 750"; return 1; }
	}
	check "caller's umask honoured on create/mkdir" t_umask

	as_user slowfs_t1 sh -c "umask 077; echo secret > '$MNT/shared/t1file'"
	t_private() {
		[ "$(stat -c %U:%a "$BACK/shared/t1file")" = slowfs_t1:600 ] ||
			{ echo "backing file not slowfs_t1 0600"; return 1; }
		as_user slowfs_t1 cat "$MNT/shared/t1file" >/dev/null ||
			{ echo "owner cannot read"; return 1; }
		! as_user slowfs_t2 cat "$MNT/shared/t1file" 2>/dev/null ||
			{ echo "slowfs_t2 read it"; return 1; }
	}
	check "0600 file of t1 not readable by t2" t_private

	t_private2() {
		as_user slowfs_t1 cat "$MNT2/shared/t1file" >/dev/null ||
			{ echo "owner cannot read"; return 1; }
		! as_user slowfs_t2 cat "$MNT2/shared/t1file" 2>/dev/null ||
			{ echo "slowfs_t2 read it"; return 1; }
		! as_user slowfs_t2 sh -c ": > '$MNT2/rootonly/x'" \
			2>/dev/null ||
			{ echo "slowfs_t2 created a file in root's dir"
			  return 1; }
		[ ! -e "$BACK/rootonly/x" ]
	}
	check "slowfs itself enforces caller credentials" t_private2

	t_groups() {
		echo grp >"$BACK/shared/grpfile" &&
		chown root:slowfs_tg "$BACK/shared/grpfile" &&
		chmod 640 "$BACK/shared/grpfile" || return 1
		as_user slowfs_t2 cat "$MNT2/shared/grpfile" >/dev/null ||
			{ echo "group member cannot read"; return 1; }
		! as_user slowfs_t1 cat "$MNT2/shared/grpfile" 2>/dev/null ||
			{ echo "non-member read it"; return 1; }
	}
	check "supplementary groups of the caller apply" t_groups

	t_user_xattr() {
		as_user slowfs_t1 sh -c ": > '$MNT2/shared/t1x'" &&
		as_user slowfs_t1 "$PY" "$HELPER" setxattr_ok \
			"$MNT2/shared/t1x" &&
		as_user slowfs_t2 "$PY" "$HELPER" setxattr_denied \
			"$MNT2/shared/t1x"
	}
	check "xattrs with caller credentials" t_user_xattr

	# On the default_permissions mount slowfs reads xattrs as itself:
	# the kernel's check, and the names the caller may see, must hold.
	t_xattr_reads() {
		as_user slowfs_t1 sh -c "umask 077; : > '$MNT/shared/t1r'" &&
		as_user slowfs_t1 "$PY" "$HELPER" setxattr_ok \
			"$MNT/shared/t1r" &&
		setfattr -n trusted.test -v x "$BACK/shared/t1r" &&
		as_user slowfs_t2 "$PY" "$HELPER" getxattr_denied \
			"$MNT/shared/t1r" &&
		as_user slowfs_t1 "$PY" "$HELPER" names \
			"$MNT/shared/t1r" no &&
		"$PY" "$HELPER" names "$MNT/shared/t1r" yes
	}
	check "xattr reads: kernel's check, no trusted.* for users" \
		t_xattr_reads

	# With default_permissions the kernel decides access with the
	# caller's real credentials; slowfs makes the caller the owner of
	# what it creates and lets the backing file system's checks pass
	# (the groups in /proc are not an io_uring worker's acting ones).
	t_group_dir() {
		mkdir -m 2770 "$BACK/grpdir" &&
		chown root:slowfs_tg "$BACK/grpdir" || return 1
		as_user slowfs_t2 sh -c "echo g > '$MNT/grpdir/t2new'" ||
			{ echo "member cannot create in the group's dir"
			  return 1; }
		[ "$(stat -c %U:%G "$BACK/grpdir/t2new")" = \
		  slowfs_t2:slowfs_tg ] ||
			{ echo "owner $(stat -c %U:%G "$BACK/grpdir/t2new")"
			  return 1; }
		as_user slowfs_t2 cat "$MNT/grpdir/t2new" >/dev/null ||
			{ echo "member cannot read in the group's dir"
			  return 1; }
		! as_user slowfs_t1 sh -c ": > '$MNT/grpdir/t1new'" \
			2>/dev/null && [ ! -e "$BACK/grpdir/t1new" ] ||
			{ echo "non-member created in the group's dir"
			  return 1; }
		! as_user slowfs_t1 cat "$MNT/grpdir/t2new" 2>/dev/null ||
			{ echo "non-member read in the group's dir"; return 1; }
		! as_user slowfs_t2 sh -c "echo x >> '$MNT/shared/t1file'" \
			2>/dev/null ||
			{ echo "t2 wrote to t1's 0600 file"; return 1; }
		! as_user slowfs_t1 chmod 666 "$MNT/shared/t2file" \
			2>/dev/null ||
			{ echo "t1 changed the mode of t2's file"; return 1; }
	}
	check "group-only directory: kernel's decision, caller owns" \
		t_group_dir

	# The kernel's decision includes POSIX ACLs (FUSE_CAP_POSIX_ACL): an
	# entry that denies one user holds although the mode bits allow.
	t_acl_denies() {
		echo acl > "$BACK/aclfile" && chmod 664 "$BACK/aclfile" &&
		setfacl -m u:slowfs_t2:--- "$BACK/aclfile" || return 1
		as_user slowfs_t1 cat "$MNT/aclfile" >/dev/null ||
			{ echo "t1 cannot read a 0664 file"; return 1; }
		! as_user slowfs_t2 cat "$MNT/aclfile" 2>/dev/null ||
			{ echo "t2 read a file its ACL entry denies"; return 1; }
	}
	check "a POSIX ACL entry that denies a user holds" t_acl_denies
fi

# --- locks ----------------------------------------------------------------

check "POSIX lock blocks second F_SETLK, F_GETLK sees it" \
	py lock_posix "$MNT/lockfile"
check "POSIX lock dropped when owner closes any fd" \
	py lock_posix_close "$MNT/lockfile"
check "blocking F_SETLKW waits for the holder" py lock_wait "$MNT/lockfile"
check "OFD locks (F_OFD_SETLK, used by Samba)" py lock_ofd "$MNT/lockfile"
check "flock" py flock "$MNT/lockfile"

# --- statistics -------------------------------------------------------------

count_of() {
	awk -v op="$1" '$1 == op { print $2 }' "$STATS" 2>/dev/null
}

t_stats() {
	local i n
	rm -f "$STATS"
	kill -USR1 "$PID1"
	wait_until test -s "$STATS" ||
		{ echo "no stats file ${WAIT_SECS}s after SIGUSR1"; return 1; }
	for op in getattr getxattr setxattr read write readdir lock flock \
		  create open rename mkdir unlink; do
		n=$(count_of "$op")
		[ -n "$n" ] && [ "$n" -gt 0 ] ||
			{ echo "count for $op is '${n}'"; return 1; }
	done
}
check "stats dump on SIGUSR1" t_stats

# --- unmount ----------------------------------------------------------------

not_running() {
	! kill -0 "$1" 2>/dev/null
}

is_sleep() {
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = sleep ]
}

# A mount namespace made now from the one the script was started in, as
# by another run's smbd: slowfs must still end at our unmount.
if [ -e /proc/$$/fd/9 ] && command -v nsenter >/dev/null; then
	nsenter --mount=/proc/$$/fd/9 -- \
		unshare --mount --propagation private -- sleep 600 &
	OTHER_NS=$!
	if ! wait_until is_sleep "$OTHER_NS"; then
		fail "unmount" "no other mount namespace within ${WAIT_SECS}s"
	fi
else
	skip "unmount with another namespace" "not in a namespace of our own"
fi

# In the main shell, not in check's subshell: only it can reap slowfs.
rm -f "$STATS"
if ! fusermount3 -u "$MNT"; then
	fail "unmount" "fusermount3 -u failed"
else
	if ! wait_until not_running "$PID1"; then
		fail "unmount" "slowfs still running ${WAIT_SECS}s after unmount"
	else
		wait "$PID1"
		rc=$?
		PID1=
		if [ "$rc" -eq 0 ]; then
			ok "unmount: slowfs exits with status 0"
		else
			fail "unmount" "slowfs exit status $rc"
		fi
		if [ -n "$(count_of getxattr)" ]; then
			ok "stats written at unmount"
		else
			fail "stats written at unmount" "no stats file"
		fi
	fi
fi

summary
