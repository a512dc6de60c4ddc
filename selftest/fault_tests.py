#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults and fallback: what slow, failing or missing infrastructure does
to a share, on the default VFS and on each of our modules side by side.

- io_uring refused by seccomp (as in a container): shares still connect,
  I/O goes to the next module, the refusal is logged once per process;
- slowfs under the share: EIO and ENOSPC come back as errors, short reads
  and writes are continued without losing data, a client that disconnects
  in the middle of a slow read leaves smbd healthy; getxattr failing or
  slow lists as on the default, in every mode of async_xattr and
  async_dosattr.

How mode auto steers smbd's async dosmode is in dosattr_tests.
"""
import errno
import os
import re
import signal
import subprocess
import tempfile

import harness
import smb2client
import testlib
from testlib import (NO_IO_URING, Server, file_fds, listing,
                     make_listing_dir, put_get_roundtrip, same_as_default,
                     sha256, smbclient)

PREFIX = 'faults'		# of the test names: faults.<test>/<env>

# Environments compared under faults: the default and ours.
FAULT_ENVS = ['default', 'async_uring']


# --- io_uring refused -------------------------------------------------------

def refusal(smbd):
    """How no_io_uring refuses io_uring_setup to this smbd."""
    if '--enosys' in smbd.wrapper:
        return 'Function not implemented'
    return 'Operation not permitted'


def refused_io_uring_falls_back_to_the_next_module(smbd, env):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.write(os.urandom(2 * 1024 * 1024 + 11))
        rc, out = smbclient(smbd, env, 'put %s fb.bin; get fb.bin %s/dst' %
                            (src, tmp))
        assert rc == 0, out
        assert sha256(src) == sha256(os.path.join(tmp, 'dst'))
    refusals = smbd.log_lines(r'io_uring unavailable \(%s\)' %
                              refusal(smbd))
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


def refused_io_uring_passes_smbtorture_rw(smbd, env):
    for suite in ('smb2.rw', 'smb2.read'):
        p = subprocess.run(['smbtorture', smbd.unc(env), '-p',
                            str(smbd.port), '-U', smbd.creds(),
                            '--target=samba3', '--format=subunit', suite],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=600)
        bad = [ln for ln in p.stdout.splitlines()
               if ln.startswith(('failure:', 'error:'))]
        assert not bad and p.returncode == 0, '%s: %s' % (suite, bad)


def fallback_no_refuses_the_connect(smbd, env):
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


# --- slowfs -------------------------------------------------------------------

def make_backing_file(storage, smbd, env, name, size):
    path = storage.backing(smbd, env, name)
    with open(path, 'wb') as f:
        f.write(os.urandom(size))
    os.chmod(path, 0o644)
    return path


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
        # open and slowfs sleeps out the delay of one of its reads
        assert harness.wait_until(lambda: opened_by_a_child(
            smbd, baseline, 'slow.bin')), 'smbclient never opened slow.bin'
        assert harness.wait_until(storage.delaying), \
            'no read of slow.bin reached the storage'
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

SLOW_TESTS = [
    (reopened_file_reads_its_new_content, FAULT_ENVS),
    (read_eio_is_an_error_not_a_crash, FAULT_ENVS),
    (write_enospc_is_reported, FAULT_ENVS),
    (failed_write_writes_nothing, FAULT_ENVS),
    (short_reads_are_continued, FAULT_ENVS),
    (short_writes_are_continued, FAULT_ENVS),
    (disconnect_mid_read_leaves_smbd_healthy, FAULT_ENVS),
    (held_slot_is_used_when_the_table_is_full, ['async_uring']),
    (closed_file_leaves_the_ring, ['async_uring']),
    (getxattr_eio_lists_like_default, XATTR_ENVS),
    (slow_getxattr_lists_like_default, XATTR_ENVS),
    (failed_read_of_the_module_is_read_again, REREAD_ENVS),
]


def async_xattr_auto_goes_async_on_slow_storage(smbd):
    """Mode auto changed its way once getxattr was slow."""
    total, lines = testlib.counter_total(
        smbd, 'async_xattr counters getxattrat: share=async_xattr_auto ',
        'async')
    assert total > 0, 'no asynchronous getxattr: %s' % lines[-3:]


def async_uring_counted_short_reads(smbd):
    c = smbd.counters('async_uring', 'pread')
    assert c.get('short', 0) > 0 and c.get('resubmitted', 0) > 0, \
        'counters: %s' % c


def async_uring_registers_a_file_once_not_per_request(smbd):
    """An open file is registered in a fixed slot once, not per request:
    far fewer registrations than data requests completed (with a slot
    per request there would be as many)."""
    ring = smbd.counters('async_uring', 'ring')
    data = sum(smbd.counters('async_uring', op).get('completed', 0)
               for op in ('pread', 'pwrite', 'fsync'))
    regs = ring.get('slot_registrations', 0)
    print('    async_uring: %d slot registrations for %d data requests' %
          (regs, data), flush=True)
    assert data > 0 and 0 < regs and regs * 2 < data, \
        '%d registrations for %d data requests' % (regs, data)


# checked on the counters once smbd has stopped
SLOW_AFTER = [
    (async_xattr_auto_goes_async_on_slow_storage, [None]),
    (async_uring_counted_short_reads, [None]),
    (async_uring_registers_a_file_once_not_per_request, [None]),
]


def refused_envs():
    envs = {e: harness.ENVIRONMENTS[e] for e in FAULT_ENVS}
    envs['async_uring_strict'] = OPTION_ENVS['async_uring_strict']
    return envs


REFUSED_TESTS = [
    (refused_io_uring_falls_back_to_the_next_module, ['async_uring']),
    (refused_io_uring_passes_smbtorture_rw, ['async_uring']),
    (fallback_no_refuses_the_connect, ['async_uring']),
]

SERVERS = [
    Server('options', OPTION_ENVS,
           [(test, [None]) for test in (
               fallback_no_connects_where_io_uring_works,
               bad_options_are_logged_and_defaults_used,
               sqpoll_serves_data,
               engine_takes_its_settings_from_global,
               smbstatus_profile_counts_ring_io)],
           log_level='1 async_uring:5', extra_global=OPTION_GLOBAL),
    # io_uring_setup refused as by docker's seccomp profile (EPERM) and
    # as by a kernel without io_uring (ENOSYS)
    Server('refused', refused_envs(), REFUSED_TESTS, suffix='_eperm',
           wrapper=[NO_IO_URING], log_level='1 async_uring:5'),
    Server('refused', refused_envs(), REFUSED_TESTS, suffix='_enosys',
           wrapper=[NO_IO_URING, '--enosys'], log_level='1 async_uring:5'),
    Server('slowfs', dict({e: harness.ENVIRONMENTS[e] for e in FAULT_ENVS},
                          **{e: XATTR_ENV_DEFS.get(e) or
                             harness.ENVIRONMENTS[e] for e in XATTR_ENVS}),
           SLOW_TESTS, SLOW_AFTER, storage='slowfs'),
]

