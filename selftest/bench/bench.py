#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: the same workloads on several environments, side by side.

Each workload runs on every environment in one run, interleaved (A B C A B
C ...), after one warm-up round, so that machine noise hits all of them
alike. Per environment it prints the min and median wall time, the
median server CPU time (the smbd parent's cutime+cstime delta: the
per-connection smbd is its child and is reaped by it), CPU seconds per
GiB moved, and the ratios against the default environment. A last,
untimed round per environment runs under strace to count io_uring_enter
calls per I/O request (requests from smbd's own profile counters).
Nothing here asserts a time.
"""
import argparse
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import threadstate  # noqa: E402

NO_UNSHARE = os.path.join(harness.BIN, 'selftest', 'tools', 'no_unshare')
MIB = 1024 * 1024
GIB = 1024 * MIB

BENCH_ENVS = dict(harness.ENVIRONMENTS)
BENCH_ENVS['async_uring_sqpoll'] = ('async_uring',
                                    {'async_uring:sqpoll': 'yes'})
BENCH_ENVS['async_xattr_auto'] = ('async_xattr',
                                  {'smbd async dosmode': 'yes'})
# what an admin gets from "vfs objects = async_dosattr" alone: smbd's
# synchronous listing, prefetch = auto
BENCH_ENVS['async_dosattr_auto'] = ('async_dosattr', {})
# ... and with smbd async dosmode on: the asynchronous path, mode = auto
BENCH_ENVS['async_dosattr_async_auto'] = ('async_dosattr',
                                          {'smbd async dosmode': 'yes'})

# the optional cache of async_dosattr: it only helps a listing repeated
# on one tree connect (the relist workload)
BENCH_ENVS['async_dosattr_cache'] = ('async_dosattr', {
    'async_dosattr:cache entries': '65536'})

# async_uring:always async = no: the kernel tries each request without
# blocking first, as the in-tree io_uring module does (on slowfs this is
# what the default auto saves)
BENCH_ENVS['async_uring_always_async_no'] = (
    'async_uring', {'async_uring:always async': 'no'})

DATA_ENVS = ['default', 'io_uring', 'aio_pthread', 'async_uring',
             'async_uring_always_async_no', 'async_uring_sqpoll']
LIST_ENVS = ['default', 'async_dosmode', 'async_xattr', 'async_xattr_auto',
             'async_dosattr', 'async_dosattr_async_auto',
             'async_dosattr_prefetch', 'async_dosattr_auto']
RELIST_ENVS = ['default', 'async_dosmode', 'async_dosattr_auto',
               'async_dosattr_cache']

# A slow backing store: what a network or cloud-backed file system costs
# per operation.
SLOWFS_CONFIG = """\
read.delay_ms = 1
getxattr.delay_ms = 1
open.delay_ms = 2
create.delay_ms = 2
write.delay_ms = 1
fsync.delay_ms = 5
"""


def smbclient(smbd, env, commands, protocol='SMB3'):
    # -t: a synchronous listing of 20,000 entries on slow storage takes
    # longer than smbclient's default 20 s timeout
    p = subprocess.run(['smbclient', smbd.unc(env), '-p', str(smbd.port),
                        '-m' + protocol, '-t', '600', '-U', smbd.creds(),
                        '-c', commands],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        raise RuntimeError('smbclient on %s failed: %s %s' %
                           (env, p.stdout[-300:], p.stderr[-300:]))
    return p.stdout


def list_all(smbd, env, files, times=1):
    """List the directory as Windows clients ask: answers of 64 KiB.

    Over SMB 2.1 and later smbclient asks for answers of up to 8 MiB
    (some 60,000 entries each), and an answer that smbd fills
    asynchronously ("smbd async dosmode") holds an open file per entry
    until it is complete: past "max open files" entries (16,424 here)
    the listing ends early, with or without our modules.  SMB 2.0.2
    caps answers at 64 KiB, the size Windows asks for.  A listing that
    came back incomplete is an error, never a time.
    """
    out = smbclient(smbd, env, 'cd list; ' + '; '.join(['ls'] * times),
                    protocol='SMB2_02')
    got = sum(1 for line in out.splitlines()
              if re.match(r'\s+f\d{6}\.txt\s', line))
    if got != files * times:
        raise RuntimeError('%d listings on %s returned %d of %d entries' %
                           (times, env, got, files * times))


def randread_client():
    """The C client (libsmbclient) if built, else the Python one.

    Eight impacket clients took three quarters of two cores, so the
    Python client measures itself more than the server.  The client runs
    on the host, so for another Samba release (SAMBA=<series>, whose
    build in its chroot has no host libsmbclient to link) it is the
    host's build of it: without it, the 4.22 rows of 2026-12-06 measured
    the Python client, ten times slower.
    """
    builds = [harness.BIN]
    if harness.SAMBA is not None:
        builds.append(os.path.join(harness.TOP, 'bin'))
    for b in builds:
        c = os.path.join(b, 'selftest', 'bench', 'randread')
        if os.access(c, os.X_OK):
            return [c]
    return ['/usr/bin/python3', os.path.join(HERE, 'randread.py')]


def randread_describe(clients, count):
    what = '4 KiB random reads, %d clients x %d reads' % (clients, count)
    if randread_client()[0] == '/usr/bin/python3':
        what += (' (the Python client: randread is not built, so this '
                 'row measures the client more than the server)')
    return what


def randread_clients(smbd, env, clients, count):
    user, password = smbd.creds().split('%', 1)
    procs = [subprocess.Popen(
        randread_client() +
        [str(smbd.port), user, password, env, 'rand.bin', str(count),
         str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True) for i in range(clients)]
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError('randread on %s failed: %s' % (env, err))


def measure(smbd, run):
    # Every sample starts with no dirty pages: otherwise a write pays
    # for the writeback of the previous environment's (the server CPU
    # of 1 GiB writes varied 3x between runs without this).
    os.sync()
    baseline = smbd.children()
    cpu0 = smbd.cpu_children_seconds()
    sampler = threadstate.MainThreadSampler(smbd.proc.pid)
    sampler.start()
    t0 = time.monotonic()
    try:
        run()
    finally:
        threads = sampler.stop()
    wall = time.monotonic() - t0
    smbd.wait_children(baseline)
    return wall, smbd.cpu_children_seconds() - cpu0, threads


def profile_requests(smbd):
    """pread + pwrite + fsync requests smbd has counted so far."""
    counts = smbd.profile_counts()
    return sum(counts.get('syscall_asys_%s_count' % op, 0)
               for op in ('pread', 'pwrite', 'fsync'))


def count_enters(smbd, run):
    """io_uring_enter calls per I/O request during one run."""
    log = os.path.join(smbd.dir, 'strace.out')
    reqs0 = profile_requests(smbd)
    st = subprocess.Popen(['strace', '-f', '-c', '-e', 'trace=io_uring_enter',
                           '-o', log, '-p', str(smbd.proc.pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    baseline = smbd.children()
    run()
    smbd.wait_children(baseline)
    st.send_signal(signal.SIGINT)
    st.wait()
    reqs = profile_requests(smbd) - reqs0
    with open(log) as f:
        m = re.search(r'^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?'
                      r'io_uring_enter$', f.read(), re.M)
    enters = int(m.group(1)) if m else 0
    return enters / reqs if reqs else float('nan')


def make_file(path, size):
    chunk = os.urandom(MIB)
    with open(path, 'wb') as f:
        for _ in range(size // MIB):
            f.write(chunk)


class Workload:
    def __init__(self, name, describe, envs, setup, run, nbytes):
        self.name = name
        self.describe = describe
        self.envs = envs
        self.setup = setup
        self.run = run
        self.nbytes = nbytes


def workloads(args, storage, tmp, backing):
    src = os.path.join(tmp, 'write-src.bin')
    rd = args.read_mib[storage]
    owner = pwd.getpwnam(harness.USERS[0])

    def setup_file(smbd, env, name, size):
        make_file(backing(os.path.join(smbd.share_path(env), name)), size)

    def setup_write(smbd, env):
        if not os.path.exists(src):
            make_file(src, args.write_mib * MIB)

    def setup_list(smbd, env):
        # Created on the backing store directly: through slowfs this
        # would take files * create delay per environment.
        d = backing(os.path.join(smbd.share_path(env), 'list'))
        if os.path.isdir(d):
            return      # made for list, used again by relist
        os.makedirs(d)
        for i in range(args.files):
            f = os.path.join(d, 'f%06d.txt' % i)
            with open(f, 'w'):
                pass
            os.chown(f, owner.pw_uid, owner.pw_gid)
        # Every entry gets the DOS attribute xattr smbd wrote for the
        # first one, as files written over SMB have.
        smbclient(smbd, env, 'cd list; setmode f000000.txt +h; '
                  'setmode f000000.txt -h')
        blob = os.getxattr(os.path.join(d, 'f000000.txt'), 'user.DOSATTRIB')
        for i in range(1, args.files):
            os.setxattr(os.path.join(d, 'f%06d.txt' % i), 'user.DOSATTRIB',
                        blob)

    return {
        'read': Workload(
            'read', 'sequential read of a %d MiB file' % rd, DATA_ENVS,
            lambda s, e: setup_file(s, e, 'read.bin', rd * MIB),
            lambda s, e: smbclient(s, e, 'get read.bin /dev/null'),
            rd * MIB),
        'write': Workload(
            'write', 'sequential write of a %d MiB file' % args.write_mib,
            DATA_ENVS, setup_write,
            lambda s, e: smbclient(s, e, 'put %s write.bin' % src),
            args.write_mib * MIB),
        'randread': Workload(
            'randread', randread_describe(args.clients,
                                          args.randreads[storage]),
            DATA_ENVS,
            lambda s, e: setup_file(s, e, 'rand.bin', 64 * MIB),
            lambda s, e: randread_clients(s, e, args.clients,
                                          args.randreads[storage]),
            args.clients * args.randreads[storage] * 4096),
        'list': Workload(
            'list', 'listing of a %d-file directory' % args.files,
            LIST_ENVS, setup_list,
            lambda s, e: list_all(s, e, args.files), 0),
        'relist': Workload(
            'relist', 'three listings of a %d-file directory in one '
            'session' % args.files, RELIST_ENVS, setup_list,
            lambda s, e: list_all(s, e, args.files, 3), 0),
    }


def mount_slowfs(tmp, getxattr_ms=1):
    binary = os.path.join(harness.BIN, 'selftest', 'slowfs', 'slowfs')
    back = os.path.join(tmp, 'slow-back')
    mnt = os.path.join(tmp, 'slow-mnt')
    conf = os.path.join(tmp, 'slowfs.conf')
    os.makedirs(back)
    os.makedirs(mnt)
    os.chmod(tmp, 0o755)
    with open(conf, 'w') as f:
        f.write(re.sub(r'(?m)^getxattr\.delay_ms = .*$',
                       'getxattr.delay_ms = %g' % getxattr_ms,
                       SLOWFS_CONFIG))
    subprocess.run([binary, back, mnt, '-o',
                    'allow_other,default_permissions', '--config=' + conf],
                   check=True, stderr=subprocess.DEVNULL)
    return mnt, back


def run_workload(args, smbd, storage, wl, out):
    envs = [e for e in wl.envs if e in args.envs]
    for env in envs:
        wl.setup(smbd, env)
    samples = {env: [] for env in envs}
    for rnd in range(args.rounds + 1):
        for env in envs:
            sample = measure(smbd, lambda: wl.run(smbd, env))
            if rnd > 0:     # round 0 warms caches for everyone
                samples[env].append(sample)
    enters = {}
    if args.count_enters and wl.nbytes:
        for env in envs:
            enters[env] = count_enters(smbd, lambda: wl.run(smbd, env))
    label = storage
    if storage == 'slowfs':
        label += ', getxattr %g ms' % args.getxattr_ms
    report(out, label, wl, envs, samples, enters)


def mount_xfs(tmp):
    # XFS, unlike ext4, takes buffered writes without blocking where it
    # can (FMODE_BUF_WASYNC): io_uring then completes them inline.  An
    # appending write that needs a block allocation still goes to an
    # io-wq worker.
    if shutil.which('mkfs.xfs') is None:
        sys.exit('bench: --storage xfs needs mkfs.xfs (Debian: xfsprogs, '
                 'installed by make bootstrap)')
    image = os.path.join(tmp, 'xfs.img')
    mnt = os.path.join(tmp, 'xfs-mnt')
    os.makedirs(mnt)
    os.chmod(tmp, 0o755)    # the test users reach the share through it
    with open(image, 'wb') as f:
        f.truncate(16 * 1024 * MIB)   # sparse: room for each env's file
    subprocess.run(['mkfs.xfs', '-q', '-f', image], check=True)
    subprocess.run(['mount', '-o', 'loop', image, mnt], check=True)
    os.chmod(mnt, 0o755)
    return mnt


def unmount(storage, mnt):
    if storage == 'slowfs':
        subprocess.run(['fusermount3', '-u', mnt], stderr=subprocess.DEVNULL)
    elif storage == 'xfs':
        subprocess.run(['umount', mnt], stderr=subprocess.DEVNULL)


def run_storage(args, storage, tmp, out):
    share_root = None
    mnt = None
    backing = os.path.normpath		# where setup writes: the share itself
    if storage == 'slowfs':
        mnt, back = mount_slowfs(tmp, args.getxattr_ms)
        share_root = mnt

        def backing(path):  # noqa: F811 - below slowfs, not through it
            return os.path.join(back, os.path.relpath(path, mnt))
    elif storage == 'xfs':
        mnt = mount_xfs(tmp)
        share_root = mnt

    envs = {e: BENCH_ENVS[e] for e in args.envs}
    smbd = harness.Smbd(envs=envs, share_root=share_root,
                        extra_global={'smbd profiling level': 'on'},
                        workdir=tempfile.mkdtemp(prefix='asvfs-bench-'),
                        wrapper=[NO_UNSHARE] if args.no_unshare else None)
    try:
        smbd.start()
        wls = workloads(args, storage, tmp, backing)
        for name in args.workloads:
            run_workload(args, smbd, storage, wls[name], out)
    finally:
        smbd.stop()
        panics = smbd.panics()
        smbd.cleanup()
        if mnt:
            unmount(storage, mnt)
    if panics:
        raise RuntimeError('smbd panicked: %s' % panics[:3])


def report(out, storage, wl, envs, samples, enters):
    med = {e: statistics.median(s[0] for s in samples[e]) for e in envs}
    cpu = {e: statistics.median(s[1] for s in samples[e]) for e in envs}
    base = envs[0]
    lines = ['', '%s on %s (%d rounds, median)' %
             (wl.describe, storage, len(samples[base])),
             '  %-19s %8s %8s %6s %8s %9s %6s %8s' %
             ('environment', 'min s', 'wall s', 'ratio', 'cpu s',
              'cpu s/GiB', 'ratio', 'enter/rq')]
    for e in envs:
        per_gib = '%9.3f' % (cpu[e] / (wl.nbytes / GIB)) if wl.nbytes \
            else '%9s' % '-'
        lines.append('  %-19s %8.3f %8.3f %6.2f %8.3f %s %6s %8s' % (
            e, min(s[0] for s in samples[e]), med[e],
            med[e] / med[base] if med[base] else 0, cpu[e], per_gib,
            '%.2f' % (cpu[e] / cpu[base]) if cpu[base] else '-',
            '%.2f' % enters[e] if e in enters else '-'))
    for e in envs:
        lines.append('  %-19s %s' % (e, threadstate.describe(
            threadstate.mean([s[2] for s in samples[e]]))))
    text = '\n'.join(lines)
    print(text, flush=True)
    out.append(text)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--workloads',
                    default='read,write,randread,list,relist')
    ap.add_argument('--storage', default='ext4,slowfs',
                    help='comma-separated: ext4 (the directory the bench '
                    'runs in), xfs (a loop-mounted image), slowfs')
    ap.add_argument('--envs', default=','.join(
        dict.fromkeys(DATA_ENVS + LIST_ENVS + RELIST_ENVS)))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--no-unshare', action='store_true',
                    help='run smbd where unshare(2) is refused, as in some '
                    'containers: smbd then switches async dosmode off')
    ap.add_argument('--getxattr-ms', type=float, default=1,
                    help='slowfs getxattr latency; 0 gives the floor no '
                    'module can beat: the FUSE round trips without the '
                    'wait')
    ap.add_argument('--no-count-enters', dest='count_enters',
                    action='store_false')
    ap.add_argument('--quick', action='store_true',
                    help='small sizes, one round: checks the bench runs')
    args = ap.parse_args()
    args.workloads = args.workloads.split(',')
    args.storage = args.storage.split(',')
    args.envs = args.envs.split(',')
    if 'default' not in args.envs:
        args.envs.insert(0, 'default')
    args.clients = 8
    if args.quick:
        args.rounds = 1
        args.read_mib = {'ext4': 16, 'xfs': 16, 'slowfs': 4}
        args.write_mib = 8
        args.files = 300
        args.randreads = {'ext4': 50, 'xfs': 50, 'slowfs': 20}
    else:
        args.read_mib = {'ext4': 1024, 'xfs': 1024, 'slowfs': 1024}
        args.write_mib = 1024
        args.files = 20000
        args.randreads = {'ext4': 2000, 'xfs': 2000, 'slowfs': 500}
    return args


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit('bench: must run as root (test users, mount namespace)')
    # the smbd under test: the installed one, or make bench SAMBA=<series>'s
    smbd_version = harness.smbd_version()
    out = ['samba-async-vfs bench, %s, %s, %s, %d CPUs' % (
        time.strftime('%Y-%m-%d'), smbd_version, os.uname().release,
        os.cpu_count())]
    if args.no_unshare:
        out[0] += ', unshare(2) refused'
    print(out[0], flush=True)
    with tempfile.TemporaryDirectory(prefix='asvfs-bench-') as tmp:
        for storage in args.storage:
            run_storage(args, storage, tmp, out)
    path = os.path.join(harness.BIN, 'bench-results.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')
    print('\nresults written to %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
