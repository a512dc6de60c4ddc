#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Opens through io_uring on slowfs, decided with the user's real
credentials (issue 24, item 2).

The share root is root:asvfs_grp 3770, so the test user reaches it only
through a supplementary group.  io_uring runs an open on FUSE in a
kernel worker (io-wq) that acts with the credentials of the request's
personality; the worker's own credentials, the ones /proc/<tid>/status
shows, are those smbd had when the worker was made.  slowfs used to take
the groups from there, so an open run by a worker made while smbd was
another user was refused inside slowfs, and async_open quietly reran it
synchronously.  Here the workers are made while smbd is a user outside
the group (an earlier session on the same connection), then the
group's user creates and opens files on the group-only share: all
succeed, all asynchronously, with no synchronous rerun.
"""
import grp
import os
import pwd
import stat
import harness
import smb2client
from testlib import Server, share_counters

PREFIX = 'slowfs_identity'	# of the test names: slowfs_identity.<test>/<env>

U1 = harness.USERS[0]
OUTSIDER = harness.OUTSIDER
COUNT = 16
# long enough that every open of a burst is in a worker at once
DELAY_MS = 300
ENVS = {
    'async_open': harness.ENVIRONMENTS['async_open'],
    # where the outsider makes io_uring's workers: its own share
    'async_open_outsider': ('async_open', {'async_open:mode': 'all',
                                           'valid users': OUTSIDER}),
}


def burst(rc, user, names, disposition):
    """Opens of names sent at once on user's session: their statuses."""
    mids = [rc.send_create(user, n, disposition) for n in names]
    got, fids = [], []
    for mid in mids:
        status, _, fid = smb2client.create_result(
            *rc.wait(mid, timeout=harness.WAIT_SECS)[:2])
        got.append(status)
        if fid is not None:
            fids.append(fid)
    for mid in [rc.send_close(user, fid) for fid in fids]:
        rc.wait(mid, timeout=harness.WAIT_SECS)
    return got


def group_only_share_root_opens_through_io_uring(smbd, env, storage):
    root = storage.backing(smbd, env, '.')
    st = os.stat(root)
    gid = grp.getgrnam(harness.GROUP).gr_gid
    assert st.st_uid == 0 and st.st_gid == gid and \
        stat.S_IMODE(st.st_mode) & 0o007 == 0, \
        'share root not group-only: %o' % st.st_mode
    assert pwd.getpwnam(U1).pw_gid != gid, \
        '%s has %s as primary group' % (U1, harness.GROUP)
    assert OUTSIDER not in grp.getgrnam(harness.GROUP).gr_mem
    pw = pwd.getpwnam(U1)
    for i in range(COUNT):
        path = storage.backing(smbd, env, 'slowid-o%d' % i)
        with open(path, 'wb') as f:
            f.write(b'x' * 100)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        d = storage.backing(smbd, env, 'slowid-d%d' % i)
        os.makedirs(d)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chmod(storage.backing(smbd, 'async_open_outsider', '.'), 0o1777)
    storage.set('open.delay_ms = %d' % DELAY_MS,
                'create.delay_ms = %d' % DELAY_MS, 'path_filter = slowid-')
    rc = smb2client.RawConn(smbd)
    try:
        rc.login(OUTSIDER, share='async_open_outsider')
        for _ in range(4):		# credits for the bursts
            rc.wait(rc.send_echo(OUTSIDER))
        got = burst(rc, OUTSIDER, ['slowid-w%d' % i for i in range(COUNT)],
                    smb2client.FILE_CREATE)
        assert set(got) == {0}, 'outsider: %s' % [hex(s) for s in got]
        # the workers are idle now (for some seconds): the group's user
        # gets them
        rc.login(U1, share=env)
        got = burst(rc, U1, ['slowid-d%d\\new' % i for i in range(COUNT)],
                    smb2client.FILE_CREATE)
        got += burst(rc, U1, ['slowid-o%d' % i for i in range(COUNT)],
                     smb2client.FILE_OPEN)
        assert set(got) == {0}, '%s: %s' % (U1, [hex(s) for s in got])
        rc.wait(rc.send_tree_disconnect(U1))	# logs the counters
    finally:
        storage.set()
        rc.disconnect()
    c = share_counters(smbd, env, 'async_open', 'openat')
    assert c.get('creates', 0) >= COUNT and \
        c.get('existing', 0) >= COUNT, 'not asynchronous: %s' % c
    assert c.get('sync_again', 0) == 0 and c.get('failed', 0) == 0 and \
        c.get('threads', 0) == 0, \
        'io_uring opens failed, or went to threads: %s' % c
    assert c.get('handed', 0) >= 2 * COUNT, 'not handed over: %s' % c


SERVERS = [
    Server('slowfs_identity', ENVS,
           [(group_only_share_root_opens_through_io_uring, ['async_open'])],
           storage='slowfs', fuse_options=',max_threads=256'),
]
