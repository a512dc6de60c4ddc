#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte-range locks against holders outside smbd: the default VFS and
async_brl side by side.

A local process (this test process, through an OFD lock on its own open
file description) holds a range; SMB clients ask for it.  With "posix
locking = yes" the default smbd polls for such a holder (200 ms, 400 ms,
... up to 2 s between tries); async_brl wakes the waiting request when the
holder lets go.  Everything but the latency must be the same in both.
"""
import fcntl
import os
import re
import subprocess
import struct
import threading
import time

import harness
import smb2client
from brllib import (SPIN_MS, WAIT, Holder, grant_latency_ms, local_can_lock,
                    new_file, round_trip)
from smb2client import (LOCK_EXCLUSIVE, LOCK_FAIL_IMMEDIATELY, LOCK_SHARED,
                        LOCK_UNLOCK)
from testlib import Server

PREFIX = 'brl'		# of the test names: brl.<test>/<env>

ENVS = ['default', 'async_brl']
# where every lock behaves the same, whatever the latency
SEMANTIC_ENVS = ENVS + ['async_brl_decide', 'async_brl_proclocks',
                        'default_proclocks']
OPTION_ENVS = {
    'async_brl_badopts': ('async_brl', {'async_brl:wake': 'maybe',
                                        'async_brl:max waits': 'lots',
                                        'async_brl:decision': 'later',
                                        'async_brl:decision timeout':
                                        '0'}),
    'async_brl_nowake': ('async_brl', {'async_brl:wake': 'no'}),
    'async_brl_onewait': ('async_brl', {'async_brl:max waits': '1'}),
    # process-associated locks: closing any fd of the file drops all of
    # the process's locks on it
    'async_brl_proclocks': ('async_brl',
                            {'smbd force process locks': 'yes'}),
    'default_proclocks': ('', {'smbd force process locks': 'yes'}),
    'async_uring_proclocks': ('async_uring',
                              {'smbd force process locks': 'yes'}),
    'full_stack_proclocks': (harness.ENVIRONMENTS['full_stack'][0],
                             {'smbd async dosmode': 'yes',
                              'smbd force process locks': 'yes'}),
}
# reads, writes and flushes go through the data path of these
DATA_PATH_ENVS = ['default_proclocks', 'async_uring_proclocks',
                  'full_stack_proclocks']
THREAD = 'asvfs-lockwait'
# envs where a blocked request gets a lock-waiting thread
THREAD_ENVS = ('async_brl', 'async_brl_decide')
# A wake grants within moments of the release, smbd's poll SPIN_MS (the
# "lock spin time" of the brl-wake smbd, brllib) after the request: half
# of SPIN_MS tells them apart with seconds to spare either way (and a
# retry smbd makes when the file's share mode record changes for another
# reason, seen at 19.9 s, is not a wake either).
WOKEN_MS = SPIN_MS / 2


# --- helpers -----------------------------------------------------------------

def waiting_threads(smbd):
    """Lock-waiting threads in all of smbd's children."""
    n = 0
    for pid in smbd.children():
        try:
            tasks = os.listdir('/proc/%s/task' % pid)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open('/proc/%s/task/%s/comm' % (pid, tid)) as f:
                    if f.read().strip() == THREAD:
                        n += 1
            except OSError:
                pass
    return n


def thread_report(smbd):
    """Where the lock-waiting threads are, for failure messages."""
    out = []
    for pid in smbd.children():
        try:
            tasks = os.listdir('/proc/%s/task' % pid)
        except OSError:
            continue
        for tid in tasks:
            base = '/proc/%s/task/%s/' % (pid, tid)
            try:
                with open(base + 'comm') as f:
                    if f.read().strip() != THREAD:
                        continue
                with open(base + 'wchan') as f:
                    wchan = f.read().strip()
                with open(base + 'status') as f:
                    sig = [ln.replace('\t', '') for ln in f.read().split('\n')
                           if ln.startswith(('State', 'SigPnd', 'ShdPnd',
                                             'SigBlk', 'SigCgt'))]
            except OSError:
                continue
            out.append('%s/%s %s %s' % (pid, tid, wchan, ' '.join(sig)))
    return '; '.join(out)


def wait_for(cond, timeout=WAIT):
    return harness.wait_until(cond, timeout, 0.01)


def wait_pending(smbd, env, client, threads=1):
    """Until the lock requests sent on client are blocked: answered
    echo, and in the envs that wait on a thread, the threads there."""
    round_trip(client)
    if env in THREAD_ENVS:
        assert wait_for(lambda: waiting_threads(smbd) == threads), \
            'no waiting thread: %d' % waiting_threads(smbd)


def answered_first(client, first, other):
    """Receives the answer to first; whether the answer to other had
    come before it (impacket keeps answers read for another id)."""
    status = smb2client.recv_status(client, first, timeout=WAIT)
    assert status == 'STATUS_SUCCESS', status
    smb = client.conn.getSMBServer()
    return other in smb._Connection['OutstandingResponses']


# --- tests -------------------------------------------------------------------

def blocking_lock_granted_soon_after_local_holder_releases(smbd, env):
    """The release wakes the request: granted before smbd's first poll
    (SPIN_MS after the request) could have granted it.  The latency is
    printed, not judged: it depends on the machine's load."""
    runs = [grant_latency_ms(smbd, 'async_brl', 'lat%d.bin' % i)
            for i in range(3)]
    print('    brl: ms from release to grant, async_brl: %s' %
          ' '.join('%.1f' % r[0] for r in runs), flush=True)
    polled = [r[1] for r in runs if r[1] >= WOKEN_MS]
    assert not polled, 'granted by the poll, %s ms after the request' % \
        polled
    assert wait_for(lambda: waiting_threads(smbd) == 0), \
        'a waiting thread was left'


def non_blocking_lock_on_held_range_fails_at_once(smbd, env):
    """Refused while the holder still holds (so without waiting for it),
    and with decision = async by the thread's fcntl(), not by the
    decision timeout (the timer is the only other way to an answer)."""
    c = smb2client.Client(smbd, env)
    try:
        fid, path = new_file(smbd, env, c, 'nb.bin')
        holder = Holder(path, 10, 10)
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            status = smb2client.lock(c, fid, 0, 100,
                                     LOCK_EXCLUSIVE | LOCK_FAIL_IMMEDIATELY,
                                     timeout=WAIT)
            times.append((time.monotonic() - t0) * 1000)
            assert status == 'STATUS_LOCK_NOT_GRANTED', status
        assert not smbd.log_lines(r'no lock decision on nb\.bin within'), \
            'refused by the decision timeout, not by the decision'
        # shared against a shared holder is granted
        holder.close()
        holder = Holder(path, 10, 10, fcntl.F_RDLCK)
        status = smb2client.lock(c, fid, 0, 100,
                                 LOCK_SHARED | LOCK_FAIL_IMMEDIATELY)
        assert status == 'STATUS_SUCCESS', 'shared: ' + status
        holder.close()
        print('    brl: non-blocking refusal ms, %s: %s' %
              (env, ' '.join('%.1f' % x for x in times)), flush=True)
        assert wait_for(lambda: waiting_threads(smbd) == 0), \
            'a non-blocking request left a waiting thread: ' + \
            thread_report(smbd)
        c.close(fid)
    finally:
        c.logoff()


def cancel_during_wait_ends_the_wait(smbd, env):
    c = smb2client.Client(smbd, env)
    try:
        fid, path = new_file(smbd, env, c, 'cancel.bin')
        holder = Holder(path)
        msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
        wait_pending(smbd, env, c)
        smb2client.cancel(c, msgid)
        status = smb2client.recv_status(c, msgid, timeout=WAIT)
        assert status == 'STATUS_CANCELLED', status
        assert wait_for(lambda: waiting_threads(smbd) == 0), \
            'the waiting thread outlived the cancel: ' + \
            thread_report(smbd)
        holder.release()
        holder.close()
        # nothing of the cancelled request stayed locked
        assert local_can_lock(path, 0, 100), 'range still locked'
        # and the handle still locks normally
        status = smb2client.lock(c, fid, 0, 100, LOCK_EXCLUSIVE)
        assert status == 'STATUS_SUCCESS', status
        c.close(fid)
        assert local_can_lock(path, 0, 100), 'locked after close'
    finally:
        c.logoff()


def close_during_wait_ends_the_wait(smbd, env):
    c = smb2client.Client(smbd, env)
    try:
        fid, path = new_file(smbd, env, c, 'close.bin')
        holder = Holder(path)
        msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
        wait_pending(smbd, env, c)
        close_id = smb2client.close_send(c, fid)
        status = smb2client.recv_status(c, msgid, timeout=WAIT)
        assert status in ('STATUS_RANGE_NOT_LOCKED', 'STATUS_CANCELLED'), \
            status
        status = smb2client.recv_status(c, close_id, timeout=WAIT)
        assert status == 'STATUS_SUCCESS', 'close: ' + status
        assert wait_for(lambda: waiting_threads(smbd) == 0), \
            'the waiting thread outlived the close'
        # only the holder's lock is left
        assert not local_can_lock(path, 50, 1), 'holder lost its lock'
        holder.release()
        holder.close()
        assert local_can_lock(path, 0, 100), 'range locked after close'
    finally:
        c.logoff()


def disconnect_during_wait_ends_the_wait(smbd, env):
    c = smb2client.Client(smbd, env)
    fid, path = new_file(smbd, env, c, 'disc.bin')
    holder = Holder(path)
    smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
    wait_pending(smbd, env, c)
    c.conn.getSMBServer()._NetBIOSSession.close()   # the TCP connection
    assert wait_for(lambda: waiting_threads(smbd) == 0), \
        'the waiting thread outlived the connection'
    holder.release()
    holder.close()
    assert wait_for(lambda: local_can_lock(path, 0, 100)), \
        'range locked after disconnect'


def two_clients_and_a_local_holder_lose_no_lock(smbd, env):
    # two connections, so two smbd processes
    a = smb2client.Client(smbd, env)
    b = smb2client.Client(smbd, env)
    try:
        fid_a, path = new_file(smbd, env, a, 'two.bin')
        fid_b = smb2client.open_shared(b, 'two.bin')
        holder = Holder(path)
        id_a = smb2client.lock_send(a, fid_a, 0, 100, LOCK_EXCLUSIVE)
        id_b = smb2client.lock_send(b, fid_b, 0, 100, LOCK_EXCLUSIVE)
        # both blocked on the holder (a thread in each smbd process)
        round_trip(a)
        wait_pending(smbd, env, b, threads=2)
        holder.release()
        holder.close()
        # exactly one of them gets it, the other keeps waiting
        results = {}

        def get(name, client, msgid):
            results[name] = smb2client.recv_status(
                client, msgid, timeout=2 * WAIT)
        ta = threading.Thread(target=get, args=('a', a, id_a))
        tb = threading.Thread(target=get, args=('b', b, id_b))
        ta.start()
        tb.start()
        # Generous bounds: Samba 4.17's dbwrap_watch alerts only the
        # first waiter of the file's record, and a g_lock waiter queued
        # behind a lock request's watch (share_mode_wakeup_waiters() of
        # one process while the other retries) is only woken by g_lock's
        # 5-10 s fallback (seen in development runs with two waiters).
        # No lock is lost, and the test checks that.
        assert wait_for(lambda: len(results) == 1), \
            'nobody was granted: %s' % results
        # a window to catch a wrong second grant in, up to the unlock
        # (it only catches; no load can make a right run fail here)
        time.sleep(0.3)
        assert len(results) == 1, 'both granted: %s' % results
        winner = list(results)[0]
        assert results[winner] == 'STATUS_SUCCESS', results
        # while an SMB client holds it, no local process gets it
        assert not local_can_lock(path, 0, 100), 'local took a held range'
        wc, wf = (a, fid_a) if winner == 'a' else (b, fid_b)
        assert len(results) == 1, 'both granted: %s' % results
        assert smb2client.lock(wc, wf, 0, 100,
                               LOCK_UNLOCK) == 'STATUS_SUCCESS'
        t0 = time.monotonic()
        assert wait_for(lambda: len(results) == 2), \
            'the second waiter was never granted: %s' % results
        ms = (time.monotonic() - t0) * 1000
        if ms > 1000:
            print('    brl: two clients, %s: second grant %.0f ms after '
                  'the unlock (Samba 4.17 g_lock fallback)' % (env, ms),
                  flush=True)
        ta.join()
        tb.join()
        assert set(results.values()) == {'STATUS_SUCCESS'}, results
        loser = [x for x in results if x != winner][0]
        lc, lf = (a, fid_a) if loser == 'a' else (b, fid_b)
        assert not local_can_lock(path, 0, 100), 'local took a held range'
        assert smb2client.lock(lc, lf, 0, 100,
                               LOCK_UNLOCK) == 'STATUS_SUCCESS'
        assert local_can_lock(path, 0, 100), 'locked after both unlocked'
        a.close(fid_a)
        b.close(fid_b)
        assert wait_for(lambda: waiting_threads(smbd) == 0)
    finally:
        a.logoff()
        b.logoff()


def local_process_cannot_take_a_granted_range(smbd, env):
    c = smb2client.Client(smbd, env)
    try:
        fid, path = new_file(smbd, env, c, 'granted.bin')
        for flag, ltype in ((LOCK_EXCLUSIVE, fcntl.F_RDLCK),
                            (LOCK_SHARED, fcntl.F_WRLCK)):
            status = smb2client.lock(c, fid, 100, 50,
                                     flag | LOCK_FAIL_IMMEDIATELY)
            assert status == 'STATUS_SUCCESS', status
            assert not local_can_lock(path, 120, 1, ltype), \
                'local process took a range an SMB client holds'
            assert local_can_lock(path, 0, 100), 'neighbour range locked'
            assert smb2client.lock(c, fid, 100, 50,
                                   LOCK_UNLOCK) == 'STATUS_SUCCESS'
            assert local_can_lock(path, 120, 1, fcntl.F_WRLCK), \
                'still locked after unlock'
        # a close drops what the handle held
        status = smb2client.lock(c, fid, 100, 50, LOCK_EXCLUSIVE)
        assert status == 'STATUS_SUCCESS', status
        c.close(fid)
        assert local_can_lock(path, 100, 50), 'still locked after close'
    finally:
        c.logoff()


def reads_and_writes_keep_the_locks(smbd, env):
    """With process-associated locks, a close(2) of any descriptor of
    the file drops all of smbd's locks on it: I/O through the handle
    (smbd's asynchronous reads and writes, and a flush) must leave the
    range locked against local processes."""
    c = smb2client.Client(smbd, env)
    try:
        fid, path = new_file(smbd, env, c, 'iolock.bin')
        status = smb2client.lock(c, fid, 100, 50,
                                 LOCK_EXCLUSIVE | LOCK_FAIL_IMMEDIATELY)
        assert status == 'STATUS_SUCCESS', status
        for i in range(4):
            c.write(fid, bytes([i]) * 65536, 4096)
            assert c.read(fid, 4096, 65536) == bytes([i]) * 65536
        c.conn.getSMBServer().flush(c.tid, fid)
        assert not local_can_lock(path, 120, 1), \
            'reads and writes dropped the lock of the handle'
        assert local_can_lock(path, 0, 100), 'neighbour range locked'
        c.close(fid)
    finally:
        c.logoff()


def second_user_cannot_lock_a_private_file(smbd, env):
    """Locks need a handle, and the handle needs access: the module adds
    no way around open's check."""
    a = smb2client.Client(smbd, env)
    b = smb2client.Client(smbd, env, user=harness.USERS[1])
    try:
        fid, path = new_file(smbd, env, a, 'private.bin')
        a.close(fid)
        os.chmod(path, 0o600)
        try:
            b.open('private.bin', write=True)
            raise AssertionError('second user opened a private file')
        except smb2client.SessionError as e:
            assert 'ACCESS_DENIED' in smb2client.status_name(e), \
                smb2client.status_name(e)
    finally:
        a.logoff()
        b.logoff()


def module_counted_waits_and_wakeups(smbd, env):
    """Counted at disconnect."""
    c = smbd.counters('async_brl', 'lock')
    for k in ('waits', 'woken', 'cancelled', 'unlocks'):
        assert c.get(k, 0) > 0, 'no %s counted: %s' % (k, c)
    assert c.get('errors', 0) == 0, c
    d = smbd.counters('async_brl', 'decision')
    assert d.get('decisions', 0) > 0, 'no decision on a thread: %s' % d


# --- options -----------------------------------------------------------------

def bad_options_are_logged_and_defaults_used(smbd, env):
    _, ms = grant_latency_ms(smbd, 'async_brl_badopts', 'lat.bin')
    for line in (r"async_brl:wake: 'maybe' is not one of: .*; using yes",
                 r"async_brl:max waits: 'lots' is not a number; "
                 r"using 256",
                 r"async_brl:decision: 'later' is not one of: .*; "
                 r"using sync",
                 r"async_brl:decision timeout: 0 is out of range .*; "
                 r"using 5000"):
        assert smbd.log_lines(line), 'no log line like: ' + line
    assert ms < WOKEN_MS, \
        'the default (wake = yes) did not wake: granted by the poll, ' \
        '%.0f ms after the request' % ms


def wake_no_polls_like_the_default(smbd, env):
    """Granted only by smbd (its poll SPIN_MS after the request, or a
    retry of its own), never by a wake soon after the release."""
    _, ms = grant_latency_ms(smbd, 'async_brl_nowake', 'lat.bin')
    assert ms >= WOKEN_MS, 'woken although wake = no: %.0f ms' % ms
    assert waiting_threads(smbd) == 0


def over_max_waits_smbd_polls(smbd, env):
    """With one wait allowed per process, a second request on the same
    connection falls back to smbd's poll: slower, still granted."""
    c = smb2client.Client(smbd, 'async_brl_onewait')
    try:
        fid, path = new_file(smbd, 'async_brl_onewait', c, 'max.bin')
        holder = Holder(path, 0, 200)
        id1 = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
        id2 = smb2client.lock_send(c, fid, 100, 100, LOCK_EXCLUSIVE)
        # both blocked; one thread (counted exactly below)
        wait_pending(smbd, 'async_brl', c)
        holder.release()
        holder.close()
        s1 = smb2client.recv_status(c, id1, timeout=WAIT)
        s2 = smb2client.recv_status(c, id2, timeout=WAIT)
        assert (s1, s2) == ('STATUS_SUCCESS', 'STATUS_SUCCESS'), (s1, s2)
        c.close(fid)
    finally:
        c.logoff()
    # the connection's counters, logged at its tree disconnect: one
    # wait, the other request fell back to smbd's poll
    pattern = r'async_brl counters lock: share=async_brl_onewait '
    assert wait_for(lambda: smbd.log_lines(pattern)), 'no counters logged'
    counts = dict((k, int(v)) for k, v in
                  re.findall(r'(\w+)=(\d+)', smbd.log_lines(pattern)[0]))
    assert counts['waits'] == 1 and counts['fallback'] >= 1, counts


# --- slow lock decisions (slowfs delays every fcntl lock call) ------------

SLOW_ENVS = {
    'default': harness.ENVIRONMENTS['default'],
    # no decision times out here but on purpose (the most allowed)
    'async_brl_decide': ('async_brl', {
        'async_brl:decision': 'async',
        'async_brl:decision timeout': '600000'}),
    'async_brl_decide_short': ('async_brl', {
        'async_brl:decision': 'async',
        'async_brl:decision timeout': '200'}),
}
LOCK_DELAY_MS = 300
# an fcntl() that is still out, whatever the load, until the test has
# seen what happens meanwhile (a decision thread has started by then)
SLOW_FCNTL_MS = 20000


def slow_lock_decision_leaves_the_connection_responsive(smbd, env,
                                                        storage):
    """A slow lock fcntl(), and an echo right behind it on the same
    connection: synchronously the echo is answered after the lock (it
    waited for the fcntl), with decision = async before it.  The order
    is the verdict; the fcntl takes SLOW_FCNTL_MS with decision =
    async, so that no load lets the lock overtake the echo."""
    delay = LOCK_DELAY_MS if env == 'default' else SLOW_FCNTL_MS
    storage.set('lock.delay_ms = %d' % delay)
    c = smb2client.Client(smbd, env)
    try:
        fid, _ = new_file(smbd, env, c, 'slowlock.bin')
        t0 = time.monotonic()
        lock_id = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE |
                                       LOCK_FAIL_IMMEDIATELY)
        echo_id = smb2client.echo_send(c)
        lock_first = answered_first(c, echo_id, lock_id)
        echo_ms = (time.monotonic() - t0) * 1000
        status = smb2client.recv_status(c, lock_id,
                                        timeout=delay / 1000 + WAIT)
        lock_ms = (time.monotonic() - t0) * 1000
        assert status == 'STATUS_SUCCESS', status
        print('    brl: slowfs lock %d ms, %s: echo after %.0f ms, lock '
              'after %.0f ms' % (delay, env, echo_ms, lock_ms),
              flush=True)
        path = storage.backing(smbd, env, 'slowlock.bin')
        assert not local_can_lock(path, 50, 1), 'granted but not locked'
        storage.set()
        c.close(fid)
        if env == 'default':
            assert lock_first, 'the default did not block: the echo ' \
                'was answered before the lock'
        else:
            assert not lock_first, 'the echo waited for the lock'
    finally:
        storage.set()
        c.logoff()


def decision_timeout_bounds_the_answer(smbd, env, storage):
    """fcntl() takes SLOW_FCNTL_MS, the decision timeout is 200 ms: the
    request is answered LOCK_NOT_GRANTED while the fcntl is still out
    (the fcntl would have granted it), the late grant is undone, and the
    range can be taken afterwards."""
    storage.set('lock.delay_ms = %d' % SLOW_FCNTL_MS)
    c = smb2client.Client(smbd, env)
    try:
        fid, _ = new_file(smbd, env, c, 'timeout.bin')
        path = storage.backing(smbd, env, 'timeout.bin')
        t0 = time.monotonic()
        msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE |
                                     LOCK_FAIL_IMMEDIATELY)
        assert wait_for(lambda: waiting_threads(smbd) == 1), \
            'no decision thread'
        status = smb2client.recv_status(c, msgid, timeout=WAIT)
        ms = (time.monotonic() - t0) * 1000
        out = waiting_threads(smbd)
        print('    brl: decision timeout 200 ms, fcntl %d ms: %s after '
              '%.0f ms' % (SLOW_FCNTL_MS, status, ms), flush=True)
        assert status == 'STATUS_LOCK_NOT_GRANTED', status
        assert out == 1, 'answered only when the fcntl came back'
        # the thread's fcntl() comes back with the lock; until then the
        # range is in limbo and the handle's other locks over it are
        # refused; then the late grant is undone
        storage.set()
        assert wait_for(lambda: waiting_threads(smbd) == 0,
                        SLOW_FCNTL_MS / 1000 + WAIT), \
            'the fcntl never came back'
        assert wait_for(lambda: local_can_lock(path, 0, 100)), \
            'a late grant stayed locked'
        status = smb2client.lock(c, fid, 0, 100, LOCK_EXCLUSIVE |
                                 LOCK_FAIL_IMMEDIATELY, timeout=WAIT)
        assert status == 'STATUS_SUCCESS', 'afterwards: ' + status
        assert not local_can_lock(path, 50, 1), 'granted but not locked'
        c.close(fid)
        assert local_can_lock(path, 0, 100), 'locked after close'
    finally:
        storage.set()
        c.logoff()


def cancel_during_slow_decision_leaves_nothing_locked(smbd, env,
                                                       storage):
    """SMB2 cancel while the thread's fcntl() (SLOW_FCNTL_MS) is still
    out: the request is cancelled before the fcntl comes back, the grant
    that comes later is undone."""
    storage.set('lock.delay_ms = %d' % SLOW_FCNTL_MS)
    c = smb2client.Client(smbd, env)
    try:
        fid, _ = new_file(smbd, env, c, 'slowcancel.bin')
        path = storage.backing(smbd, env, 'slowcancel.bin')
        t0 = time.monotonic()
        msgid = smb2client.lock_send(c, fid, 0, 100, LOCK_EXCLUSIVE)
        assert wait_for(lambda: waiting_threads(smbd) == 1), \
            'no decision thread'
        smb2client.cancel(c, msgid)
        status = smb2client.recv_status(c, msgid, timeout=WAIT)
        ms = (time.monotonic() - t0) * 1000
        out = waiting_threads(smbd)
        assert status == 'STATUS_CANCELLED', status
        assert out == 1, 'cancelled only when the fcntl came back ' \
            '(%.0f ms)' % ms
        storage.set()
        assert wait_for(lambda: waiting_threads(smbd) == 0,
                        SLOW_FCNTL_MS / 1000 + WAIT), \
            'a thread outlived its request'
        assert wait_for(lambda: local_can_lock(path, 0, 100)), \
            'the cancelled request left the range locked'
        c.close(fid)
    finally:
        storage.set()
        c.logoff()


def late_grant_was_undone(smbd):
    """Counted at disconnect."""
    d = smbd.counters('async_brl', 'decision')
    # one after the timeout, one after the cancel
    assert d.get('timeouts', 0) >= 1 and d.get('undone', 0) >= 2, d


def waiting_on_one_handle_keeps_the_others_locks(smbd, env):
    """A wait on one handle must not drop the locks another handle of
    the same connection (same smbd process) holds, whatever kind of
    POSIX locks smbd uses."""
    c = smb2client.Client(smbd, env)
    try:
        fid1, path = new_file(smbd, env, c, 'keep.bin')
        # the same file under a second name: impacket tracks opens by
        # name and cannot hold two of one name
        os.link(path, path + '.2')
        fid2 = smb2client.open_shared(c, 'keep.bin.2')
        assert smb2client.lock(c, fid1, 200, 10, LOCK_EXCLUSIVE) == \
            'STATUS_SUCCESS'
        holder = Holder(path)
        msgid = smb2client.lock_send(c, fid2, 0, 100, LOCK_EXCLUSIVE)
        wait_pending(smbd, env, c)      # it waits while fid1 holds
        holder.release()
        holder.close()
        status = smb2client.recv_status(c, msgid, timeout=WAIT)
        assert status == 'STATUS_SUCCESS', status
        assert not local_can_lock(path, 205, 1), \
            'the other handle lost its POSIX lock'
        assert not local_can_lock(path, 50, 1), \
            'the granted range is not locked'
        c.close(fid2)
        c.close(fid1)
        assert local_can_lock(path, 0, 300), 'locked after close'
    finally:
        c.logoff()


# --- SMB1: what a failed request leaves behind ------------------------------
#
# smbd remembers, per SMB1 handle, the range a failed lock request blocked
# on; the handle's next non-blocking lock blocking on the same offset then
# waits "lock spin time" and fails FILE_LOCK_CONFLICT instead of
# LOCK_NOT_GRANTED (smbd_smb1_do_locks_setup_timeout()).  raw.lock.async
# and smb1_cancelled_two_range_lock_remembers_the_conflict check that
# async_brl leaves that memory as the default does.

SMB1_ENVS = ['default', 'async_brl_decide']
LOCKING_ANDX_LARGE_FILES = 0x10
LOCKING_ANDX_CANCEL_LOCK = 0x08
SMB1_STATUS_NAMES = {
    0x00000000: 'STATUS_SUCCESS',
    0xC0000054: 'STATUS_FILE_LOCK_CONFLICT',
    0xC0000055: 'STATUS_LOCK_NOT_GRANTED',
}


class Smb1Client:
    """LockingAndX on impacket's SMB1 session, requests sent and answered
    separately (impacket has no LockingAndX of its own)."""

    def __init__(self, smbd, share):
        from impacket import smb
        from impacket.smbconnection import SMBConnection
        self.smb = smb
        self.conn = SMBConnection('127.0.0.1', '127.0.0.1',
                                  sess_port=smbd.port,
                                  preferredDialect=smb.SMB_DIALECT)
        user, password = smbd.creds().split('%', 1)
        self.conn.login(user, password)
        self.tid = self.conn.connectTree(share)
        self.s = self.conn.getSMBServer()
        self.pid = os.getpid() & 0xFFFF     # what impacket sends
        self.mid = 100
        self.answers = {}

    def create(self, name):
        return self.conn.createFile(self.tid, name,
                                    creationDisposition=5)  # overwrite_if

    def lockingx_send(self, fid, ranges, timeout=0, mode=0, unlocks=()):
        """ranges, unlocks: (offset, count), 64-bit, of our pid."""
        smb = self.smb
        self.mid += 1
        pkt = smb.NewSMBPacket()
        pkt['Tid'] = self.tid
        pkt['Mid'] = self.mid
        cmd = smb.SMBCommand(smb.SMB.SMB_COM_LOCKING_ANDX)
        cmd['Parameters'] = struct.pack(
            '<BBHHBBLHH', 0xff, 0, 0, fid, mode | LOCKING_ANDX_LARGE_FILES,
            0, timeout & 0xFFFFFFFF, len(unlocks), len(ranges))
        cmd['Data'] = b''.join(
            struct.pack('<HHLLLL', self.pid, 0, off >> 32, off & 0xFFFFFFFF,
                        cnt >> 32, cnt & 0xFFFFFFFF)
            for off, cnt in list(unlocks) + list(ranges))
        pkt.addCommand(cmd)
        self.s.sendSMB(pkt)
        return self.mid

    def recv(self, mid, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while mid not in self.answers:
            left = deadline - time.monotonic()
            assert left > 0, 'no answer to mid %d' % mid
            raw = self.s._sess.recv_packet(left)
            pkt = self.smb.NewSMBPacket(data=raw.get_trailer())
            status = pkt['ErrorClass'] | pkt['_reserved'] << 8 | \
                pkt['ErrorCode'] << 16
            self.answers[pkt['Mid']] = SMB1_STATUS_NAMES.get(
                status, '0x%08x' % status)
        return self.answers.pop(mid)

    def lockingx(self, fid, ranges, **kw):
        return self.recv(self.lockingx_send(fid, ranges, **kw))

    def close(self, fid):
        self.conn.closeFile(self.tid, fid)

    def logoff(self):
        try:
            self.conn.logoff()
        except Exception:
            pass


def smb1_raw_lock_async_as_the_default(smbd, env):
    """smbtorture raw.lock.async over SMB1: among others, a two-range
    lock cancelled while pending, then a non-blocking lock that must
    fail LOCK_NOT_GRANTED at once (lock.c: "cancel by close")."""
    p = subprocess.run(['smbtorture', smbd.unc(env), '-p', str(smbd.port),
                        '-U', smbd.creds(), '--target=samba3',
                        '--format=subunit', 'raw.lock.async'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=300)
    bad = [ln for ln in p.stdout.splitlines()
           if ln.startswith(('failure:', 'error:')) or 'Incorrect' in ln]
    assert p.returncode == 0 and not bad and \
        'success: async' in p.stdout, 'rc %s: %s' % (p.returncode, bad)


def smb1_cancelled_two_range_lock_remembers_the_conflict(smbd, env,
                                                          storage):
    """Ranges A and B, B held by the handle; a blocking lock of A and B
    is cancelled (by B, as Windows cancels).  Stock smbd blocked on B
    and remembers B; A, taken afterwards and asked again, fails
    LOCK_NOT_GRANTED.  Every fcntl() takes 300 ms, so that with
    decision = async the cancel arrives while a decision is out."""
    a, b = (100, 10), (110, 10)
    c = Smb1Client(smbd, env)
    try:
        fid = c.create('smb1cancel.bin')
        storage.set('lock.delay_ms = 300')
        seen = [c.lockingx(fid, [b])]
        pending = c.lockingx_send(fid, [a, b], timeout=-1)
        seen.append(c.lockingx(fid, [b], mode=LOCKING_ANDX_CANCEL_LOCK))
        seen.append(c.recv(pending))
        seen.append(c.lockingx(fid, [a]))
        # the answer that tells what smbd remembers
        seen.append(c.lockingx(fid, [a]))
        seen.append(c.lockingx(fid, [], unlocks=[a, b]))
        assert seen == ['STATUS_SUCCESS', 'STATUS_SUCCESS',
                        'STATUS_FILE_LOCK_CONFLICT', 'STATUS_SUCCESS',
                        'STATUS_LOCK_NOT_GRANTED', 'STATUS_SUCCESS'], seen
        storage.set()
        c.close(fid)
    finally:
        storage.set()
        c.logoff()


def smb1_single_range_locks_still_decided_on_a_thread(smbd):
    """Only the earlier ranges of a multi-range SMB1 request are decided
    at once: the single-range locks above went to a thread (counted at
    disconnect)."""
    d = smbd.counters('async_brl', 'decision')
    assert d.get('decisions', 0) >= 2, d


SEMANTIC_TESTS = [
    non_blocking_lock_on_held_range_fails_at_once,
    cancel_during_wait_ends_the_wait,
    close_during_wait_ends_the_wait,
    disconnect_during_wait_ends_the_wait,
    two_clients_and_a_local_holder_lose_no_lock,
    local_process_cannot_take_a_granted_range,
    second_user_cannot_lock_a_private_file,
    waiting_on_one_handle_keeps_the_others_locks,
]
MAIN_ENVS = dict({e: harness.ENVIRONMENTS[e] for e in ENVS}, **{
    # no decision times out here (the most allowed): a refusal comes
    # from the decision, whatever the load
    'async_brl_decide': ('async_brl', {
        'async_brl:decision': 'async',
        'async_brl:decision timeout': '600000'})}, **OPTION_ENVS)
SERVERS = [
    Server('brl', MAIN_ENVS,
           [(over_max_waits_smbd_polls, [None])] +
           [(test, SEMANTIC_ENVS) for test in SEMANTIC_TESTS] +
           [(reads_and_writes_keep_the_locks, DATA_PATH_ENVS)],
           after=[(module_counted_waits_and_wakeups, ['async_brl'])],
           log_level='1 async_brl:5'),
    # What wakes a request, told apart without timing it: on this smbd
    # the first poll comes SPIN_MS after a request, so a grant before
    # that was woken, a grant after it polled.
    Server('brl-wake', dict({e: harness.ENVIRONMENTS[e] for e in ENVS},
                            **{e: OPTION_ENVS[e] for e in (
                                'async_brl_badopts', 'async_brl_nowake')}),
           [(test, [None]) for test in (
               blocking_lock_granted_soon_after_local_holder_releases,
               bad_options_are_logged_and_defaults_used,
               wake_no_polls_like_the_default)],
           log_level='1 async_brl:5',
           extra_global={'lock spin time': str(SPIN_MS)}),
    Server('brl-slowfs', SLOW_ENVS, [
        (slow_lock_decision_leaves_the_connection_responsive,
         ['default', 'async_brl_decide']),
        (decision_timeout_bounds_the_answer, ['async_brl_decide_short']),
        (cancel_during_slow_decision_leaves_nothing_locked,
         ['async_brl_decide']),
    ], after=[(late_grant_was_undone, [None])], storage='slowfs',
        log_level='1 async_brl:5'),
    # an smbd that speaks SMB1 (the shared one starts at SMB2)
    Server('brl-smb1', SMB1_ENVS, [
        (smb1_raw_lock_async_as_the_default, SMB1_ENVS),
        (smb1_cancelled_two_range_lock_remembers_the_conflict, SMB1_ENVS),
    ], after=[(smb1_single_range_locks_still_decided_on_a_thread, [None])],
        storage='slowfs', extra_global={'server min protocol': 'NT1'},
        log_level='1 async_brl:5'),
]
