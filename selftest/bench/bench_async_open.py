#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""async_open where clients wait: many opens in flight, C load generator.

Rows (issue 24, item 3), each run on the default VFS, Samba's aio_pthread
with "aio open = yes" and async_open, interleaved (A B C A B C ...):

  create-1x16   slowfs, create +5 ms, 1 connection x 16 creates in flight
  open-1x16     slowfs, open +5 ms, 1 connection x 16 opens of existing
                files in flight (async_open with mode = all)
  create-8x16   slowfs, create +5 ms, 8 connections x 16 creates each
  ext4-1x16     ext4, no injected latency, 1 x 16 creates, async_open
                with its defaults (mode auto: creates measured fast stay
                synchronous)
  echo-500ms    slowfs, create +500 ms, one create at a time: the echo
                probes' p99 is the latency of a request behind a slow
                create

Every operation is a create (or open) and close of one file, compounded
in one message as Windows sends them; each in-flight create has a
directory of its own (the kernel runs creates in one directory one after
the other on any file system), emptied before each measurement.  The
client is selftest/bench/smb2load (C, one thread): per environment it
prints operations/s and the ratio against the default, p50/p99 latency
of the operations and of echo probes sent meanwhile, the smbd CPU per
operation (the per-connection smbds' CPU, reaped by the parent), the
slowest connection's share of an equal share, and the generator's own
CPU as a share of the machine; then a line per environment with where
the connections' smbd main threads were and how busy the CPUs were
(threadstate.py): what bounds the row.  A run where the generator took
more than a quarter of the machine is marked client-bound: its numbers
say more about the client than about the server.

The server has multichannel off: aio_pthread switches "aio open" off
when it is on (Samba >= 4.15 defaults to on).

    /usr/bin/python3 selftest/bench/bench_async_open.py [--quick]
        [--rows create-1x16,...] [--rounds N] [--seconds S]
        [--profile DIR] [--also ENV,...]

--also adds environments to every row (e.g. async_open_threads).
--profile records each measurement with perf (system-wide, call graphs)
into DIR/<row>-<env>-r<round>.data and prints, per row and environment,
the smbd processes' hottest symbols: where a target is missed, that is
what bounds it.

writes bin/bench-async-open.txt.  Nothing here asserts a time.
"""
import argparse
import os
import pwd
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

GENERATOR = os.path.join(harness.BIN, 'selftest', 'bench', 'smb2load')
SLOWFS = os.path.join(harness.BIN, 'selftest', 'slowfs', 'slowfs')
CLIENT_BOUND_SHARE = 0.25
DELAY_MS = 5

BENCH_ENVS = {
    'default': ('', {}),
    'aio_pthread': ('aio_pthread', {'aio_pthread:aio open': 'yes'}),
    'async_open': ('async_open', {}),
    'async_open_all': ('async_open', {'async_open:mode': 'all'}),
    # --also: the default up to 2026-12-07 (every create deferred)
    'async_open_creates': ('async_open', {'async_open:mode': 'creates'}),
    # --also: the same on worker threads instead of io_uring
    'async_open_threads': ('async_open', {'async_open:backend': 'threads'}),
    'async_open_all_threads': ('async_open', {'async_open:mode': 'all',
                                              'async_open:backend':
                                              'threads'}),
}


class Row:
    def __init__(self, name, storage, op, conns, depth, slowfs_conf,
                 envs, describe, echo_ms=100):
        self.name = name
        self.storage = storage
        self.op = op
        self.conns = conns
        self.depth = depth
        self.slowfs_conf = slowfs_conf
        self.envs = envs
        self.describe = describe
        self.echo_ms = echo_ms


ROWS = [
    Row('create-1x16', 'slowfs', 'create', 1, 16,
        'create.delay_ms = %d' % DELAY_MS,
        ['default', 'aio_pthread', 'async_open'],
        'slowfs create +%d ms, 1 connection x 16 creates in flight' %
        DELAY_MS),
    # what bounds create-1x16: the same creates with no latency injected,
    # so only smbd's own walk and slowfs's round trips are left
    Row('create-1x16-0ms', 'slowfs', 'create', 1, 16, None,
        ['default', 'async_open'],
        'slowfs create, no injected latency, 1 connection x 16 creates in '
        'flight: the ceiling of the row above'),
    Row('open-1x16', 'slowfs', 'open', 1, 16,
        'open.delay_ms = %d' % DELAY_MS,
        ['default', 'aio_pthread', 'async_open_all'],
        'slowfs open +%d ms, 1 connection x 16 opens of existing files '
        'in flight' % DELAY_MS),
    Row('create-8x16', 'slowfs', 'create', 8, 16,
        'create.delay_ms = %d' % DELAY_MS,
        ['default', 'aio_pthread', 'async_open'],
        'slowfs create +%d ms, 8 connections x 16 creates in flight' %
        DELAY_MS),
    Row('ext4-1x16', 'ext4', 'create', 1, 16, None,
        ['default', 'aio_pthread', 'async_open'],
        'ext4, no injected latency, 1 connection x 16 creates in flight, '
        'module defaults'),
    Row('echo-500ms', 'slowfs', 'create', 1, 1, 'create.delay_ms = 500',
        ['default', 'aio_pthread', 'async_open'],
        'slowfs create +500 ms, 1 connection x 1 create in flight, an '
        'echo every 20 ms behind it (see echo p99)', echo_ms=20),
]


def set_slowfs(conf, text, generation):
    """Put text in force; slowfs acknowledges in FILE.loaded."""
    text = '# %d\n%s\n' % (generation, text or '')
    with open(conf + '.new', 'w') as f:
        f.write(text)
    os.rename(conf + '.new', conf)

    def loaded():
        try:
            with open(conf + '.loaded') as f:
                return f.read() == text
        except FileNotFoundError:
            return False
    if not harness.wait_until(loaded):
        raise RuntimeError('slowfs did not load %s' % conf)


def mount_slowfs(tmp):
    back = os.path.join(tmp, 'slow-back')
    mnt = os.path.join(tmp, 'slow-mnt')
    conf = os.path.join(tmp, 'slowfs.conf')
    os.makedirs(back)
    os.makedirs(mnt)
    os.chmod(tmp, 0o755)
    open(conf, 'w').close()
    # 8 x 16 in flight, each may hold a thread for its delay
    subprocess.run([SLOWFS, back, mnt, '-o',
                    'allow_other,default_permissions,max_threads=512',
                    '--config=' + conf], check=True,
                   stderr=subprocess.DEVNULL)
    return mnt, back, conf


def prepare(back_share, row):
    """The directories creates go to, or the files opens open, owned by
    the test user, made below slowfs (not through it)."""
    pw = pwd.getpwnam(harness.USERS[0])
    for c in range(row.conns):
        for s in range(row.depth):
            path = os.path.join(back_share, '%s_%d_%d' % (row.name, c, s))
            if os.path.exists(path):
                continue
            if row.op == 'create':
                os.makedirs(path)
            else:
                with open(path, 'wb') as f:
                    f.write(b'x' * 4096)
            os.chown(path, pw.pw_uid, pw.pw_gid)


def empty_dirs(back_share, row):
    """Every measurement of creates starts with empty directories. smbd
    looks for a name it did not find case-insensitively by reading the
    whole directory, so a create costs more the more files its directory
    holds: without this, an environment that was faster in one round
    started the next with fuller directories (seen, 2026-12-07: every
    environment's creates/s fell round by round, the fastest's most).
    The files go below slowfs, not through it; their names are not used
    again, and slowfs does not let the kernel cache directory
    listings."""
    if row.op != 'create':
        return
    for c in range(row.conns):
        for s in range(row.depth):
            path = os.path.join(back_share, '%s_%d_%d' % (row.name, c, s))
            with os.scandir(path) as entries:
                for e in entries:
                    os.unlink(e.path)


def run_generator(smbd, env, row, seconds, tag):
    cmd = [GENERATOR, '--port', str(smbd.port), '--user', harness.USERS[0],
           '--password', harness.PASSWORD, '--share', env, '--op', row.op,
           '--conns', str(row.conns), '--depth', str(row.depth),
           '--seconds', str(seconds), '--prefix', row.name, '--tag', tag,
           '--echo-ms', str(row.echo_ms), '--quiet']
    if row.op == 'create':
        cmd.append('--dirs')
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=seconds + 300)
    result = None
    for line in p.stdout.splitlines():
        if line.startswith('result '):
            result = dict(kv.split('=', 1) for kv in line.split()[1:])
    if p.returncode != 0 or result is None:
        raise RuntimeError('smb2load on %s (%s) failed (rc %d): %s %s' % (
            env, row.name, p.returncode, p.stdout[-300:], p.stderr[-300:]))
    return result


def start_perf(profile, name):
    """perf record, system-wide with call graphs, until stop_perf()."""
    if profile is None:
        return None
    os.makedirs(profile, exist_ok=True)
    return subprocess.Popen(['perf', 'record', '-a', '-g', '-F', '499',
                             '-o', os.path.join(profile, name + '.data')],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_perf(perf):
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=120)


def perf_summary(profile, name, top=12):
    """smbd's hottest symbols (self time) in one recording."""
    p = subprocess.run(['perf', 'report', '-i',
                        os.path.join(profile, name + '.data'),
                        '--comm', 'smbd', '--no-children', '--sort',
                        'dso,sym', '--stdio', '-g', 'none',
                        '--percent-limit', '0.5'],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True)
    lines = [ln for ln in p.stdout.splitlines()
             if ln.strip() and not ln.startswith('#')]
    return lines[:top]


def measure(smbd, env, row, seconds, tag, profile=None, name=None):
    baseline = smbd.children()
    cpu0 = smbd.cpu_children_seconds()
    perf = start_perf(profile, name)
    sampler = threadstate.MainThreadSampler(smbd.proc.pid)
    sampler.start()
    try:
        r = run_generator(smbd, env, row, seconds, tag)
    finally:
        threads = sampler.stop()
        stop_perf(perf)
        # also when the generator failed: a connection's smbd that
        # crashed has logged its panic once it is reaped, so the panic
        # is this environment's, not the next one's (seen: 4.22's
        # aio_pthread panic blamed on async_open)
        smbd.wait_children(baseline)
    ops = int(r['ops'])
    per_conn = [int(n) for n in r['per_conn'].split(',')]
    gen_cpu = float(r['cpu_user_s']) + float(r['cpu_sys_s'])
    return {
        'rate': float(r['rate']),
        'p50': int(r['p50_us']) / 1000.0,
        'p99': int(r['p99_us']) / 1000.0,
        'echo_p99': int(r['echo_p99_us']) / 1000.0,
        'server_us': (smbd.cpu_children_seconds() - cpu0) * 1e6 / ops
        if ops else 0.0,
        'fair': min(per_conn) / (ops / len(per_conn)) if ops else 0.0,
        'gen_share': gen_cpu / float(r['seconds']) / os.cpu_count(),
        'threads': threads,
    }


def samba_module_env(env):
    """Environments of Samba's own modules (the default, aio_pthread),
    not of ours: a crash of theirs is reported, not ours to fail on."""
    return BENCH_ENVS[env][0] not in harness.MODULES


def perf_name(row, env, rnd):
    """The --profile recording of one measurement."""
    return '%s-%s-r%d' % (row.name, env, rnd)


def measure_env(smbd, env, row, seconds, tag, args, name, broken):
    """measure(), or None where one of Samba's own modules crashed smbd
    (seen: Samba 4.22's aio_pthread with aio open panics in
    find_completed_open at 16 creates in flight): the row goes on
    without that environment, and the report says why."""
    seen = set(smbd.panics())
    try:
        m = measure(smbd, env, row, seconds, tag, args.profile, name)
    except RuntimeError as e:
        m, failure = None, str(e)
    new = [h for h in smbd.panics() if h not in seen]
    if new and not samba_module_env(env):
        raise RuntimeError('smbd panicked on %s: %s' % (env, new[:3]))
    if m is None and not samba_module_env(env):
        raise RuntimeError(failure)
    if m is None or new:
        why = [h for h in new if 'INTERNAL ERROR' in h or 'PANIC' in h]
        broken[row.name, env] = (why or new or [failure])[0][-160:]
        print('  %-12s %-22s failed, left out of this row: %s' % (
            row.name, env, broken[row.name, env]), flush=True)
        return None
    return m


def run_storage(args, storage, rows, tmp, samples, broken):
    mnt = back = conf = None
    share_root = None
    if storage == 'slowfs':
        mnt, back, conf = mount_slowfs(os.path.join(tmp, 'slowfs'))
        share_root = mnt
    envs = sorted({e for row in rows for e in row.envs})
    smbd = harness.Smbd(envs={e: BENCH_ENVS[e] for e in envs},
                        share_root=share_root,
                        extra_global={'server multi channel support': 'no'},
                        workdir=tempfile.mkdtemp(prefix='asvfs-bench-'))
    generation = 0
    backing = {}
    try:
        smbd.start()
        for row in rows:
            for env in row.envs:
                share = smbd.share_path(env)
                if back is not None:
                    share = os.path.join(back, os.path.relpath(share, mnt))
                backing[env] = share
                prepare(share, row)
        for rnd in range(args.rounds):
            for row in rows:
                if conf is not None:
                    generation += 1
                    set_slowfs(conf, row.slowfs_conf, generation)
                for env in row.envs:
                    if (row.name, env) in broken:
                        continue
                    empty_dirs(backing[env], row)
                    tag = 'r%d-%d' % (rnd, int(time.time() * 1000))
                    m = measure_env(smbd, env, row, args.seconds, tag,
                                    args, perf_name(row, env, rnd), broken)
                    if m is None:
                        continue
                    samples[row.name, env].append(m)
                    print('  %-12s %-22s %8.0f ops/s  p99 %7.1f ms  '
                          'generator %4.1f%% of the machine' % (
                              row.name, env, m['rate'], m['p99'],
                              100 * m['gen_share']), flush=True)
        seen = set(smbd.panics())
    finally:
        smbd.stop()
        panics = smbd.panics()
        smbd.cleanup()
        if mnt is not None:
            subprocess.run(['fusermount3', '-u', mnt],
                           stderr=subprocess.DEVNULL)
    # the crashes of Samba's own modules were reported with their row
    panics = [h for h in panics if h not in seen]
    if panics:
        raise RuntimeError('smbd panicked: %s' % panics[:3])


def median_of(ms, key):
    return statistics.median(m[key] for m in ms)


def report(args, rows, samples, broken, out):
    for row in rows:
        base = (median_of(samples[row.name, 'default'], 'rate')
                if samples[row.name, 'default'] else 0)
        out.append('')
        out.append('%s: %s; %g s x %d rounds (median)' % (
            row.name, row.describe, args.seconds, args.rounds))
        out.append('  %-22s %9s %7s %8s %8s %9s %9s %6s %6s' % (
            'environment', 'ops/s', 'x dflt', 'p50 ms', 'p99 ms',
            'echo p99', 'smbd us', 'fair', 'gen %'))
        bound = False
        for env in row.envs:
            ms = samples[row.name, env]
            if (row.name, env) in broken:
                out.append('  %-22s failed (smbd, Samba\'s own module): %s'
                           % (env, broken[row.name, env]))
            if not ms:
                continue
            rate = median_of(ms, 'rate')
            share = max(m['gen_share'] for m in ms)
            bound = bound or share > CLIENT_BOUND_SHARE
            out.append('  %-22s %9.0f %7.2f %8.1f %8.1f %9.1f %9.0f %6.2f '
                       '%5.1f%s' % (
                           env, rate, rate / base if base else 0,
                           median_of(ms, 'p50'), median_of(ms, 'p99'),
                           median_of(ms, 'echo_p99'),
                           median_of(ms, 'server_us'),
                           min(m['fair'] for m in ms), 100 * share,
                           ' CLIENT-BOUND' if share > CLIENT_BOUND_SHARE
                           else ''))
        for env in row.envs:
            if samples[row.name, env]:
                threads = [m['threads'] for m in samples[row.name, env]]
                out.append('  %-22s %s' % (env, threadstate.describe(
                    threadstate.mean(threads))))
        if bound:
            out.append('  client-bound: the generator took more than a '
                       'quarter of the machine; these ratios measure it')
    out.append('')
    out.append('ops/s: operations (create or open, and close) completed')
    out.append('smbd us: CPU of the connections\' smbds per operation')
    out.append('fair: the slowest connection\'s completions against an '
               'equal share (1.00 = equal)')
    out.append('gen %%: the generator\'s CPU (user + system) as a share of '
               'all %d CPUs, the highest of the rounds' % os.cpu_count())
    out.append('main thread: where the connections\' smbd main threads '
               'were, sampled %d times a second (selftest/bench/'
               'threadstate.py): on a CPU, blocked in a system call (the '
               'calls most seen), or idle in the event loop; CPUs busy: '
               'the whole machine, from /proc/stat; both the mean of the '
               'rounds' % threadstate.PERIOD)


def profile_report(args, out):
    for row in args.rows:
        for env in row.envs:
            name = perf_name(row, env, args.rounds - 1)
            out.append('')
            out.append('perf, %s on %s, last round: smbd self time '
                       '(perf report -i %s/%s.data)' % (
                           row.name, env, args.profile, name))
            out.extend('  ' + ln for ln in perf_summary(args.profile, name))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='one round of 2 s per row and environment: '
                    'checks that the benchmark runs')
    ap.add_argument('--rows', default=','.join(r.name for r in ROWS))
    ap.add_argument('--rounds', type=int)
    ap.add_argument('--seconds', type=float)
    ap.add_argument('--profile', metavar='DIR',
                    help='record each measurement with perf into DIR and '
                    'print smbd\'s hottest symbols per row and environment')
    ap.add_argument('--also', default='',
                    help='environments added to every row: %s' %
                    ', '.join(BENCH_ENVS))
    args = ap.parse_args()
    also = [e for e in args.also.split(',') if e]
    if set(also) - set(BENCH_ENVS):
        ap.error('no environment %s' % ', '.join(set(also) -
                                                  set(BENCH_ENVS)))
    for row in ROWS:
        row.envs += [e for e in also if e not in row.envs]
    names = args.rows.split(',')
    unknown = set(names) - {r.name for r in ROWS}
    if unknown:
        ap.error('no row %s' % ', '.join(sorted(unknown)))
    args.rows = [r for r in ROWS if r.name in names]
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    return args


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit('bench_async_open: must run as root (test users, mount '
                 'namespace)')
    if not os.access(GENERATOR, os.X_OK):
        sys.exit('bench_async_open: %s not built (make; nettle-dev '
                 'missing?)' % GENERATOR)
    version = harness.smbd_version()
    out = ['samba-async-vfs bench_async_open, %s, %s, %s, %d CPUs, load '
           'average %.1f at start' % (
               time.strftime('%Y-%m-%d %H:%M'), version,
               os.uname().release, os.cpu_count(), os.getloadavg()[0])]
    print(out[0], flush=True)
    samples = {(row.name, env): [] for row in args.rows for env in row.envs}
    broken = {}
    with tempfile.TemporaryDirectory(prefix='asvfs-bench-ao-') as tmp:
        os.chmod(tmp, 0o755)		# the test users reach slowfs in it
        for storage in ('slowfs', 'ext4'):
            rows = [r for r in args.rows if r.storage == storage]
            if rows:
                run_storage(args, storage, rows, tmp, samples, broken)
    report(args, args.rows, samples, broken, out)
    if args.profile:
        profile_report(args, out)
    print('\n'.join(out[1:]))
    path = os.path.join(harness.BIN, 'bench-async-open.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')
    print('\nresults written to %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
