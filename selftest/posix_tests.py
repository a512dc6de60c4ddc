#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What only POSIX clients do, per Samba release.

Samba 4.22 (VFS interface 50) opens a file O_APPEND for an SMB3 POSIX
client that asks for FILE_APPEND_DATA without FILE_WRITE_DATA, and its
writes reach the VFS with the offset VFS_PWRITE_APPEND_OFFSET (-1): "at
the end".  async_uring passes them on to the next module; before it did,
they failed with NT_STATUS_INVALID_PARAMETER (sys_valid_io_range(-1)).
The client is the Python binding of the Samba under test
(selftest/tools/smb3_posix_append.py, inside its chroot): the host's 4.17
clients speak no SMB3 POSIX.  On 4.17 there is nothing to test.
"""
import os
import subprocess

import harness
from testlib import Server

PREFIX = 'posix'		# of the test names: posix.<test>/<env>

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, 'tools', 'smb3_posix_append.py')
SMB_PORT = os.path.join(harness.BIN, 'selftest', 'tools', 'libsmb_port.so')
ENVS = ['default', 'async_uring', 'full_stack']
POSIX = {'smb3 unix extensions': 'yes'}


def append(smbd, env, name, parts):
    p = subprocess.run(
        harness.runtime_cmd(['env', 'LD_PRELOAD=' + SMB_PORT,
                             'ASVFS_SMB_PORT=%d' % smbd.port,
                             'python3', CLIENT, env, harness.USERS[0],
                             harness.PASSWORD, name] + parts),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=120)
    return p.returncode, p.stdout


def appends_go_to_the_end(smbd, env):
    parts = ['hello', ' world', '!' * 70000]
    rc, out = append(smbd, env, 'append-%s.txt' % env, parts)
    assert rc == 0, out[-400:]
    want = ''.join(parts)
    assert 'data: %r' % want.encode() in out, out[-400:]
    with open(os.path.join(smbd.share_path(env), 'append-%s.txt' % env),
              'rb') as f:
        assert f.read() == want.encode(), 'on disk: not %d bytes' % len(want)


def before_4_22():
    if harness.samba_series() < (4, 22):
        return ('SMB3 POSIX append-only writes are new in Samba 4.22 '
                '(make test SAMBA=4.22)')
    return None


SERVERS = [
    # negotiation asks [global], the create the share
    Server('posix', {e: (harness.ENVIRONMENTS[e][0],
                         dict(harness.ENVIRONMENTS[e][1], **POSIX))
                     for e in ENVS},
           [(appends_go_to_the_end, ENVS)], extra_global=dict(POSIX),
           skip=before_4_22),
]
