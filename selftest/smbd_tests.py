#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Our own tests against the private smbd, driven by smbclient.

Each test takes (smbd, env) and raises AssertionError with the reason; it
runs on every environment, so a module that changes what a user may do
shows up as a failure on its share.
"""
import os
import pwd
import subprocess
import tempfile

import harness
import smb2client
from testlib import EVERY_ENV, put_get_roundtrip, sha256, smbclient

PREFIX = 'smbd'		# of the test names: smbd.<test>/<env>


def put_then_get_returns_same_bytes(smbd, env):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        dst = os.path.join(tmp, 'dst')
        with open(src, 'wb') as f:
            f.write(os.urandom(3 * 1024 * 1024 + 4097))
        rc, out = smbclient(smbd, env, 'put %s roundtrip.bin; '
                            'get roundtrip.bin %s; del roundtrip.bin' %
                            (src, dst))
        assert rc == 0, out
        assert sha256(src) == sha256(dst), 'content differs'


def outsider_is_refused_at_tree_connect(smbd, env):
    rc, out = smbclient(smbd, env, 'ls', user=harness.OUTSIDER)
    assert rc != 0 and 'NT_STATUS_ACCESS_DENIED' in out, out


def wrong_password_is_refused(smbd, env):
    rc, out = smbclient(smbd, env, 'ls', user=harness.USERS[0],
                        password='wrong')
    assert rc != 0 and 'NT_STATUS_LOGON_FAILURE' in out, out


def second_user_cannot_read_private_file(smbd, env):
    owner, other = harness.USERS
    name = 'private-%s.txt' % env
    path = os.path.join(smbd.share_path(env), name)
    with open(path, 'w') as f:
        f.write('secret of %s\n' % owner)
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o600)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rc, out = smbclient(smbd, env, 'get %s %s/x' % (name, tmp),
                                user=other)
            assert rc != 0 and 'NT_STATUS_ACCESS_DENIED' in out, out
            assert not os.path.exists(os.path.join(tmp, 'x')) or \
                os.path.getsize(os.path.join(tmp, 'x')) == 0, \
                'data leaked to the second user'
            rc, out = smbclient(smbd, env, 'get %s %s/y' % (name, tmp),
                                user=owner)
            assert rc == 0, out
    finally:
        os.unlink(path)


def files_are_created_as_the_requesting_user(smbd, env):
    for user in harness.USERS:
        name = 'owned-by-%s' % user
        rc, out = smbclient(smbd, env, 'put /etc/hostname %s' % name,
                            user=user)
        assert rc == 0, out
        path = os.path.join(smbd.share_path(env), name)
        st = os.stat(path)
        os.unlink(path)
        assert st.st_uid == pwd.getpwnam(user).pw_uid, \
            '%s owned by uid %d' % (name, st.st_uid)


def canary_module_loads_by_name(smbd, env):
    rc, out = smbclient(smbd, env, 'ls')
    assert rc == 0, out
    with open(smbd.log, errors='replace') as f:
        log = f.read()
    assert 'asvfs_canary: connected to [canary] interface' in log, \
        'no connect line of the canary in %s' % smbd.log


def concurrent_clients_write_and_read_back_exact_bytes(smbd, env):
    sizes = [0, 1, 64 * 1024 + 1, 8 * 1024 * 1024, 100 * 1024 * 1024]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for size in sizes:
            src = os.path.join(tmp, 'src-%d' % size)
            with open(src, 'wb') as f:
                f.write(os.urandom(size))
            cmds = 'put %s int-%d.bin; get int-%d.bin %s.back' % (
                src, size, size, src)
            procs.append((src, subprocess.Popen(
                ['smbclient', smbd.unc(env), '-p', str(smbd.port), '-mSMB3',
                 '-U', smbd.creds(), '-c', cmds],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                universal_newlines=True)))
        for src, p in procs:
            out = p.communicate(timeout=300)[0]
            assert p.returncode == 0, out
            assert sha256(src) == sha256(src + '.back'), \
                '%s came back different' % os.path.basename(src)
        rc, out = smbclient(smbd, env, 'del int-*.bin')
        assert rc == 0, out


def read_status(client, fid, offset, length):
    try:
        return 'OK', client.read(fid, offset, length)
    except smb2client.SessionError as e:
        return smb2client.status_name(e), b''


def reads_at_and_past_eof(smbd, env):
    data = os.urandom(100000)
    c = smb2client.Client(smbd, env)
    try:
        fid = c.create('eof.bin')
        assert c.write(fid, data, 0) == len(data)
        st, got = read_status(c, fid, 99990, 100)
        assert (st, got) == ('OK', data[99990:]), (st, len(got))
        for offset in (100000, 100001, 1 << 30):
            # impacket turns STATUS_END_OF_FILE into an empty read
            st, got = read_status(c, fid, offset, 10)
            assert st in ('STATUS_END_OF_FILE', 'OK') and got == b'', \
                'read at %d: %s %d bytes' % (offset, st, len(got))
        c.close(fid)
    finally:
        c.logoff()
    os.unlink(os.path.join(smbd.share_path(env), 'eof.bin'))


def write_past_eof_leaves_zeros_before_it(smbd, env):
    """A write far past the end of a file extends it: the gap reads as
    zeros over SMB, and the file on disk has the new size."""
    head, tail, gap = b'h' * 100, os.urandom(5000), 3 * 1024 * 1024
    c = smb2client.Client(smbd, env)
    try:
        fid = c.create('gap.bin')
        assert c.write(fid, head, 0) == len(head)
        assert c.write(fid, tail, gap) == len(tail)
        got = c.read(fid, 0, 65536)
        assert got == head + bytes(65536 - len(head)), \
            'the start of the gap reads %r' % got[100:116]
        got = c.read(fid, gap - 1000, 6000)
        assert got == bytes(1000) + tail, 'around the write: %d bytes, ' \
            'zeros %s' % (len(got), got[:1000] == bytes(1000))
        c.close(fid)
    finally:
        c.logoff()
    path = os.path.join(smbd.share_path(env), 'gap.bin')
    size = os.path.getsize(path)
    os.unlink(path)
    assert size == gap + len(tail), 'on disk: %d bytes' % size


def write_through_completes(smbd, env):
    """Asynchronous writes followed by fsyncs on smbd's event context."""
    before = smbd.counters('async_uring', 'fsync').get('submitted', 0)
    put_get_roundtrip(smbd, env + '_writethrough')
    if 'async_uring' in smbd.envs[env][0]:
        after = smbd.counters('async_uring', 'fsync').get('submitted', 0)
        assert after > before, 'no fsync went through the ring'


def sync_write_through_completes(smbd, env):
    """Synchronous writes: smb_vfs_fsync_sync() runs the fsync on a
    temporary event context, which must still complete."""
    before = smbd.counters('async_uring', 'fsync').get('fallback', 0)
    put_get_roundtrip(smbd, env + '_syncwrite')
    if 'async_uring' in smbd.envs[env][0]:
        after = smbd.counters('async_uring', 'fsync').get('fallback', 0)
        assert after > before, 'no fsync went to the next module from ' \
            'smbd\'s temporary event context'


# On the shared smbd: each test on every environment it serves
SHARED = [
    (put_then_get_returns_same_bytes, EVERY_ENV),
    (outsider_is_refused_at_tree_connect, EVERY_ENV),
    (wrong_password_is_refused, EVERY_ENV),
    (second_user_cannot_read_private_file, EVERY_ENV),
    (files_are_created_as_the_requesting_user, EVERY_ENV),
    (canary_module_loads_by_name, ['canary']),
    (concurrent_clients_write_and_read_back_exact_bytes, EVERY_ENV),
    (reads_at_and_past_eof, EVERY_ENV),
    (write_past_eof_leaves_zeros_before_it, EVERY_ENV),
    (write_through_completes, EVERY_ENV),
    (sync_write_through_completes, EVERY_ENV),
]


# Failures of Samba's own modules that ours exist to fix. They are not
# run (they hang a connection until the client times out) and are
# reported as known failures with the reason.
KNOWN = {
    ('sync_write_through_completes', 'io_uring'):
        "Samba's vfs_io_uring (4.17, unchanged in 4.22) ignores the "
        "temporary event context smb_vfs_fsync_sync() polls and completes "
        "the fsync on smbd's main one: the write hangs until the client "
        "gives up (NT_STATUS_IO_TIMEOUT); async_uring completes it",
}
