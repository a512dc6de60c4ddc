#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults and fallback: what slow, failing or missing infrastructure does
to a share, on the default VFS and on each of our modules side by side.

- io_uring refused by seccomp (as in a container): shares still connect,
  I/O goes to the next module, the refusal is logged once per process;
- slowfs under the share: EIO and ENOSPC come back as errors, short reads
  and writes are continued without losing data, a client that disconnects
  in the middle of a slow read leaves smbd healthy.
"""
import errno
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
import traceback

import harness
import smb2client
from listing_tests import listing
from smbd_tests import put_get_roundtrip, sha256, smbclient

BIN = harness.BIN
NO_IO_URING = os.path.join(BIN, 'selftest', 'tools', 'no_io_uring')
SLOWFS = os.path.join(BIN, 'selftest', 'slowfs', 'slowfs')

# Environments compared under faults: the default and ours.
FAULT_ENVS = ['default', 'async_uring']


# --- io_uring refused -------------------------------------------------------

def refused_io_uring_falls_back_to_the_next_module(smbd, env, reason):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.write(os.urandom(2 * 1024 * 1024 + 11))
        rc, out = smbclient(smbd, env, 'put %s fb.bin; get fb.bin %s/dst' %
                            (src, tmp))
        assert rc == 0, out
        assert sha256(src) == sha256(os.path.join(tmp, 'dst'))
    refusals = smbd.log_lines(r'io_uring unavailable \(%s\)' % reason)
    assert refusals, 'no log line about the refused ring'
    # once per process: the header line before each message has the pid
    with open(smbd.log, errors='replace') as f:
        text = f.read()
    pids = re.findall(r'pid=(\d+)[^\n]*\n\s+\w+: '
                      r'async_uring: io_uring unavailable', text)
    assert len(pids) == len(set(pids)), 'refusal logged twice by one ' \
        'process: %s' % pids
    assert smbd.counters('async_uring', 'pread').get('fallback', 0) > 0 or \
        smbd.counters('async_uring', 'pwrite').get('fallback', 0) > 0, \
        'no fallback counted'


def refused_io_uring_passes_smbtorture_rw(smbd, env, reason):
    for suite in ('smb2.rw', 'smb2.read'):
        p = subprocess.run(['smbtorture', smbd.unc(env), '-p',
                            str(smbd.port), '-U', smbd.creds(),
                            '--target=samba3', '--format=subunit', suite],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=600)
        bad = [ln for ln in p.stdout.splitlines()
               if ln.startswith(('failure:', 'error:'))]
        assert not bad and p.returncode == 0, '%s: %s' % (suite, bad)


def fallback_no_refuses_the_connect(smbd, env, reason):
    rc, out = smbclient(smbd, 'async_uring_strict', 'ls')
    assert rc != 0, 'connected without io_uring: ' + out
    assert smbd.log_lines(r'refusing to connect \[async_uring_strict\]: '
                          r'io_uring unavailable'), 'no log line'


# --- options ------------------------------------------------------------------

OPTION_ENVS = {
    'async_uring_strict': ('async_uring', {'async_uring:fallback': 'no'}),
    'async_uring_badopts': ('async_uring', {'async_uring:entries': 'lots',
                                            'async_uring:sqpoll': 'maybe',
                                            'async_uring:fallback': '2'}),
    # the engine's settings are [global] ones (OPTION_GLOBAL)
    'async_uring_sqpoll': ('async_uring', {}),
}
OPTION_GLOBAL = {'smbd profiling level': 'on', 'async_vfs:sqpoll': 'yes',
                 'async_vfs:entries': '64',
                 'async_vfs:io-wq workers': 'many'}


def fallback_no_connects_where_io_uring_works(smbd, env):
    rc, out = smbclient(smbd, 'async_uring_strict', 'ls')
    assert rc == 0, out


def bad_options_are_logged_and_defaults_used(smbd, env):
    put_get_roundtrip(smbd, 'async_uring_badopts')
    for line in (r"async_uring:entries = lots in a share section is "
                 r"ignored: .* set async_vfs:entries in \[global\]",
                 r"async_uring:sqpoll = maybe in a share section is "
                 r"ignored",
                 r"async_uring:fallback: '2' is not one of: .*; using yes",
                 r"async_vfs:io-wq workers: 'many' is not a number; "
                 r"using 256"):
        assert smbd.log_lines(line), 'no log line like: ' + line


def engine_takes_its_settings_from_global(smbd, env):
    put_get_roundtrip(smbd, 'async_uring_sqpoll')
    line = (r'engine set up: entries=64 sqpoll=yes io-wq workers=256 '
            r'\(256 in force\)')
    assert smbd.log_lines(line), 'no log line like: ' + line


def sqpoll_serves_data(smbd, env):
    put_get_roundtrip(smbd, 'async_uring_sqpoll')


def smbstatus_profile_counts_ring_io(smbd, env):
    before = smbd.profile_counts()
    put_get_roundtrip(smbd, 'async_uring_sqpoll')
    after = smbd.profile_counts()
    for key in ('syscall_asys_pread_count', 'syscall_asys_pwrite_count'):
        assert after.get(key, 0) > before.get(key, 0), \
            '%s did not move: %s' % (key, after)


def run_options(res):
    envs = dict(OPTION_ENVS)
    smbd = harness.Smbd(envs=envs, log_level='1 async_uring:5',
                        extra_global=dict(OPTION_GLOBAL))
    smbd.start()
    try:
        for test in (fallback_no_connects_where_io_uring_works,
                     bad_options_are_logged_and_defaults_used,
                     sqpoll_serves_data,
                     engine_takes_its_settings_from_global,
                     smbstatus_profile_counts_ring_io):
            record(res, 'faults.%s' % test.__name__, test, smbd, None)
    finally:
        smbd.stop()
        check_panics(res, smbd, 'options')
        smbd.cleanup()


# --- slowfs -------------------------------------------------------------------

class SlowStorage:
    """slowfs mounted over a backing dir, with its config file."""

    def __init__(self, tmp, fuse_options=''):
        self.back = os.path.join(tmp, 'back')
        self.mnt = os.path.join(tmp, 'mnt')
        self.conf = os.path.join(tmp, 'slowfs.conf')
        self.generation = 0
        os.makedirs(self.back)
        os.makedirs(self.mnt)
        os.chmod(tmp, 0o755)
        text = self._write()
        subprocess.run([SLOWFS, self.back, self.mnt, '-o',
                        'allow_other,default_permissions' + fuse_options,
                        '--config=' + self.conf], check=True)
        self._wait_loaded(text)

    def _write(self, *lines):
        # direct_io: every read reaches slowfs, no page cache in between;
        # the generation makes each version's text differ
        self.generation += 1
        text = '# generation %d\ndirect_io = 1\n%s' % (
            self.generation, ''.join(line + '\n' for line in lines))
        with open(self.conf + '.new', 'w') as f:
            f.write(text)
        os.rename(self.conf + '.new', self.conf)
        return text

    def _wait_loaded(self, text):
        """slowfs copies each config it put in force to FILE.loaded."""
        def loaded():
            try:
                with open(self.conf + '.loaded') as f:
                    return f.read() == text
            except FileNotFoundError:
                return False
        if not harness.wait_until(loaded):
            raise RuntimeError('slowfs did not load its config within '
                               '%d s' % harness.WAIT_SECS)

    def set(self, *lines):
        self._wait_loaded(self._write(*lines))

    def backing(self, smbd, env, name):
        rel = os.path.relpath(smbd.share_path(env), self.mnt)
        return os.path.join(self.back, rel, name)

    def umount(self):
        subprocess.run(['fusermount3', '-u', self.mnt],
                       stderr=subprocess.DEVNULL)


def make_backing_file(storage, smbd, env, name, size):
    path = storage.backing(smbd, env, name)
    with open(path, 'wb') as f:
        f.write(os.urandom(size))
    os.chmod(path, 0o644)
    return path


# What each fault test saw on the default environment, which runs first
ON_DEFAULT = {}


def same_as_default(test, env, value):
    if env == 'default':
        ON_DEFAULT[test] = value
        return
    assert value == ON_DEFAULT.get(test), '%s here, %s on default' % (
        value, ON_DEFAULT.get(test))


def same_status_as_default(test, env, out):
    m = re.search(r'NT_STATUS_\w+', out)
    assert m, 'no NT status in: ' + out
    same_as_default(test, env, m.group(0))


def read_eio_is_an_error_not_a_crash(smbd, env, storage):
    make_backing_file(storage, smbd, env, 'eio.bin', 256 * 1024)
    storage.set('read.error = EIO', 'path_filter = eio.bin')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rc, out = smbclient(smbd, env, 'get eio.bin %s/x' % tmp)
    finally:
        storage.set()
    assert rc != 0, out
    same_status_as_default('read_eio', env, out)
    rc, out = smbclient(smbd, env, 'ls')
    assert rc == 0, 'share unusable after EIO: ' + out


def write_enospc_is_reported(smbd, env, storage):
    storage.set('write.error = ENOSPC', 'path_filter = enospc.bin')
    try:
        rc, out = smbclient(smbd, env, 'put /etc/services enospc.bin')
    finally:
        storage.set()
    assert rc != 0 and 'NT_STATUS_DISK_FULL' in out, out
    same_status_as_default('write_enospc', env, out)


def failed_write_writes_nothing(smbd, env, storage):
    """A 64 KiB write that fails with ENOSPC leaves the file empty."""
    c = smb2client.Client(smbd, env)
    try:
        fid = c.create('nospace.bin')
        storage.set('write.error = ENOSPC', 'path_filter = nospace.bin')
        try:
            c.write(fid, os.urandom(65536), 0)
            status = 'STATUS_SUCCESS'
        except smb2client.SessionError as e:
            status = smb2client.status_name(e)
        finally:
            storage.set()
        c.close(fid)
    finally:
        c.logoff()
    assert status == 'STATUS_DISK_FULL', status
    size = os.path.getsize(storage.backing(smbd, env, 'nospace.bin'))
    assert size == 0, '%d bytes written past a failed write' % size


def short_reads_are_continued(smbd, env, storage):
    src = make_backing_file(storage, smbd, env, 'short-r.bin',
                            1024 * 1024 + 333)
    storage.set('read.short = 4000', 'path_filter = short-r.bin')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rc, out = smbclient(smbd, env, 'get short-r.bin %s/x' % tmp)
            assert rc == 0, out
            assert sha256(src) == sha256(os.path.join(tmp, 'x')), \
                'data differs after short reads'
    finally:
        storage.set()


def short_writes_are_continued(smbd, env, storage):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.write(os.urandom(1024 * 1024 + 777))
        storage.set('write.short = 3000', 'path_filter = short-w.bin')
        try:
            rc, out = smbclient(smbd, env, 'put %s short-w.bin' % src)
        finally:
            storage.set()
        assert rc == 0, out
        dst = storage.backing(smbd, env, 'short-w.bin')
        assert sha256(src) == sha256(dst), 'data lost in short writes'


def file_fds(pid):
    """A process's fds other than sockets (which smbd's messaging opens
    and closes as peers come and go): files, pipes, rings."""
    d = '/proc/%s/fd' % pid
    out = set()
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if not target.startswith('socket:'):
            out.add('%s->%s' % (fd, target))
    return out


def opened_by_a_child(smbd, baseline, name):
    """Whether an smbd child that is not in baseline has name open."""
    for pid in smbd.children() - baseline:
        try:
            if any(name in fd for fd in file_fds(pid)):
                return True
        except OSError:
            pass			# the child has gone meanwhile
    return False


def disconnect_mid_read_leaves_smbd_healthy(smbd, env, storage):
    make_backing_file(storage, smbd, env, 'slow.bin', 8 * 1024 * 1024)
    make_backing_file(storage, smbd, env, 'other.bin', 64 * 1024)
    before = smbd.children()
    other = smb2client.Client(smbd, env)	# a connection that stays
    other_fid = other.open('other.bin')
    other_pid = (smbd.children() - before).pop()
    storage.set('read.delay_ms = 300', 'path_filter = slow.bin')
    baseline = smbd.children()
    fds = {pid: file_fds(pid) for pid in (smbd.proc.pid, other_pid)}
    try:
        p = subprocess.Popen(['smbclient', smbd.unc(env), '-p',
                              str(smbd.port), '-mSMB3', '-U', smbd.creds(),
                              '-c', 'get slow.bin /dev/null'],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        # killed in the middle of its read: once its smbd has the file
        # open (a condition), and a while into the 300 ms reads (if that
        # while is not enough on a busy machine, the test is weaker,
        # never wrong)
        assert harness.wait_until(lambda: opened_by_a_child(
            smbd, baseline, 'slow.bin')), 'smbclient never opened slow.bin'
        time.sleep(1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        smbd.wait_children(baseline, timeout=harness.WAIT_SECS)
    finally:
        storage.set()
    assert not (smbd.children() - baseline), \
        'the connection\'s smbd did not exit after the disconnect'
    for pid, was in fds.items():
        now = file_fds(pid)
        assert now == was, 'fds of smbd %s changed: +%s -%s' % (
            pid, sorted(now - was), sorted(was - now))
    assert len(other.read(other_fid, 0, 65536)) == 65536, \
        'the other connection stopped working'
    other.close(other_fid)
    other.logoff()
    rc, out = smbclient(smbd, env, 'ls')
    assert rc == 0, out


def reopened_file_reads_its_new_content(smbd, env, storage):
    """Many reads and writes on one open file (async_uring keeps it in
    one fixed slot until the close), then the file is replaced on the
    server and opened again, likely on the same descriptor number: the
    reads must show the new file, never the one the slot held."""
    path = make_backing_file(storage, smbd, env, 'reopen.bin', 1 << 20)
    os.chmod(path, 0o666)
    c = smb2client.Client(smbd, env)
    try:
        for generation in range(2):
            with open(path, 'rb') as f:
                want = bytearray(f.read())
            fid = c.open('reopen.bin', write=True)
            for i in range(64):
                off = (i * 40961) % (len(want) - 16384)
                if i % 8 == 7:
                    data = os.urandom(4096)
                    c.write(fid, data, off)
                    want[off:off + 4096] = data
                got = c.read(fid, off, 16384)
                assert got == bytes(want[off:off + 16384]), \
                    'generation %d, read %d at %d differs' % (generation,
                                                              i, off)
            c.close(fid)
            with open(path, 'rb') as f:
                assert f.read() == bytes(want), 'the file on the server ' \
                    'differs from what was written'
            new = path + '.new'
            with open(new, 'wb') as f:
                f.write(os.urandom(1 << 20))
            os.chmod(new, 0o666)
            os.rename(new, path)
    finally:
        c.logoff()


def held_slot_is_used_when_the_table_is_full(smbd, env, storage):
    """More files in I/O than the engine has fixed slots (1024): each
    file that holds a slot keeps using it once the table is full, and
    only files without one are passed to the next module."""
    files, extra = 1100, 1100 - 1024
    d = storage.backing(smbd, env, 'many')
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    for i in range(files):
        with open(os.path.join(d, 'f%04d' % i), 'wb') as f:
            f.write(b'%04d' % i)
    before = smbd.counters('async_uring', 'pread')
    baseline = smbd.children()
    c = smb2client.Client(smbd, env)
    try:
        fids = [c.open('many\\f%04d' % i) for i in range(files)]
        for rnd in range(2):
            for i, fid in enumerate(fids):
                assert c.read(fid, 0, 4) == b'%04d' % i, \
                    'round %d: f%04d reads wrong' % (rnd, i)
        for fid in fids:
            c.close(fid)
    finally:
        c.logoff()
    smbd.wait_children(baseline, timeout=harness.WAIT_SECS)
    after = smbd.counters('async_uring', 'pread')
    fallback = after.get('fallback', 0) - before.get('fallback', 0)
    done = after.get('completed', 0) - before.get('completed', 0)
    assert fallback <= 2 * extra and done >= 2 * (files - extra), \
        '%d of %d reads passed on, %d through the ring (at most %d ' \
        'should be passed on)' % (fallback, 2 * files, done, 2 * extra)


def ring_files(pid):
    """The files in the fixed-file tables of pid's io_uring rings, as
    the kernel shows them in each ring's fdinfo."""
    d = '/proc/%s/fd' % pid
    names = []
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)) != 'anon_inode:[io_uring]':
                continue
            with open('/proc/%s/fdinfo/%s' % (pid, fd)) as f:
                info = f.read()
        except OSError:
            continue
        m = re.search(r'^UserFiles:.*\n((?:[ \t]*\d+: .*\n)*)', info, re.M)
        if m:
            names += [ln.split(': ', 1)[1]
                      for ln in m.group(1).splitlines()]
    return names


def closed_file_leaves_the_ring(smbd, env, storage):
    """A file that async_uring keeps in a fixed slot leaves the ring's
    table at its close, while the connection stays: a slot kept would
    hold the closed file open (its space, were it deleted, and a
    descriptor number smbd may give the next open)."""
    make_backing_file(storage, smbd, env, 'slotted.bin', 8192)
    baseline = smbd.children()
    c = smb2client.Client(smbd, env)
    try:
        pid = (smbd.children() - baseline).pop()
        fid = c.open('slotted.bin')
        assert len(c.read(fid, 0, 8192)) == 8192, 'short read'
        held = [n for n in ring_files(pid) if n.endswith('/slotted.bin')]
        assert held, 'the open file holds no fixed slot: %s' % \
            ring_files(pid)
        c.close(fid)
        left = [n for n in ring_files(pid) if n.endswith('/slotted.bin')]
        assert not left, 'the closed file is still in the ring: %s' % left
        rc, out = smbclient(smbd, env, 'ls slotted.bin')
        assert rc == 0, out
    finally:
        c.logoff()


XATTR_ENVS = ['default', 'async_xattr', 'async_xattr_auto', 'async_dosattr',
              'async_dosattr_async_auto', 'async_dosattr_prefetch',
              'async_dosattr_auto']
XATTR_ENV_DEFS = {
    'async_xattr_auto': ('async_xattr', {'smbd async dosmode': 'yes'}),
    # the asynchronous path in its default mode: it must find out by
    # itself that this storage is slow
    'async_dosattr_async_auto': ('async_dosattr',
                                 {'smbd async dosmode': 'yes'}),
    # the prefetch in its default mode: it must find out by itself that
    # this storage is slow
    'async_dosattr_auto': ('async_dosattr',
                           {'async_dosattr:ctime granularity msec': '20'}),
}
# the asynchronous path in mode auto, for one test alone: its counters
# are per tree connect, in order.  The threshold puts slowfs's own
# latency (some 40 usec a read) clearly below it, 2 ms clearly above.
RETCON_ENV = 'async_dosattr_retcon'
RETCON_DEF = ('async_dosattr', {'smbd async dosmode': 'yes',
                                'async_dosattr:async threshold usec': '500'})
# the same, for the reload test, which rewrites its section
RELOAD_ENV = 'async_dosattr_reload'
# mode auto with thresholds far above slowfs's own latency (40-70 usec,
# some ms on a machine at load 10-18, which at thresholds of 1 and 2 ms
# steered it): a lone slow read, capped at twice the larger threshold,
# moves the estimate by half the async threshold (by all of it at the
# former cap).  The spike is 5 times that cap, as 10 ms were at 1/2 ms.
SPIKY_ENV = 'async_dosattr_spiky'
SPIKY_ASYNC_USEC = 20000
SPIKY_DEF = ('async_dosattr', {'smbd async dosmode': 'yes',
                               'async_dosattr:async threshold usec':
                               str(SPIKY_ASYNC_USEC),
                               'async_dosattr:prefetch threshold usec':
                               str(2 * SPIKY_ASYNC_USEC)})
SPIKE_MS = 10 * SPIKY_ASYNC_USEC // 1000
# the asynchronous path with every default, for one test alone: a new
# connection to slow storage
COLD_ENV = 'async_dosattr_cold'
COLD_DEF = ('async_dosattr', {'smbd async dosmode': 'yes'})
# smbd's synchronous listing with the prefetch on, turned asynchronous
# by the admin in the middle of a listing (mode async: nothing steers)
TURNED_ENV = 'async_dosattr_turned'
TURNED_DEF = ('async_dosattr', {'smbd async dosmode': 'no',
                                'async_dosattr:mode': 'async',
                                'async_dosattr:prefetch': 'yes',
                                'async_dosattr:ctime granularity msec':
                                '20'})
HIDDEN_BLOB = {}


def make_listing_dir(storage, smbd, env, name, count, prefix='f'):
    blob = hidden_blob(smbd, storage)
    d = storage.backing(smbd, env, name)
    os.makedirs(d, exist_ok=True)
    owner = pwd.getpwnam(harness.USERS[0])
    for i in range(count):
        path = os.path.join(d, '%s%04d' % (prefix, i))
        with open(path, 'w'):
            pass
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.setxattr(path, 'user.DOSATTRIB', blob)


def hidden_blob(smbd, storage):
    """The DOSATTRIB value smbd writes for a hidden file."""
    if 'hidden' not in HIDDEN_BLOB:
        rc, out = smbclient(smbd, 'default', 'put /etc/hostname hblob; '
                            'setmode hblob +h')
        assert rc == 0, out
        HIDDEN_BLOB['hidden'] = os.getxattr(
            storage.backing(smbd, 'default', 'hblob'), 'user.DOSATTRIB')
    return HIDDEN_BLOB['hidden']


def getxattr_eio_lists_like_default(smbd, env, storage):
    make_listing_dir(storage, smbd, env, 'eiolist', 20)
    storage.set('getxattr.error = EIO', 'path_filter = eiolist/')
    try:
        got = listing(smbd, env, None, 'eiolist\\*')
    finally:
        storage.set()
    assert len(got[2]) == 20, 'listing incomplete: %s' % (got,)
    same_as_default('getxattr_eio_listing', env, got)


def slow_getxattr_lists_like_default(smbd, env, storage):
    make_listing_dir(storage, smbd, env, 'slowlist', 100)
    storage.set('getxattr.delay_ms = 2', 'path_filter = slowlist/')
    try:
        got = listing(smbd, env, None, 'slowlist\\*')
    finally:
        storage.set()
    hidden = [n for n, a in got[2].items() if 'H' in a]
    assert len(hidden) == 100, 'hidden entries: %d of 100' % len(hidden)
    same_as_default('slow_getxattr_listing', env, got)


XATTR_TESTS = [
    getxattr_eio_lists_like_default,
    slow_getxattr_lists_like_default,
]

# Where async_dosattr itself reads the value ahead of smbd's synchronous
# read: its asynchronous path (mode async) and its prefetch (forced).
REREAD_ENVS = ['async_dosattr', 'async_dosattr_prefetch']


def failed_read_of_the_module_is_read_again(smbd, env, storage):
    """An error of async_dosattr's own machinery (EMFILE: no fd for the
    engine's dup) is not the file's answer: smbd must read the value
    again itself, and list the file as hidden.  slowfs fails every
    second getxattr of one file with EMFILE; one read on the server
    first makes the module's read the failing one, and one after the
    listing shows that exactly one read of the listing failed."""
    make_listing_dir(storage, smbd, env, 'againlist', 20)
    victim = os.path.join(smbd.share_path(env), 'againlist', 'f0007')
    storage.set('getxattr.error = 24', 'getxattr.error_every = 2',
                'path_filter = againlist/f0007')
    try:
        os.getxattr(victim, 'user.DOSATTRIB')		# the 1st: passes
        got = listing(smbd, env, None, 'againlist\\*')
        try:
            os.getxattr(victim, 'user.DOSATTRIB')
            after = 'no error'
        except OSError as e:
            after = e.errno
    finally:
        storage.set()
    assert len(got[2]) == 20, 'listing incomplete: %s' % (got,)
    assert 'H' in got[2].get('f0007', ''), \
        'f0007 listed as %r after its read failed' % got[2].get('f0007')
    assert after == errno.EMFILE, \
        'the listing read f0007 an odd number of times (%s)' % after


def slow_listing_twice(smbd, env, storage):
    """Two listings in one connection: the first teaches mode auto that
    the storage is slow, so the second is asynchronous (checked on the
    counters when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'twicelist', 100)
    out = list_slowly(smbd, env, storage, 'twicelist/',
                      'ls twicelist\\*; ls twicelist\\*')
    assert out.count('f0099') == 2, out[-500:]


def list_slowly(smbd, env, storage, path_filter, commands):
    """smbclient's output for commands while getxattr takes 2 ms on
    paths containing path_filter."""
    storage.set('getxattr.delay_ms = 2', 'path_filter = ' + path_filter)
    try:
        rc, out = smbclient(smbd, env, commands)
    finally:
        storage.set()
    assert rc == 0, out
    return out


def slow_entries_in_fast_directories(smbd, env, storage):
    """Two listings in one connection of directories whose own
    attributes are read fast and whose entries slowly: the fast read
    of the second directory asks mode auto to measure again, and that
    measurement must not end the listing before its first entry."""
    for d in ('fastdir1', 'fastdir2'):
        make_listing_dir(storage, smbd, env, d, 60)
    out = list_slowly(smbd, env, storage, '/f00',
                      'ls fastdir1\\*; ls fastdir2\\*')
    listed = len(re.findall(r'^\s+f00\d\d\s', out, re.M))
    assert listed == 120, '%d of 120 entries listed: %s' % (listed,
                                                           out[-500:])


def listing_after_tree_reconnect(smbd, env, storage):
    """One connection lists a fast directory (mode auto steers smbd's
    async dosmode off for the share), disconnects the tree, connects it
    again and lists a slow directory twice: the second tree connect must
    know the "no" it finds for the module's, not the admin's, and list
    asynchronously (checked on the counters when smbd has stopped)."""
    for d in ('quickdir', 'slowdir'):
        make_listing_dir(storage, smbd, env, d, 60)
    out = list_slowly(smbd, env, storage, 'slowdir/',
                      'ls quickdir\\*; tdis; tcon %s; ls slowdir\\*; '
                      'ls slowdir\\*' % env)
    listed = len(re.findall(r'^\s+f00\d\d\s', out, re.M))
    assert listed == 180, '%d of 180 entries listed: %s' % (listed,
                                                           out[-500:])


def set_and_reload(smbd, env, pid, option, value):
    """Set an option of env's share in smb.conf, and have the smbd
    child pid reload it.  reload-config is asynchronous; the child
    handles its messages in order, reloading within the handler, so its
    answer to a ping that follows says the reload is done."""
    smbd.envs[env][1][option] = value
    smbd.write_conf()
    subprocess.run(harness.runtime_cmd(['smbcontrol', '-s', smbd.conf,
                                        str(pid), 'reload-config'],
                                       binds=[smbd.dir]), check=True)
    subprocess.run(harness.runtime_cmd(['smbcontrol', '-s', smbd.conf, '-t',
                                        str(harness.WAIT_SECS), str(pid),
                                        'ping'], binds=[smbd.dir]),
                   check=True, stdout=subprocess.DEVNULL)


def reload_to_no_is_the_admins(smbd, env, storage):
    """A listing on fast storage steers smbd's async dosmode off for the
    share; then the admin sets it to no and smbd reloads.  The module
    must take that no for the admin's (the reload clears the share's
    parametric options, the module's note of its own no with them) and
    leave the slow listings that follow synchronous on the same tree
    connect (checked on the counters when smbd has stopped)."""
    for d in ('quickdir', 'slowdir'):
        make_listing_dir(storage, smbd, env, d, 60)
    opts = smbd.envs[env][1]
    baseline = smbd.children()
    c = smb2client.Client(smbd, env)
    try:
        pid = (smbd.children() - baseline).pop()
        got = c.conn.listPath(env, 'quickdir\\*')
        assert len(got) == 62, '%d entries listed' % len(got)
        set_and_reload(smbd, env, pid, 'smbd async dosmode', 'no')
        storage.set('getxattr.delay_ms = 2', 'path_filter = slowdir/')
        try:
            for _ in range(2):
                got = c.conn.listPath(env, 'slowdir\\*')
                assert len(got) == 62, '%d entries listed' % len(got)
        finally:
            storage.set()
    finally:
        c.logoff()
        opts['smbd async dosmode'] = 'yes'
        smbd.write_conf()


def lone_slow_reads_steer_nothing(smbd, env, storage):
    """A fast directory with four entries that read slowly (SPIKE_MS, 10
    times the async threshold), as a busy machine's preempted reads look
    to mode auto: after steering smbd's async dosmode off at its first
    read, the listing must not steer it again (checked on the counters
    when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'spikydir', 196)
    make_listing_dir(storage, smbd, env, 'spikydir', 4, prefix='spike')
    storage.set('getxattr.delay_ms = %d' % SPIKE_MS,
                'path_filter = spikydir/spike')
    try:
        rc, out = smbclient(smbd, env, 'ls spikydir\\*')
    finally:
        storage.set()
    assert rc == 0, out
    listed = len(re.findall(r'^\s+(f|spike)\d{4}\s', out, re.M))
    assert listed == 200, '%d of 200 entries listed: %s' % (listed,
                                                           out[-500:])


def slow_share_keeps_async_dosmode(smbd, env, storage):
    """A new connection to a share whose every read is slow (2 ms, far
    above the default thresholds): mode auto must keep smbd's async
    dosmode on from the first read, and no entry's DOS attributes may be
    read twice, by the prefetch and by the asynchronous path (checked on
    the counters when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'colddir', 200)
    out = list_slowly(smbd, env, storage, '/' + env, 'ls colddir\\*')
    listed = len(re.findall(r'^\s+f0\d{3}\s', out, re.M))
    assert listed == 200, '%d of 200 entries listed: %s' % (listed,
                                                           out[-500:])


def listing_turned_async(smbd, env, storage):
    """A listing that smbd begins synchronously (the prefetch reads DOS
    attributes ahead) and, after the admin turned smbd's async dosmode on
    and smbd reloaded, goes on asynchronously on the same handle: from
    then on the prefetch must leave the DOS attributes to the
    asynchronous path (checked on the counters when smbd has
    stopped)."""
    make_listing_dir(storage, smbd, env, 'turndir', 600)
    time.sleep(0.1)         # older than the 20 ms ctime granularity
    opts = smbd.envs[env][1]
    baseline = smbd.children()
    client = smb2client.Client(smbd, env)
    try:
        pid = (smbd.children() - baseline).pop()
        conn, fid = smb2client.open_dir(client, 'turndir')
        try:
            listed = dict(smb2client.query_step(conn, client.tid, fid))
            assert 0 < len(listed) < 100, '%d listed' % len(listed)
            set_and_reload(smbd, env, pid, 'smbd async dosmode', 'yes')
            listed.update(smb2client.rest_of_listing(conn, client.tid,
                                                     fid))
        finally:
            conn.close(client.tid, fid)
    finally:
        client.logoff()
        opts['smbd async dosmode'] = 'no'
        smbd.write_conf()
    assert len(listed) == 600, '%d of 600 listed' % len(listed)


def tree_counters(smbd, share):
    """async_dosattr's listing counters of share, one dict per tree
    connect, in order."""
    lines = smbd.log_lines('async_dosattr counters listing: share=%s ' %
                           share)
    return [{k: int(v) for k, v in re.findall(r' (\w+)=(\d+)', ln)}
            for ln in lines]


def tree_counters_hold(res, smbd, test, share, holds):
    """test/share passes when holds(counters per tree connect)."""
    name = 'faults.%s/%s' % (test, share)
    counts = tree_counters(smbd, share)
    if holds(counts):
        res.add('pass', name)
    else:
        res.add('fail', name, 'counters per tree connect: %s' % counts)


def steering_kept_its_course(res, smbd):
    """The steering tests' checks, on the counters of their tree
    connects."""
    tree_counters_hold(
        res, smbd, 'tree_reconnect_finds_async_dosmode_again', RETCON_ENV,
        lambda c: len(c) == 2 and c[0].get('steered', 0) > 0 and
        c[1].get('async', 0) > 0)
    # steered once, by the fast listing, and never back on
    tree_counters_hold(
        res, smbd, 'reload_to_no_is_the_admins', RELOAD_ENV,
        lambda c: len(c) == 1 and c[0].get('steered', 0) == 1 and
        c[0].get('async', 0) == 0)
    tree_counters_hold(
        res, smbd, 'lone_slow_reads_steer_nothing', SPIKY_ENV,
        lambda c: len(c) == 1 and c[0].get('steered', 0) == 1)
    tree_counters_hold(
        res, smbd, 'slow_share_kept_async_dosmode', COLD_ENV,
        lambda c: len(c) == 1 and c[0].get('steered', 1) == 0 and
        c[0].get('prefetched', 1) == 0 and c[0].get('async', 0) >= 150)
    # before the reload at most the first top-ups (a window of 64 each)
    tree_counters_hold(
        res, smbd, 'turned_async_reads_each_entry_once', TURNED_ENV,
        lambda c: len(c) == 1 and 0 < c[0].get('prefetched', 0) <= 192 and
        c[0].get('async', 0) >= 400)


SLOW_TESTS = [
    reopened_file_reads_its_new_content,
    read_eio_is_an_error_not_a_crash,
    write_enospc_is_reported,
    failed_write_writes_nothing,
    short_reads_are_continued,
    short_writes_are_continued,
    disconnect_mid_read_leaves_smbd_healthy,
]


def counter_total(smbd, prefix, counter):
    """(counter summed over the log lines that start with prefix, one per
    connection; those lines)."""
    lines = smbd.log_lines(prefix)
    return sum(int(x) for ln in lines
               for x in re.findall(r' %s=(\d+)' % counter, ln)), lines


def counted(res, smbd, name, prefix, counter, what):
    """name passes when counter, summed over its lines, is above zero."""
    total, lines = counter_total(smbd, prefix, counter)
    if total > 0:
        res.add('pass', name)
    else:
        res.add('fail', name, 'no %s: %s' % (what, lines[-3:]))


def auto_modes_adapted(res, smbd):
    """Each auto mode changed its way once getxattr was slow."""
    counted(res, smbd, 'faults.async_xattr_auto_goes_async_on_slow_storage',
            'async_xattr counters getxattrat: share=async_xattr_auto ',
            'async', 'asynchronous getxattr')
    counted(res, smbd,
            'faults.async_dosattr_auto_goes_async_on_slow_storage',
            'async_dosattr counters listing: '
            'share=async_dosattr_async_auto ', 'async', 'asynchronous read')
    counted(res, smbd, 'faults.async_dosattr_auto_prefetches_on_slow_storage',
            'async_dosattr counters listing: share=async_dosattr_auto ',
            'hits', 'prefetch hits')
    # slow reads, but the admin left smbd async dosmode off there
    steered, lines = counter_total(
        smbd, 'async_dosattr counters listing: share=async_dosattr_auto ',
        'steered')
    name = 'faults.async_dosattr_auto_leaves_async_dosmode_off_alone'
    if lines and steered == 0:
        res.add('pass', name)
    else:
        res.add('fail', name, 'steered %d times: %s' % (steered, lines[-3:]))


def held_slots_used(res, smbd):
    """An open file is registered in a fixed slot once, not per request:
    far fewer registrations than data requests completed (with a slot
    per request there would be as many)."""
    name = 'faults.async_uring_registers_a_file_once_not_per_request'
    ring = smbd.counters('async_uring', 'ring')
    data = sum(smbd.counters('async_uring', op).get('completed', 0)
               for op in ('pread', 'pwrite', 'fsync'))
    regs = ring.get('slot_registrations', 0)
    print('    async_uring: %d slot registrations for %d data requests' %
          (regs, data), flush=True)
    if data > 0 and 0 < regs and regs * 2 < data:
        res.add('pass', name)
    else:
        res.add('fail', name, '%d registrations for %d data requests' %
                (regs, data))


def record(res, name, fn, *args):
    """One test's result; any other exception (a client timeout or
    reset) fails that test, not the run."""
    try:
        fn(*args)
    except AssertionError as e:
        res.add('fail', name, str(e).strip().replace('\n', ' | ')[:400])
        return
    except Exception as e:
        res.add('fail', name, 'error: %s: %s' % (
            e, traceback.format_exc(limit=-3).replace('\n', ' | ')[-400:]))
        return
    res.add('pass', name)


def check_panics(res, smbd, label):
    for line in smbd.panics():
        res.add('fail', 'faults.%s-panic' % label, line)


def run_refused(res):
    """io_uring_setup refused as by docker's seccomp profile (EPERM) and
    as by a kernel without io_uring (ENOSYS)."""
    for flag, reason in (([], 'Operation not permitted'),
                         (['--enosys'], 'Function not implemented')):
        envs = {e: harness.ENVIRONMENTS[e] for e in FAULT_ENVS}
        envs['async_uring_strict'] = OPTION_ENVS['async_uring_strict']
        smbd = harness.Smbd(envs=envs, wrapper=[NO_IO_URING] + flag,
                            log_level='1 async_uring:5')
        smbd.start()
        label = 'eperm' if not flag else 'enosys'
        try:
            for test in (refused_io_uring_falls_back_to_the_next_module,
                         refused_io_uring_passes_smbtorture_rw,
                         fallback_no_refuses_the_connect):
                record(res, 'faults.%s/async_uring_%s' %
                       (test.__name__, label), test, smbd, 'async_uring',
                       reason)
        finally:
            smbd.stop()
            check_panics(res, smbd, 'refused')
            smbd.cleanup()


def run_slowfs(res):
    with tempfile.TemporaryDirectory(prefix='asvfs-faults-') as tmp:
        storage = SlowStorage(tmp)
        envs = {e: harness.ENVIRONMENTS[e] for e in FAULT_ENVS}
        envs.update({e: XATTR_ENV_DEFS.get(e) or harness.ENVIRONMENTS[e]
                     for e in XATTR_ENVS})
        envs[RETCON_ENV] = RETCON_DEF
        envs[RELOAD_ENV] = (RETCON_DEF[0], dict(RETCON_DEF[1]))
        envs[SPIKY_ENV] = SPIKY_DEF
        envs[COLD_ENV] = COLD_DEF
        envs[TURNED_ENV] = (TURNED_DEF[0], dict(TURNED_DEF[1]))
        smbd = harness.Smbd(envs=envs, share_root=storage.mnt,
                            log_level=harness.LOG_LEVEL)
        try:
            smbd.start()
            for test in SLOW_TESTS:
                for env in FAULT_ENVS:
                    record(res, 'faults.%s/%s' % (test.__name__, env),
                           test, smbd, env, storage)
            record(res, 'faults.held_slot_is_used_when_the_table_is_full/'
                   'async_uring', held_slot_is_used_when_the_table_is_full,
                   smbd, 'async_uring', storage)
            record(res, 'faults.closed_file_leaves_the_ring/async_uring',
                   closed_file_leaves_the_ring, smbd, 'async_uring',
                   storage)
            for test in XATTR_TESTS:
                for env in XATTR_ENVS:
                    record(res, 'faults.%s/%s' % (test.__name__, env),
                           test, smbd, env, storage)
            for env in REREAD_ENVS:
                record(res, 'faults.failed_read_of_the_module_is_read_'
                       'again/' + env, failed_read_of_the_module_is_read_again,
                       smbd, env, storage)
            record(res, 'faults.slow_listing_twice/async_dosattr_async_auto',
                   slow_listing_twice, smbd, 'async_dosattr_async_auto',
                   storage)
            for env in ('async_dosattr_auto', 'async_dosattr_async_auto'):
                record(res, 'faults.slow_entries_in_fast_directories/' +
                       env, slow_entries_in_fast_directories, smbd, env,
                       storage)
            record(res, 'faults.listing_after_tree_reconnect/' + RETCON_ENV,
                   listing_after_tree_reconnect, smbd, RETCON_ENV, storage)
            record(res, 'faults.listing_after_reload/' + RELOAD_ENV,
                   reload_to_no_is_the_admins, smbd, RELOAD_ENV, storage)
            record(res, 'faults.listing_with_lone_slow_reads/' + SPIKY_ENV,
                   lone_slow_reads_steer_nothing, smbd, SPIKY_ENV, storage)
            record(res, 'faults.slow_share_keeps_async_dosmode/' +
                   COLD_ENV, slow_share_keeps_async_dosmode, smbd, COLD_ENV,
                   storage)
            record(res, 'faults.listing_turned_async/' + TURNED_ENV,
                   listing_turned_async, smbd, TURNED_ENV, storage)
            smbd.stop()
            auto_modes_adapted(res, smbd)
            steering_kept_its_course(res, smbd)
            c = smbd.counters('async_uring', 'pread')
            if c.get('short', 0) == 0 or c.get('resubmitted', 0) == 0:
                res.add('fail', 'faults.async_uring_counted_short_reads',
                        'counters: %s' % c)
            else:
                res.add('pass', 'faults.async_uring_counted_short_reads')
            held_slots_used(res, smbd)
        finally:
            smbd.stop()
            check_panics(res, smbd, 'slowfs')
            smbd.cleanup()
            storage.umount()


def run_all(res):
    run_options(res)
    run_refused(res)
    run_slowfs(res)
