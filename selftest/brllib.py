# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte-range lock helpers of the brl tests, the cluster tests and the
lock benchmarks: a local (non-SMB) lock holder, and the grant of a
blocking SMB2 lock after its holder lets go, on one smbd and across the
nodes of a cluster (ctdb_cluster.Cluster).

A grant's latency is returned for the caller to print or tabulate; no
verdict here depends on it.
"""
import fcntl
import os
import struct
import time

import harness
import smb2client
from smb2client import LOCK_EXCLUSIVE, LOCK_FAIL_IMMEDIATELY, LOCK_UNLOCK

F_OFD_SETLK = 37
# "lock spin time" of the brl tests' smbd that tells a wake from smbd's
# poll: its first poll of a blocked request comes this long after the
# request (the most smbd allows); a grant before it can only come from a
# wake
SPIN_MS = 20000
# no verdict may depend on the machine's load: answers and conditions are
# waited for this long (a load that slow would fail everything anyway)
WAIT = harness.WAIT_SECS


# --- a local (non-SMB) lock holder ------------------------------------------

def _flock(ltype, start, length):
    return struct.pack('hhqqi4x', ltype, 0, start, length, 0)


def ofd_lock(fd, ltype, start, length):
    """F_OFD_SETLK; True when granted."""
    try:
        fcntl.fcntl(fd, F_OFD_SETLK, _flock(ltype, start, length))
        return True
    except OSError:
        return False


class Holder:
    """An open file description of this process holding a range."""

    def __init__(self, path, start=0, length=100, ltype=fcntl.F_WRLCK):
        self.fd = os.open(path, os.O_RDWR)
        self.range = (start, length)
        try:
            fcntl.fcntl(self.fd, F_OFD_SETLK, _flock(ltype, start, length))
        except OSError as e:
            os.close(self.fd)
            raise AssertionError('holder refused: %s' % e)
        self.released_at = None

    def release(self):
        # the time first: the grant may arrive before fcntl() returns
        self.released_at = time.monotonic()
        ofd_lock(self.fd, fcntl.F_UNLCK, *self.range)

    def close(self):
        os.close(self.fd)


def local_can_lock(path, start, length, ltype=fcntl.F_WRLCK):
    """Whether another local process could take the range now (a fresh
    description; released again at once)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return ofd_lock(fd, ltype, start, length)
    finally:
        os.close(fd)


# --- SMB clients -------------------------------------------------------------

def new_file(smbd, env, client, name):
    """(handle, path on disk) of a new 4 KiB file opened by client."""
    fid = smb2client.open_shared(client, name, create=True)
    client.write(fid, b'x' * 4096, 0)
    return fid, os.path.join(smbd.share_path(env), name)


def round_trip(client):
    """An echo answered on client's connection: smbd handles a
    connection's requests in order, so every request sent before has had
    its first try (a blocked lock is pending now)."""
    status = smb2client.recv_status(client, smb2client.echo_send(client),
                                    timeout=WAIT)
    assert status == 'STATUS_SUCCESS', 'echo: ' + status


def pending(client, msgid):
    """After an answered echo (all requests sent before have had their
    first try), whether msgid is still unanswered."""
    round_trip(client)
    smb = client.conn.getSMBServer()
    return msgid not in smb._Connection['OutstandingResponses']


def local_file(path):
    """A 4 KiB file every test user may open, made here and not over
    SMB: smbd's delayed write time update (500 ms after a write) changes
    the file's share mode record, which retries a blocked request as a
    wake does."""
    with open(path, 'wb') as f:
        f.write(b'x' * 4096)
    os.chmod(path, 0o666)


# --- grants after the holder lets go -----------------------------------------

def grant_latency_ms(smbd, env, name, hold=0):
    """A blocking SMB2 lock on a range a local process holds until the
    request is blocked, and `hold` seconds more (the benchmark's): the
    milliseconds (from the release, from the request) to the grant.  On
    an smbd with lock spin time SPIN_MS, a grant sooner than that after
    the request cannot come from smbd's poll."""
    path = os.path.join(smbd.share_path(env), name)
    local_file(path)
    c = smb2client.Client(smbd, env)
    try:
        fid = smb2client.open_shared(c, name)
        holder = Holder(path)
        sent = time.monotonic()
        msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
        round_trip(c)
        time.sleep(hold)	# a measurement's hold, never a verdict's
        holder.release()
        status = smb2client.recv_status(c, msgid,
                                        timeout=SPIN_MS / 1000 + WAIT +
                                        hold)
        granted = time.monotonic()
        holder.close()
        assert status == 'STATUS_SUCCESS', status
        c.close(fid)
        return ((granted - holder.released_at) * 1000,
                (granted - sent) * 1000)
    finally:
        c.logoff()


def grant_after_unlock_on_other_node_ms(cluster, env):
    """Node 1 holds a range over SMB; a blocking lock on node 0 waits and
    is granted after the release, and node 1 then cannot take the range.
    The wake-up travels through smbd's cluster-wide watch of the file's
    records in CTDB.  Milliseconds from the unlock request to the
    grant."""
    a = smb2client.Client(cluster.smbds[0], env)
    b = smb2client.Client(cluster.smbds[1], env)
    name = 'brl-smb-%s.bin' % env
    try:
        fb = smb2client.open_shared(b, name, create=True)
        b.write(fb, b'x' * 4096, 0)
        st = smb2client.lock(b, fb, 0, 100, LOCK_EXCLUSIVE |
                             LOCK_FAIL_IMMEDIATELY, timeout=WAIT)
        assert st == 'STATUS_SUCCESS', 'holder on node 1: ' + st
        fa = smb2client.open_shared(a, name)
        st = smb2client.lock(a, fa, 0, 100, LOCK_EXCLUSIVE |
                             LOCK_FAIL_IMMEDIATELY, timeout=WAIT)
        assert st == 'STATUS_LOCK_NOT_GRANTED', \
            'node 0 got a range node 1 holds: ' + st
        msgid = smb2client.lock_send(a, fa, 0, 100, LOCK_EXCLUSIVE)
        assert pending(a, msgid), 'blocking lock on node 0 answered ' \
            'while node 1 holds the range'
        released = time.monotonic()
        st = smb2client.lock(b, fb, 0, 100, LOCK_UNLOCK, timeout=WAIT)
        assert st == 'STATUS_SUCCESS', 'unlock on node 1: ' + st
        st = smb2client.recv_status(a, msgid, timeout=WAIT)
        ms = (time.monotonic() - released) * 1000
        assert st == 'STATUS_SUCCESS', 'blocking lock on node 0: ' + st
        st = smb2client.lock(b, fb, 0, 100, LOCK_EXCLUSIVE |
                             LOCK_FAIL_IMMEDIATELY, timeout=WAIT)
        assert st == 'STATUS_LOCK_NOT_GRANTED', \
            'node 1 got the range granted to node 0: ' + st
        a.close(fa)
        b.close(fb)
        return ms
    finally:
        a.logoff()
        b.logoff()


def grant_after_local_release_ms(cluster, env):
    """A local process (an OFD lock, as another node's kernel client of a
    cluster file system would hold it) holds a range; a blocking lock on
    node 2 is granted after the release (async_brl wakes it, the default
    VFS polls) and is held in the kernel.  Milliseconds from the release
    to the grant."""
    smbd = cluster.smbds[2]
    name = 'brl-local-%s.bin' % env
    path = os.path.join(smbd.share_path(env), name)
    local_file(path)
    c = smb2client.Client(smbd, env)
    try:
        fid = smb2client.open_shared(c, name)
        holder = Holder(path)
        try:
            msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
            assert pending(c, msgid), 'answered while a local process ' \
                'holds the range'
            holder.release()
            st = smb2client.recv_status(c, msgid, timeout=WAIT)
            ms = (time.monotonic() - holder.released_at) * 1000
        finally:
            holder.close()
        assert st == 'STATUS_SUCCESS', st
        assert not local_can_lock(path, 0, 100), \
            'granted range not held in the kernel'
        c.close(fid)
        return ms
    finally:
        c.logoff()
