# SPDX-License-Identifier: GPL-3.0-or-later
"""The modules under clustering: a three-node CTDB cluster on this machine
(selftest/ctdb_cluster.py), one smbd per node with clustering = yes, all
three exporting the same directories; clients on different nodes.

A local file system stands in for a cluster file system: the nodes'
smbds see each other's POSIX locks, files and extended attributes as
they would on GPFS or CephFS, while share modes, byte-range locks and
leases go between them through CTDB's databases.

A test is a function of (cluster, env) or (cluster, env, storage) in the
table of the one ClusterServer below; cluster.smbds[n] is node n's smbd.
Every verdict waits for its condition (harness.WAIT_SECS); latencies are
printed as information, never judged.
"""
import os
import re
import struct
import subprocess
import threading
import time

import brllib
import harness
import smb2client
from smb2client import FILE_CREATE, FILE_OPEN_IF, RawConn
from impacket import smb3structs
from testlib import (ClusterServer, Skip, async_open_temp_names, child_of,
                     judge, match, parse_subunit, read_patterns)

PREFIX = 'cluster'		# of the test names: cluster.<test>/<env>

WAIT = harness.WAIT_SECS
FULL_VFS, FULL_OPTS = harness.ENVIRONMENTS['full_stack']
ENVS = {
    'default': ('', {}),
    'full_stack': (FULL_VFS, FULL_OPTS),
    # smbd's synchronous listing with the prefetch forced on (files older
    # than 20 ms trusted by ctime, as the async_dosattr_prefetch env) ...
    'full_stack_prefetch': (FULL_VFS, dict(
        FULL_OPTS, **{'smbd async dosmode': 'no',
                      'async_dosattr:prefetch': 'yes',
                      'async_dosattr:ctime granularity msec': '20'})),
    # ... and its cache of what the prefetch read
    'full_stack_cache': (FULL_VFS, dict(
        FULL_OPTS, **{'smbd async dosmode': 'no',
                      'async_dosattr:prefetch': 'yes',
                      'async_dosattr:ctime granularity msec': '20',
                      'async_dosattr:cache entries': '4096'})),
    # every asynchronous path forced on
    'full_stack_async': harness.ENVIRONMENTS['full_stack_async'],
}
# on the FUSE slowfs (selftest/slowfs), whose delays make a create last
# long enough for another node to act in the middle of it
SLOW_ENVS = {
    'slow_default': ('', {}),
    'slow_full_stack': (FULL_VFS, FULL_OPTS),
}
# the default VFS and the modules side by side
PAIR = ['default', 'full_stack']
U1, U2 = harness.USERS
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_SHARING_VIOLATION = 0xC0000043
CREATED = 2		# create action FILE_CREATED
FILE_ATTRIBUTE_READONLY = 0x1
FILE_ATTRIBUTE_HIDDEN = 0x2
FILE_ATTRIBUTE_SYSTEM = 0x4
FILE_ATTRIBUTE_ARCHIVE = 0x20

# smbtorture tests that open their second connection through
# torture_smb2_connection(), which takes the next entry of --unclist: node
# 0 and node 1.  suite -> its tests run (None: all).  smb2.oplock in full
# takes about 110 s: one test of each kind (break to none, to level II,
# on a byte-range lock).  Not here: smb2.lease.complex1 and v2_complex1
# connect twice with one client GUID, which smbd under clustering
# refuses across nodes (it ends the other node's connection, on the
# default VFS too); smb2.lease.unlink fails on one smbd (selftest/
# knownfail).
TORTURE = [
    ('smb2.lock', None),
    ('smb2.oplock', ['exclusive1', 'batch1', 'brl1', 'levelii501']),
    ('smb2.lease', ['lock1']),
    ('smb2.create', ['multi', 'mkdir-dup']),
    ('smb2.compound_async', None),
]


def wait_for(cond, timeout=WAIT):
    return harness.wait_until(cond, timeout, 0.01)


def shared_path(cluster, env, name=''):
    return os.path.join(cluster.share_root, env, name)


# --- async_brl ---------------------------------------------------------------

# grants measured in a row on each environment (their latencies printed)
GRANT_ROUNDS = 3


def info(what, lat):
    print('    cluster: %s: %s ms' % (what, ' '.join('%.1f' % x
                                                    for x in lat)),
          flush=True)


def blocking_lock_behind_smb_holder_on_other_node(cluster, env):
    """Node 1 holds a range over SMB; a blocking lock on node 0 waits and
    is granted after the release, GRANT_ROUNDS times.  The wake-up
    travels through smbd's cluster-wide watch of the file's records in
    CTDB."""
    lat = []
    for _ in range(GRANT_ROUNDS):
        lat.append(brllib.grant_after_unlock_on_other_node_ms(cluster, env))
    info('brl grant on node 0 after node 1 unlocks (%s)' % env, lat)


def blocking_lock_behind_local_holder(cluster, env):
    """A local process (an OFD lock, as another node's kernel client of a
    cluster file system would hold it) holds a range; a blocking lock on
    node 2 is granted after the release (async_brl wakes it, the default
    VFS polls)."""
    lat = [brllib.grant_after_local_release_ms(cluster, env)]
    info('brl grant on node 2 after a local holder releases (%s)' % env,
         lat)


# --- async_open --------------------------------------------------------------

def temp_names(cluster, env):
    return async_open_temp_names(shared_path(cluster, env))


# rounds of creates_race_across_nodes
RACE_ROUNDS = 12


def creates_race_across_nodes(cluster, env):
    """Creates of one name sent at once through node 0 and node 1: one
    creates it, the other finds it (FILE_OPEN_IF), or gets a name
    collision (FILE_CREATE) or a sharing violation (no sharing); never two
    creators, never a file without the data written through the open
    that won, and no temporary name left."""
    conns = []
    try:
        for n in (0, 1):
            rc = RawConn(cluster.smbds[n], env)
            rc.login(U1)
            conns.append(rc)
        for i in range(RACE_ROUNDS):
            disp, share = [(FILE_OPEN_IF, 7), (FILE_CREATE, 7),
                           (FILE_OPEN_IF, 0)][i % 3]
            name = 'race-%d' % i
            order = conns if i % 2 == 0 else conns[::-1]
            mids = [rc.send_create(U1, name, disp, share=share)
                    for rc in order]
            results = [smb2client.create_result(*rc.wait(mid)[:2])
                       for rc, mid in zip(order, mids)]
            opened = [(rc, r) for rc, r in zip(order, results)
                      if r[0] == 0]
            creators = [r for _, r in opened if r[1] == CREATED]
            summary = '%s: %s' % (name, [(hex(st), a) for st, a, _ in
                                         results])
            # smbd's own race (on the default VFS too): the create that
            # made the file may meet the other's open of it in the share
            # mode record and get the sharing violation itself
            assert opened and len(creators) <= 1, summary
            assert len(creators) == 1 or len(opened) < 2, summary
            for status, _, _ in results:
                if status == 0:
                    continue
                allowed = {FILE_CREATE: STATUS_OBJECT_NAME_COLLISION}.get(
                    disp, STATUS_SHARING_VIOLATION)
                assert status in (allowed, STATUS_SHARING_VIOLATION), \
                    'loser got 0x%08x; %s' % (status, summary)
            data = ('winner of %s' % name).encode()
            wrc, (_, _, wfid) = opened[0]
            st, _, _ = wrc.wait(wrc.send_write(U1, wfid, 0, data))
            assert st == 0, 'write 0x%08x' % st
            for rc, (status, _, fid) in zip(order, results):
                if status == 0:
                    rc.close(U1, fid)
            with open(shared_path(cluster, env, name), 'rb') as f:
                got = f.read()
            assert got == data, '%s holds %r' % (name, got)
        assert wait_for(lambda: not temp_names(cluster, env)), \
            'temporary names left: %s' % temp_names(cluster, env)
    finally:
        for rc in conns:
            rc.disconnect()


def open_counters(cluster, env):
    """async_open's counters of env over all nodes (logged at tree
    disconnect, level 5)."""
    total = {}
    for smbd in cluster.smbds:
        for line in smbd.log_lines(r'async_open counters openat: '
                                   r'share=%s ' % env):
            for k, v in re.findall(r'(\w+)=(\d+)', line):
                total[k] = total.get(k, 0) + int(v)
    return total


OPLOCK_BATCH = 0x09
DIRECTORY_FILE = 0x01
GENERIC_READ = 0x80000000


def other_node_cannot_make_a_creator_smbd_exit(cluster, env, storage):
    """The create gap of async_open's safety (issue 20, item 1) across
    nodes.  U1 creates gap.bin through node 0 (a slow create) and opens a
    slow directory right behind it, which holds U1's smbd for seconds
    after the create completes.  U2, through node 1, opens gap.bin with a
    batch oplock the moment it can and never acknowledges a break.  Had
    U2 opened the file before U1's smbd made its share mode entry in
    CTDB, U1's open would have to break U2's oplock across the nodes, and
    on a create deferred with EINPROGRESS smbd's 20 s exit timer would
    take U1's smbd down.  U1's create must succeed and its smbd stay."""
    if storage is None:
        raise Skip('slowfs not built (libfuse3-dev missing?)')
    smbd = cluster.smbds[0]
    os.makedirs(storage.backing(smbd, env, 'gapdir'), exist_ok=True)
    storage.set('create.delay_ms = 1000', 'opendir.delay_ms = 4000',
                'path_filter = gap')
    before = smbd.children()
    victim = RawConn(smbd, env)
    other = None
    try:
        victim.login(U1)
        child = child_of(smbd, before)
        other = RawConn(cluster.smbds[1], env)
        other.login(U2)
        create = victim.send_create(U1, 'gap.bin', FILE_CREATE)
        victim.send_create(U1, 'gapdir', smb2client.FILE_OPEN,
                           access=GENERIC_READ, options=DIRECTORY_FILE)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            status = other.wait(other.send_create(
                U2, 'gap.bin', smb2client.FILE_OPEN, access=GENERIC_READ,
                oplock=OPLOCK_BATCH))[0]
            if status == 0:
                break		# and never acknowledges the break
            time.sleep(0.02)
        # smbd's timer fires 20 s after a deferral; a break to U2 would
        # wait up to 70 s
        status, action, _ = smb2client.create_result(
            *victim.wait(create, timeout=90)[:2])
        if env == 'slow_default' and \
                status == STATUS_OBJECT_NAME_COLLISION:
            # Stock smbd makes the file under the client's name before
            # its share-mode entry exists: node 1 can open it in that gap
            # (seen: U2's batch oplock, then U1's create answered
            # NAME_COLLISION).  The modules' temporary name closes it.
            print('    cluster: stock smbd lost its own create to the '
                  'other node (the create gap)', flush=True)
        else:
            assert status == 0 and action == CREATED, (hex(status), action)
        assert victim.wait(victim.send_echo(U1))[0] == 0
        assert child in smbd.children(), 'the smbd child exited'
    finally:
        storage.set()
        victim.disconnect()
        if other is not None:
            other.disconnect()
    assert not smbd.log_lines(r'async open timeout'), 'an smbd exited'
    if env != 'slow_default':
        # the create went through the module (its counters are logged
        # when the connection's tree goes)
        assert wait_for(lambda: open_counters(cluster, env).get(
            'handed', 0) > 0), 'async_open counters: %s' % \
            open_counters(cluster, env)
    d = os.path.dirname(storage.backing(smbd, env, 'x'))
    assert wait_for(lambda: not async_open_temp_names(d)), \
        'temporary names left'


# --- async_dosattr -----------------------------------------------------------

def set_attributes(client, name, attrs):
    conn = client.conn.getSMBServer()
    fid = conn.create(client.tid, name, smb3structs.FILE_WRITE_ATTRIBUTES,
                      7, 0, smb2client.FILE_OPEN, 0)
    try:
        conn.setInfo(client.tid, fid, struct.pack('<qqqqLL', 0, 0, 0, 0,
                                                  attrs, 0),
                     smb3structs.SMB2_0_INFO_FILE,
                     smb3structs.SMB2_FILE_BASIC_INFO)
    finally:
        conn.close(client.tid, fid)


def listing(client, path):
    conn, fid = smb2client.open_dir(client, path)
    try:
        return smb2client.rest_of_listing(conn, client.tid, fid)
    finally:
        conn.close(client.tid, fid)


ATTRS = [FILE_ATTRIBUTE_HIDDEN, FILE_ATTRIBUTE_READONLY,
         FILE_ATTRIBUTE_SYSTEM, FILE_ATTRIBUTE_HIDDEN |
         FILE_ATTRIBUTE_SYSTEM]


# files listed by attributes_set_on_one_node_listed_on_another
LISTED_FILES = 40


def attributes_set_on_one_node_listed_on_another(cluster, env):
    """Files made through node 1 and listed on node 0 (the prefetch reads
    them, the cache keeps them); node 1 sets attributes on some; node 0
    lists again on the same tree connect and a new connection on node 2
    lists: both show the new attributes."""
    files = LISTED_FILES
    a = smb2client.Client(cluster.smbds[0], env)
    b = smb2client.Client(cluster.smbds[1], env)
    d = 'attrs'
    try:
        b.conn.createDirectory(env, d)
        for i in range(files):
            b.close(b.create('%s\\f%02d' % (d, i)))
        # older than the share's ctime granularity (20 ms), so that the
        # prefetch and the cache take them: a condition, not a verdict
        time.sleep(0.1)
        first = listing(a, d)
        assert len(first) == files, 'node 0 lists %d of %d' % (
            len(first), files)
        want = {}
        for i in range(0, files, 3):
            name = 'f%02d' % i
            attrs = ATTRS[i % len(ATTRS)] | FILE_ATTRIBUTE_ARCHIVE
            set_attributes(b, '%s\\%s' % (d, name), attrs)
            want[name] = attrs
        time.sleep(0.1)
        c = smb2client.Client(cluster.smbds[2], env)
        try:
            for who, lst in (('node 0 again', listing(a, d)),
                             ('node 2', listing(c, d))):
                wrong = {n: '0x%x, want 0x%x' % (lst.get(n, (None,))[0],
                                                  w)
                         for n, w in want.items()
                         if lst.get(n, (None,))[0] != w}
                assert not wrong, '%s lists %s' % (who, wrong)
                unchanged = [n for n, (at, _) in lst.items()
                             if n not in want and
                             at & (FILE_ATTRIBUTE_HIDDEN |
                                   FILE_ATTRIBUTE_SYSTEM |
                                   FILE_ATTRIBUTE_READONLY)]
                assert not unchanged, '%s lists attributes nobody set ' \
                    'on %s' % (who, unchanged)
        finally:
            c.logoff()
    finally:
        a.logoff()
        b.logoff()


def dosattr_counters(cluster, env):
    total = {}
    for smbd in cluster.smbds:
        for line in smbd.log_lines(r'async_dosattr counters \w+: '
                                   r'share=%s ' % env):
            for k, v in re.findall(r'(\w+)=(\d+)', line):
                total[k] = total.get(k, 0) + int(v)
    return total


# --- smbtorture with its two connections on two nodes ------------------------

def run_torture(cluster, env, suite, tests):
    """One smbtorture run of suite (or of its tests), its first connection
    on node 0 and its second on node 1: result name -> pass|fail|skip,
    and the exit code."""
    smbd = cluster.smbds[0]
    unclist = os.path.join(cluster.dir, 'unclist.' + env)
    with open(unclist, 'w') as f:
        f.write('%s\n%s\n' % (cluster.smbds[0].unc(env),
                              cluster.smbds[1].unc(env)))
    specs = ['%s.%s' % (suite, t) for t in tests] if tests else [suite]
    # --option=clustering=yes: smb2.lock.ctdb-delrec-deadlock runs only so
    cmd = ['smbtorture', smbd.unc(env), '-p', str(smbd.port),
           '-U', smbd.creds(), '--target=samba3', '--format=subunit',
           '--unclist=' + unclist, '--option=clustering=yes'] + specs
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True,
                           errors='replace', timeout=600)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors='replace') \
            if isinstance(e.stdout, bytes) else (e.stdout or '')
        rc = 'timeout'
    with open(os.path.join(harness.BIN, 'selftest-results',
                           'cluster.%s.%s.subunit' % (env, suite)),
              'w') as f:
        f.write(out)
    return out, rc


# each smbtorture result on the default VFS, which runs first, to judge
# the full stack's by
TORTURE_ON_DEFAULT = {}


def torture(cluster, env):
    """The smbtorture subset of TORTURE, its second connection on node 1:
    each result is cluster.torture/<env>/<suite>.<test>.  The full stack
    must give the default's results (as in the torture part), and known
    failures are the single smbd's (selftest/knownfail)."""
    os.makedirs(os.path.join(harness.BIN, 'selftest-results'),
                exist_ok=True)
    knownfail = read_patterns(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'knownfail'))
    start = time.monotonic()
    runs = []
    for suite, tests in TORTURE:
        out, rc = run_torture(cluster, env, suite, tests)
        runs.append((suite, {'%s.%s' % (suite, name): st for name, st in
                             parse_subunit(out).items()}, rc))
    print('ran cluster smbtorture subset on %-10s %5.1fs %3d tests' %
          (env, time.monotonic() - start,
           sum(len(results) for _, results, _ in runs)), flush=True)
    if env == 'default':
        for _, results, _ in runs:
            TORTURE_ON_DEFAULT.update(results)
    judged = []
    for suite, results, rc in sorted(runs, key=lambda run: run[0]):
        if rc == 'timeout' or not results or (
                rc != 0 and 'fail' not in results.values()):
            judged.append(('fail', suite, 'smbtorture %s after %d results' %
                           (rc, len(results))))
        for name, st in sorted(results.items()):
            status, why = judge(env, st, TORTURE_ON_DEFAULT.get(name),
                                match(knownfail, name), None)
            judged.append((status, name, why))
    return judged


# --- a node killed in the middle of the work ---------------------------------

class Writer(threading.Thread):
    """Writes blocks of a pattern to its own file through one node until
    stopped; remembers what the server acknowledged."""

    BLOCK = 16384

    def __init__(self, smbd, env, name):
        super().__init__(daemon=True)
        self.client = smb2client.Client(smbd, env)
        self.name = name
        self.fid = self.client.create(name)
        self.acked = 0
        self.error = None
        self.halt = threading.Event()

    def block(self, i):
        return (b'%s block %08d ' % (self.name.encode(), i)).ljust(
            self.BLOCK, b'.')

    def run(self):
        i = 0
        try:
            while not self.halt.is_set():
                self.client.write(self.fid, self.block(i), i * self.BLOCK)
                i += 1
                self.acked = i
        except Exception as e:
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(WAIT)
        assert not self.is_alive(), '%s: writer stuck' % self.name

    def expected(self):
        return b''.join(self.block(i) for i in range(self.acked))


def node_killed_mid_work_survivors_serve(cluster, env):
    """Writers on all three nodes; node 2's smbd is killed (SIGKILL to its
    whole process group), later its ctdbd too.  The writers on nodes 0 and
    1 go on through both kills; what every node acknowledged, node 2's
    writer included, is in the files, read back through the survivors."""
    writers = [Writer(cluster.smbds[n], env, 'kill-%d.bin' % n)
               for n in range(3)]
    for w in writers:
        w.start()
    try:
        assert wait_for(lambda: all(w.acked >= 4 for w in writers)), \
            'writers did not start: %s' % [w.acked for w in writers]
        cluster.kill_smbd(2)
        writers[2].stop()
        marks = [w.acked for w in writers[:2]]
        assert wait_for(lambda: all(w.acked >= m + 8 for w, m in
                                    zip(writers, marks)) or
                        any(w.error for w in writers[:2])), \
            'survivors stopped writing after the smbd kill'
        errs = [(w.name, w.error) for w in writers[:2] if w.error]
        assert not errs, 'after the smbd kill: %s' % errs
        cluster.stop_ctdbd(2, sig=9)
        marks = [w.acked for w in writers[:2]]
        assert wait_for(lambda: all(w.acked >= m + 8 for w, m in
                                    zip(writers, marks)) or
                        any(w.error for w in writers[:2])), \
            'survivors stopped writing after the ctdbd kill'
        errs = [(w.name, w.error) for w in writers[:2] if w.error]
        assert not errs, 'after the ctdbd kill: %s' % errs
        for w in writers[:2]:
            w.stop()
            w.client.close(w.fid)
    finally:
        for w in writers:
            w.halt.set()
    # the survivors read back everything that was acknowledged
    readers = [smb2client.Client(cluster.smbds[n], env) for n in (1, 0)]
    try:
        for w, r in zip(writers, readers + readers[:1]):
            want = w.expected()
            fid = r.open(w.name)
            got = b''
            while len(got) < len(want):
                chunk = r.read(fid, len(got), min(65536,
                                                  len(want) - len(got)))
                if not chunk:
                    break
                got += chunk
            r.close(fid)
            assert got == want, '%s: %d of %d acknowledged bytes read ' \
                'back intact' % (w.name, common_prefix(got, want),
                                 len(want))
        # and a new file through each survivor
        for n, r in zip((1, 0), readers):
            fid = r.create('after-%d.bin' % n)
            r.write(fid, b'after', 0)
            r.close(fid)
    finally:
        for r in readers:
            r.logoff()
    with open(shared_path(cluster, env, 'after-0.bin'), 'rb') as f:
        assert f.read() == b'after'


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# --- the cluster and its tests ----------------------------------------------

def print_counters(cluster):
    print('    cluster: async_open %s; async_dosattr %s' % (
        open_counters(cluster, 'full_stack_async'),
        dosattr_counters(cluster, 'full_stack_cache')), flush=True)


SERVERS = [
    ClusterServer('cluster', dict(ENVS, **SLOW_ENVS), [
        (blocking_lock_behind_smb_holder_on_other_node, PAIR),
        (blocking_lock_behind_local_holder, PAIR),
        (creates_race_across_nodes, PAIR + ['full_stack_async']),
        (attributes_set_on_one_node_listed_on_another,
         PAIR + ['full_stack_prefetch', 'full_stack_cache']),
        (other_node_cannot_make_a_creator_smbd_exit, list(SLOW_ENVS)),
        (torture, PAIR),
        # last: it kills node 2
        (node_killed_mid_work_survivors_serve, ['full_stack']),
    ], slow_envs=SLOW_ENVS, report=print_counters),
]
