#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whose identity the asynchronous paths use, on an smbd of their own.

- A write runs as the user who asked for it, also when smbd is someone
  else by the time the ring is submitted: smbd becomes root every 50th
  SMB2 request to check its log size ('max log size' > 0).  A write by a
  user clears the file's set-id bits; one run as root keeps them.
- Users in more groups than a fixed buffer holds (300 and 2,000) keep
  every group on every path, and are listed and refused exactly as on
  the default environment.
"""
import grp
import os
import pwd
import re
import stat
import subprocess
import tempfile

import harness
import smb2client
from testlib import Server, smbclient

PREFIX = 'identity'		# of the test names: identity.<test>/<env>

# user -> number of supplementary groups of its own
MANY_GROUP_USERS = {'asvfs_g300': 300, 'asvfs_g2000': 2000}
MANY_GROUP_FMT = 'asvfs_mg%d'
MANY_GROUP_GID = 71000
# the only group that may read the group-only file: the 2,000's last
LAST_GROUP = MANY_GROUP_FMT % 1999

ENVS = ['default', 'async_uring', 'async_xattr', 'async_dosattr',
        'async_open', 'full_stack']
WRITES = 400		# eight of smbd's log size checks
PIPELINED = 8


def ensure_many_groups():
    """2,000 groups in one write of /etc/group (groupadd rewrites the
    file each time: minutes), then the users.  Idempotent."""
    missing = []
    for i in range(max(MANY_GROUP_USERS.values())):
        try:
            grp.getgrnam(MANY_GROUP_FMT % i)
        except KeyError:
            members = [u for u, n in MANY_GROUP_USERS.items() if i < n]
            missing.append('%s:x:%d:%s\n' % (MANY_GROUP_FMT % i,
                                             MANY_GROUP_GID + i,
                                             ','.join(members)))
    if missing:
        with open('/etc/group', 'a') as f:
            f.writelines(missing)
        if os.path.exists('/etc/gshadow'):
            with open('/etc/gshadow', 'a') as f:
                f.writelines(re.sub(r':x:\d+:', ':!::', ln)
                             for ln in missing)
    for user in MANY_GROUP_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            harness.run(['useradd', '-M', '-N', '-s', '/usr/sbin/nologin',
                         '-G', harness.GROUP, user])


def add_smb_users(smbd):
    for user in MANY_GROUP_USERS:
        subprocess.run(harness.runtime_cmd(['smbpasswd', '-c', smbd.conf,
                                            '-s', '-a', user],
                                           binds=[smbd.dir]),
                       input='%s\n%s\n' % (harness.PASSWORD,
                                           harness.PASSWORD),
                       universal_newlines=True, check=True,
                       stdout=subprocess.DEVNULL)


def setid_bit_is_cleared_by_every_write(smbd, env):
    """Writes in flight together, as a busy client sends them: smbd
    reads the next request, and may become root for its log size check,
    before the ring is submitted."""
    owner, writer = harness.USERS[1], harness.USERS[0]
    path = os.path.join(smbd.share_path(env), 'setid.bin')
    with open(path, 'wb'):
        pass
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o4777)
    kept = []
    c = smb2client.RawConn(smbd, env)
    try:
        c.login(writer)
        status, _, fid = c.create(writer, 'setid.bin',
                                  smb2client.FILE_OPEN)
        assert status == 0, 'open: 0x%x' % status
        for batch in range(WRITES // PIPELINED):
            mids = [c.send_write(writer, fid, batch * PIPELINED + i,
                                 b'x')
                    for i in range(PIPELINED)]
            for mid in mids:
                status, _, _ = c.wait(mid)
                assert status == 0, 'write: 0x%x' % status
            if os.stat(path).st_mode & stat.S_ISUID:
                kept.append(batch)
                os.chmod(path, 0o4777)
        c.close(writer, fid)
    finally:
        c.disconnect()
        os.unlink(path)
    assert not kept, 'set-uid kept by %d of %d batches of %d writes' % (
        len(kept), WRITES // PIPELINED, PIPELINED)


def listed_attributes(smbd, env, user, pattern):
    rc, out = smbclient(smbd, env, 'ls %s' % pattern, user=user)
    assert rc == 0, '%s: %s' % (user, out)
    return sorted(re.findall(r'^\s+(\S+)\s+([A-Z]+)\s+\d+', out, re.M))


def many_group_users_list_dos_attributes(smbd, env):
    names = ['attrs-%d' % i for i in range(3)]
    cmds = ';'.join('put /etc/hostname %s; setmode %s +ahs' % (n, n)
                    for n in names)
    rc, out = smbclient(smbd, env, cmds)
    assert rc == 0, out
    try:
        want = listed_attributes(smbd, env, harness.USERS[0], 'attrs-*')
        assert want and all('AHS' in a for _, a in want), want
        for user in MANY_GROUP_USERS:
            got = listed_attributes(smbd, env, user, 'attrs-*')
            assert got == want, '%s lists %s, not %s' % (user, got, want)
    finally:
        for n in names:
            os.unlink(os.path.join(smbd.share_path(env), n))


def only_the_last_group_reads(smbd, env):
    path = os.path.join(smbd.share_path(env), 'group-only.txt')
    with open(path, 'w') as f:
        f.write('for %s\n' % LAST_GROUP)
    os.chown(path, 0, grp.getgrnam(LAST_GROUP).gr_gid)
    os.chmod(path, 0o040)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            got = os.path.join(tmp, 'got')
            rc, out = smbclient(smbd, env, 'get group-only.txt %s' % got,
                                user='asvfs_g2000')
            assert rc == 0, 'member of %s refused: %s' % (LAST_GROUP, out)
            with open(got) as f:
                assert f.read() == 'for %s\n' % LAST_GROUP
            rc, out = smbclient(smbd, env, 'get group-only.txt %s.2' % got,
                                user='asvfs_g300')
            assert rc != 0 and 'NT_STATUS_ACCESS_DENIED' in out, out
    finally:
        os.unlink(path)


def setup(smbd, storage):
    add_smb_users(smbd)


VALID_USERS = ' '.join(harness.USERS + list(MANY_GROUP_USERS))
SERVERS = [
    # smbd checks its log size (as root) only after 100 messages: the
    # smb2 class at level 10 logs several per request
    Server('identity', {e: (harness.ENVIRONMENTS[e][0],
                            dict(harness.ENVIRONMENTS[e][1],
                                 **{'valid users': VALID_USERS}))
                        for e in ENVS}, [
        (setid_bit_is_cleared_by_every_write, ENVS),
        (many_group_users_list_dos_attributes, ENVS),
        (only_the_last_group_reads, ENVS),
    ], prepare=ensure_many_groups, setup=setup, log_level='1 smb2:10',
        extra_global={'max log size': '100000'}),
]
