#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Requests in flight when their client, session, tree or server goes away.

On slowfs, every module's asynchronous requests are kept in flight (slow
reads, writes, creates and the xattr reads of listings) while the client
cancels them, disconnects the tree, logs off, drops the connection (the
connection's smbd exits) or the server is stopped.  These are the paths
where a request's state can outlive what it points to, so they are what
the sanitizers must see (make test-sanitize runs this file).  Each
teardown must leave smbd serving the share and, when the connection goes
away, let its smbd process exit; the default VFS is run the same way.
"""
import grp
import itertools
import os
import pwd

import harness
import smb2client
from smb2client import FILE_CREATE, FILE_OPEN, RawConn
from testlib import Server

PREFIX = 'inflight'		# of the test names: inflight.<test>/<env>

U1 = harness.USERS[0]

ENVS = ['default', 'async_uring', 'async_xattr', 'async_dosattr',
        'async_dosattr_prefetch', 'async_open', 'async_open_timeout',
        'full_stack']
ENV_DEFS = dict(harness.ENVIRONMENTS, **{
    # creates that outlive async_open:timeout are left to the kernel and
    # freed when they complete: the engine's orphans
    'async_open_timeout': ('async_open', {'async_open:mode': 'all',
                                          'async_open:timeout': '500'}),
})

# Every delayed path contains this, and nothing else does.
SLOW = 'slow'
DELAY_MS = 1000
CHUNK = 65536
LISTED_FILES = 64
FILE_DIRECTORY_FILE = 0x1
DIR_ACCESS = 0x81		# FILE_READ_DATA | FILE_READ_ATTRIBUTES
# names of the files created in flight, new in every batch
CREATED = itertools.count()


def prepare_shares(smbd, storage):
    for env in ENVS:
        prepare_share(smbd, env, storage)


def prepare_share(smbd, env, storage):
    """Files on the backing dir: one to read, one to write, a directory
    to list; one undelayed file for the health check."""
    share = storage.backing(smbd, env, '')
    for name, size in (('slow-r.bin', 4 * CHUNK), ('fine.bin', CHUNK)):
        with open(os.path.join(share, name), 'wb') as f:
            f.write(os.urandom(size))
    d = os.path.join(share, 'slowdir')
    os.makedirs(d, exist_ok=True)
    for i in range(LISTED_FILES):
        open(os.path.join(d, 'f%03d' % i), 'w').close()
    uid = pwd.getpwnam(U1).pw_uid
    gid = grp.getgrnam(harness.GROUP).gr_gid
    for root, dirs, files in os.walk(share):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


class InFlight:
    """One connection with handles opened while storage is fast, and the
    batch of slow requests sent on it."""

    def __init__(self, smbd, env):
        self.rc = RawConn(smbd, env)
        self.rc.login(U1)
        self.fids = {}
        for name in ('slow-r.bin', 'slow-w.bin'):
            disp = FILE_OPEN if name.endswith('-r.bin') else \
                smb2client.FILE_OVERWRITE_IF
            status, _, fid = self.rc.create(U1, name, disp)
            assert fid is not None, 'open %s: 0x%x' % (name, status)
            self.fids[name] = fid
        self.dirs = []
        for _ in range(2):
            status, _, fid = self.rc.create(
                U1, 'slowdir', FILE_OPEN, access=DIR_ACCESS,
                options=FILE_DIRECTORY_FILE)
            assert fid is not None, 'open slowdir: 0x%x' % status
            self.dirs.append(fid)
        self.mids = []

    def send_batch(self):
        """Reads, writes, listings and creates that each wait on slowfs."""
        rc = self.rc
        for i in range(4):
            self.mids.append(rc.send_read(U1, self.fids['slow-r.bin'],
                                          i * CHUNK, CHUNK))
            self.mids.append(rc.send_write(U1, self.fids['slow-w.bin'],
                                           i * CHUNK, os.urandom(CHUNK)))
        for fid in self.dirs:
            self.mids.append(rc.send_query_directory(U1, fid))
        for _ in range(2):
            self.mids.append(rc.send_create(U1, 'slowc-%d' % next(CREATED),
                                            FILE_CREATE))
        return self.mids


def slow(storage):
    storage.set('read.delay_ms = %d' % DELAY_MS,
                'write.delay_ms = %d' % DELAY_MS,
                'create.delay_ms = %d' % DELAY_MS,
                'getxattr.delay_ms = 20',
                'path_filter = ' + SLOW)


def healthy(smbd, env):
    """A new connection reads an undelayed file."""
    c = smb2client.Client(smbd, env)
    try:
        fid = c.open('fine.bin')
        assert len(c.read(fid, 0, CHUNK)) == CHUNK, 'short read'
        c.close(fid)
    finally:
        c.logoff()


def cancel_of_requests_in_flight(smbd, env, storage):
    conn = InFlight(smbd, env)
    slow(storage)
    try:
        mids = conn.send_batch()
        for mid in mids:
            conn.rc.send_cancel(U1, mid)
        for mid in mids:
            conn.rc.wait(mid, timeout=120)
        status, _, _ = conn.rc.wait(conn.rc.send_echo(U1), timeout=120)
        assert status == 0, 'echo after the cancels: 0x%x' % status
    finally:
        storage.set()
        conn.rc.disconnect()
    healthy(smbd, env)


def teardown_with_requests_in_flight(smbd, env, storage, send):
    conn = InFlight(smbd, env)
    slow(storage)
    try:
        conn.send_batch()
        status, _, _ = conn.rc.wait(send(conn.rc), timeout=120)
        assert status == 0, 'answered 0x%x' % status
    finally:
        storage.set()
        conn.rc.disconnect()
    healthy(smbd, env)


def tree_disconnect_with_requests_in_flight(smbd, env, storage):
    teardown_with_requests_in_flight(
        smbd, env, storage, lambda rc: rc.send_tree_disconnect(U1))


def logoff_with_requests_in_flight(smbd, env, storage):
    teardown_with_requests_in_flight(
        smbd, env, storage, lambda rc: rc.send_logoff(U1))


def connection_drop_with_requests_in_flight(smbd, env, storage):
    """The client goes away: the connection's smbd exits with its
    requests still out."""
    before = smbd.children()
    conn = InFlight(smbd, env)
    mine = smbd.children() - before
    slow(storage)
    try:
        conn.send_batch()
        # the last request has reached smbd once its answer or interim
        # answer is back: all of the batch is in flight or done
        conn.rc.wait(conn.rc.send_echo(U1), timeout=120)
        conn.rc.disconnect()
        gone = harness.wait_until(lambda: not (smbd.children() & mine), 120)
    finally:
        storage.set()
    assert gone, 'the connection\'s smbd did not exit'
    healthy(smbd, env)


def server_stop_with_requests_in_flight(smbd, env, storage):
    """smbd is stopped while a connection to every share has requests in
    flight: every process of smbd exits."""
    conns = [InFlight(smbd, env) for env in ENVS]
    slow(storage)
    try:
        for conn in conns:
            conn.send_batch()
        for conn in conns:
            conn.rc.wait(conn.rc.send_echo(U1), timeout=120)
        smbd.stop()
        gone = harness.wait_until(lambda: not smbd.group_members(), 120)
    finally:
        storage.set()
        for conn in conns:
            conn.rc.disconnect()
    assert gone, 'smbd processes left: %s' % smbd.group_members()


TESTS = [
    (cancel_of_requests_in_flight, ENVS),
    (tree_disconnect_with_requests_in_flight, ENVS),
    (logoff_with_requests_in_flight, ENVS),
    (connection_drop_with_requests_in_flight, ENVS),
    (server_stop_with_requests_in_flight, [None]),	# the last: it stops smbd
]
SERVERS = [
    Server('inflight', {e: ENV_DEFS[e] for e in ENVS}, TESTS,
           storage='slowfs', setup=prepare_shares),
]
