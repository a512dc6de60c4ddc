#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""async_uring:always async: where a file system cannot do non-blocking
I/O (FUSE, tmpfs, ZFS), every read and write goes straight to the
kernel's workers (IOSQE_ASYNC) instead of first being tried without
blocking; elsewhere nothing changes.

Each case reads and writes a file through one connection and checks,
from the engine's counters that connection's smbd logs at disconnect,
how many submissions were sent with IOSQE_ASYNC, and that the data came
back intact: slowfs (FUSE) with the default "auto" and with "no", the
local file system with "auto" and with "yes".
"""
import hashlib
import os
import re
import subprocess
import tempfile

import harness
from fault_tests import SlowStorage, check_panics, record

ENV_DEFS = {
    'async_uring_always_async_no': (
        'async_uring', {'async_uring:always async': 'no'}),
    'async_uring_always_async_yes': (
        'async_uring', {'async_uring:always async': 'yes'}),
}
RING_LINE = r'async_uring counters ring:'
SIZE = (1 << 20) + 4097		# several reads, the last one short


def ring_lines(smbd):
    return smbd.log_lines(RING_LINE)


def copy_through(smbd, env, tmp):
    """put then get a file over SMB3; the always_async count of the
    connection that did it (its smbd logs the engine's counters when the
    tree is disconnected)."""
    src = os.path.join(tmp, 'src-%s' % env)
    dst = os.path.join(tmp, 'dst-%s' % env)
    with open(src, 'wb') as f:
        f.write(os.urandom(SIZE))
    before = len(ring_lines(smbd))
    p = subprocess.run(['smbclient', smbd.unc(env), '-p', str(smbd.port),
                        '-mSMB3', '-U', smbd.creds(), '-c',
                        'put %s f; get f %s' % (src, dst)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    assert p.returncode == 0, p.stdout[-400:]
    with open(src, 'rb') as a, open(dst, 'rb') as b:
        assert hashlib.sha256(a.read()).digest() == \
            hashlib.sha256(b.read()).digest(), 'the copy differs'
    assert harness.wait_until(lambda: len(ring_lines(smbd)) > before), \
        'no counters logged at disconnect'
    line = ring_lines(smbd)[-1]
    data = sum(int(v) for op in ('pread', 'pwrite')
               for line2 in smbd.log_lines(r'async_uring counters %s:' % op)
               [-1:]
               for v in re.findall(r' completed=(\d+)', line2))
    assert data > 0, 'no data request went through io_uring'
    return int(re.search(r' always_async=(\d+)', line).group(1))


def fuse_goes_straight_to_the_workers(smbd, env, tmp):
    n = copy_through(smbd, env, tmp)
    assert n > 0, 'auto on FUSE: no submission with IOSQE_ASYNC'


def no_keeps_the_nonblocking_try(smbd, env, tmp):
    n = copy_through(smbd, env, tmp)
    assert n == 0, '"no": %d submissions with IOSQE_ASYNC' % n


def local_file_system_keeps_the_nonblocking_try(smbd, env, tmp):
    n = copy_through(smbd, env, tmp)
    assert n == 0, 'auto on ext4: %d submissions with IOSQE_ASYNC' % n


def yes_goes_straight_to_the_workers(smbd, env, tmp):
    n = copy_through(smbd, env, tmp)
    assert n > 0, '"yes": no submission with IOSQE_ASYNC'


FUSE_TESTS = [
    (fuse_goes_straight_to_the_workers, 'async_uring'),
    (no_keeps_the_nonblocking_try, 'async_uring_always_async_no'),
]
LOCAL_TESTS = [
    (local_file_system_keeps_the_nonblocking_try, 'async_uring'),
    (yes_goes_straight_to_the_workers, 'async_uring_always_async_yes'),
]


def run_on(res, tests, label, share_root=None):
    envs = {'async_uring': harness.ENVIRONMENTS['async_uring']}
    envs.update(ENV_DEFS)
    smbd = harness.Smbd(envs=envs, share_root=share_root,
                        log_level=harness.LOG_LEVEL)
    with tempfile.TemporaryDirectory(prefix='asvfs-uring-') as tmp:
        try:
            smbd.start()
            for test, env in tests:
                record(res, 'uring.%s/%s' % (test.__name__, env), test,
                       smbd, env, tmp)
        finally:
            smbd.stop()
            check_panics(res, smbd, 'uring-' + label)
            smbd.cleanup()


def run_all(res):
    with tempfile.TemporaryDirectory(prefix='asvfs-uring-fuse-') as tmp:
        storage = SlowStorage(tmp)
        try:
            run_on(res, FUSE_TESTS, 'fuse', share_root=storage.mnt)
        finally:
            storage.umount()
    run_on(res, LOCAL_TESTS, 'local')
