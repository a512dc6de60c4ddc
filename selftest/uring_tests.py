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
from testlib import Server

PREFIX = 'uring'		# of the test names: uring.<test>/<env>
ENV_DEFS = {
    'async_uring': harness.ENVIRONMENTS['async_uring'],
    'async_uring_always_async_no': (
        'async_uring', {'async_uring:always async': 'no'}),
    'async_uring_always_async_yes': (
        'async_uring', {'async_uring:always async': 'yes'}),
}
RING_LINE = r'async_uring counters ring:'
SIZE = (1 << 20) + 4097		# several reads, the last one short


def ring_lines(smbd):
    return smbd.log_lines(RING_LINE)


def copy_through(smbd, env):
    """put then get a file over SMB3; the always_async count of the
    connection that did it (its smbd logs the engine's counters when the
    tree is disconnected)."""
    with tempfile.TemporaryDirectory(prefix='asvfs-uring-') as tmp:
        src = os.path.join(tmp, 'src')
        dst = os.path.join(tmp, 'dst')
        with open(src, 'wb') as f:
            f.write(os.urandom(SIZE))
        before = len(ring_lines(smbd))
        p = subprocess.run(['smbclient', smbd.unc(env), '-p',
                            str(smbd.port), '-mSMB3', '-U', smbd.creds(),
                            '-c', 'put %s f; get f %s' % (src, dst)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=120)
        assert p.returncode == 0, p.stdout[-400:]
        with open(src, 'rb') as a, open(dst, 'rb') as b:
            assert hashlib.sha256(a.read()).digest() == \
                hashlib.sha256(b.read()).digest(), 'the copy differs'
    assert harness.wait_until(lambda: len(ring_lines(smbd)) > before), \
        'no counters logged at disconnect'
    data = sum(int(v) for op in ('pread', 'pwrite')
               for line in smbd.log_lines(r'async_uring counters %s:' % op)
               [-1:]
               for v in re.findall(r' completed=(\d+)', line))
    assert data > 0, 'no data request went through io_uring'
    line = ring_lines(smbd)[-1]
    return int(re.search(r' always_async=(\d+)', line).group(1))


def fuse_goes_straight_to_the_workers(smbd, env):
    n = copy_through(smbd, env)
    assert n > 0, 'auto on FUSE: no submission with IOSQE_ASYNC'


def no_keeps_the_nonblocking_try(smbd, env):
    n = copy_through(smbd, env)
    assert n == 0, '"no": %d submissions with IOSQE_ASYNC' % n


def local_file_system_keeps_the_nonblocking_try(smbd, env):
    n = copy_through(smbd, env)
    assert n == 0, 'auto on ext4: %d submissions with IOSQE_ASYNC' % n


def yes_goes_straight_to_the_workers(smbd, env):
    n = copy_through(smbd, env)
    assert n > 0, '"yes": no submission with IOSQE_ASYNC'


FUSE_ENVS = ['async_uring', 'async_uring_always_async_no']
LOCAL_ENVS = ['async_uring', 'async_uring_always_async_yes']
SERVERS = [
    Server('fuse', {e: ENV_DEFS[e] for e in FUSE_ENVS}, [
        (fuse_goes_straight_to_the_workers, ['async_uring']),
        (no_keeps_the_nonblocking_try, ['async_uring_always_async_no']),
    ], storage='slowfs'),
    Server('local', {e: ENV_DEFS[e] for e in LOCAL_ENVS}, [
        (local_file_system_keeps_the_nonblocking_try, ['async_uring']),
        (yes_goes_straight_to_the_workers, ['async_uring_always_async_yes']),
    ]),
]
