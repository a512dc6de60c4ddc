#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of asynchronous opens on slow storage (slowfs).

1. creates/s: 8 concurrent clients (one connection each), each keeping
   WIDTH creates in flight on one connection (one per subdirectory: the
   kernel serialises creates within one directory), each created file
   closed again; slowfs adds 5 ms to every create.
2. latency of an unrelated request (SMB2 echo) sent on a connection right
   after a create that slowfs delays by 500 ms: p50/p99.
3. the machine's ceiling: the default VFS with no create delay at all,
   8 clients x WIDTH creates in flight.  No asynchronous open can make
   creates cheaper than free storage does, so ceiling / default (+5 ms)
   bounds what any module can gain here.

Environments: the default VFS, Samba's aio_pthread with "aio open" (which
switches itself off when multichannel is on, as it is by default since
4.15 and in this harness) and async_open with its defaults.

    /usr/bin/python3 selftest/bench/bench_open.py [--quick]

prints a table with ratios against the default and writes
bin/bench-open.txt. Nothing here asserts a time.
"""
import argparse
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from bench import mount_slowfs  # noqa: E402

ENVS = ['default', 'aio_pthread', 'async_open', 'async_open_threads']
BENCH_ENVS = {
    'default': harness.ENVIRONMENTS['default'],
    'aio_pthread': harness.ENVIRONMENTS['aio_pthread'],
    'async_open': ('async_open', {}),		# mode = creates
    'async_open_threads': ('async_open', {'async_open:backend': 'threads'}),
}
CLIENTS = 8
CREATE_MS = 5
SLOW_CREATE_MS = 500


def set_slowfs(conf, *lines):
    text = '\n'.join(lines) + '\n'
    with open(conf + '.new', 'w') as f:
        f.write(text)
    os.rename(conf + '.new', conf)

    def loaded():			# slowfs acknowledges what it loaded
        try:
            with open(conf + '.loaded') as f:
                return f.read() == text
        except FileNotFoundError:
            return False
    if not harness.wait_until(loaded):
        raise RuntimeError('slowfs did not load %s' % conf)


# --- one client process ------------------------------------------------------

def client_main(argv):
    """--client PORT SHARE CID WIDTH START SECONDS TAG: create files
    (names start with TAG) until SECONDS after START (epoch), print the
    number created."""
    import smb2client
    port, share, cid, width, start, seconds, tag = argv
    cid, width = int(cid), int(width)
    start, seconds = float(start), float(seconds)

    class Fake:
        pass
    smbd = Fake()
    smbd.port = int(port)
    smbd.creds = lambda user=None: '%s%%%s' % (user or harness.USERS[0],
                                              harness.PASSWORD)
    rc = smb2client.RawConn(smbd, share)
    user = harness.USERS[0]
    rc.login(user)
    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    done = i = 0
    while time.time() < end:
        mids = [rc.send_create(user, 'c%d_%d\\%s-f%d' % (cid, k, tag, i),
                               smb2client.FILE_CREATE)
                for k in range(width)]
        fids = []
        for m in mids:
            status, action, fid = smb2client.create_result(*rc.wait(m)[:2])
            if status != 0:
                raise SystemExit('create failed: %#x' % status)
            fids.append(fid)
        for m in [rc.send_close(user, f) for f in fids]:
            rc.wait(m)
        done += width
        i += 1
    print(done, time.time() - start)
    rc.disconnect()


# --- the workloads -----------------------------------------------------------

def make_dirs(back_share, width):
    pw = pwd.getpwnam(harness.USERS[0])
    for c in range(CLIENTS):
        for k in range(width):
            d = os.path.join(back_share, 'c%d_%d' % (c, k))
            os.makedirs(d, exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)


def creates_per_second(smbd, env, clients, width, seconds):
    start = time.time() + 2.0		# all clients logged in by then
    tag = '%d-%d' % (clients, int(start * 1000))
    procs = [subprocess.Popen(
        ['/usr/bin/python3', os.path.abspath(__file__), '--client',
         str(smbd.port), env, str(c), str(width), repr(start),
         str(seconds), tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True) for c in range(clients)]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError('client on %s failed: %s' % (env, err[-400:]))
        total += int(out.split()[0])
    return total / seconds


def echo_latency(smbd, env, samples):
    import smb2client
    rc = smb2client.RawConn(smbd, env)
    user = harness.USERS[0]
    rc.login(user)
    lat = []
    try:
        for i in range(samples):
            mid = rc.send_create(user, 'lat-%d' % i, smb2client.FILE_CREATE)
            time.sleep(0.02)	# the create reaches smbd first
            _, _, waited = rc.wait(rc.send_echo(user))
            lat.append(waited * 1000)
            status, _, fid = smb2client.create_result(*rc.wait(mid)[:2])
            if fid is not None:
                rc.close(user, fid)
    finally:
        rc.disconnect()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return statistics.median(lat), p99


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='short runs (a few seconds per environment)')
    ap.add_argument('--envs', default=','.join(ENVS))
    args = ap.parse_args()
    args.envs = args.envs.split(',')
    args.width = 16
    args.seconds = 3.0 if args.quick else 10.0
    args.rounds = 1 if args.quick else 3
    args.samples = 10 if args.quick else 50
    return args


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--client':
        return client_main(sys.argv[2:])
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit('bench_open: must run as root (test users, mount namespace)')
    version = harness.smbd_version()
    out = ['samba-async-vfs bench_open, %s, %s, %s, %d CPUs' % (
        time.strftime('%Y-%m-%d'), version, os.uname().release,
        os.cpu_count())]
    print(out[0], flush=True)
    rates = {(n, e): [] for n in (CLIENTS, 1) for e in args.envs}
    lats = {}
    with tempfile.TemporaryDirectory(prefix='asvfs-bench-open-') as tmp:
        mnt, back = mount_slowfs(tmp)
        conf = os.path.join(tmp, 'slowfs.conf')
        smbd = harness.Smbd(envs={e: BENCH_ENVS[e] for e in args.envs},
                            share_root=mnt,
                            workdir=tempfile.mkdtemp(prefix='asvfs-bench-'))
        try:
            smbd.start()
            for env in args.envs:
                make_dirs(os.path.join(back, env), args.width)
            set_slowfs(conf, 'create.delay_ms = %d' % CREATE_MS)
            for rnd in range(args.rounds):	# interleaved: A B C A B C
                for n, env in rates:
                    rates[n, env].append(creates_per_second(
                        smbd, env, n, args.width, args.seconds))
                    print('  creates/s %d x %-12s %8.0f' % (
                        n, env, rates[n, env][-1]), flush=True)
            ceiling = []
            if 'default' in args.envs:
                set_slowfs(conf, 'create.delay_ms = 0')
                for rnd in range(args.rounds):
                    ceiling.append(creates_per_second(
                        smbd, 'default', CLIENTS, args.width,
                        args.seconds))
                    print('  creates/s ceiling (no delay) %8.0f' %
                          ceiling[-1], flush=True)
            set_slowfs(conf, 'create.delay_ms = %d' % SLOW_CREATE_MS,
                       'path_filter = lat-')
            for env in args.envs:
                lats[env] = echo_latency(smbd, env, args.samples)
                print('  echo ms   %-12s p50 %7.1f p99 %7.1f' % (
                    env, lats[env][0], lats[env][1]), flush=True)
        finally:
            smbd.stop()
            smbd.cleanup()
            subprocess.run(['fusermount3', '-u', mnt],
                           stderr=subprocess.DEVNULL)
    for n in (CLIENTS, 1):
        base = statistics.median(rates[n, 'default']) \
            if (n, 'default') in rates else 0
        out.append('')
        out.append('creates/s: %d client(s) x %d creates in flight, slowfs '
                   'create +%d ms, %s s x %d rounds (median)' % (
                       n, args.width, CREATE_MS, args.seconds, args.rounds))
        out.append('%-12s %10s %10s' % ('env', 'creates/s', 'x default'))
        for env in args.envs:
            r = statistics.median(rates[n, env])
            out.append('%-12s %10.0f %10.2f' % (env, r,
                                                 r / base if base else 0))
    if ceiling:
        base = statistics.median(rates[CLIENTS, 'default'])
        out.append('')
        out.append('ceiling: default, %d clients x %d in flight, no create '
                   'delay: %.0f creates/s = %.2fx default at +%d ms' % (
                       CLIENTS, args.width, statistics.median(ceiling),
                       statistics.median(ceiling) / base if base else 0,
                       CREATE_MS))
    out.append('')
    out.append('echo latency behind a pending create (slowfs create +%d '
               'ms), %d samples' % (SLOW_CREATE_MS, args.samples))
    out.append('%-12s %10s %10s' % ('env', 'p50 ms', 'p99 ms'))
    for env in args.envs:
        out.append('%-12s %10.1f %10.1f' % (env, lats[env][0],
                                             lats[env][1]))
    if 'aio_pthread' in args.envs:
        out.append('')
        out.append('aio_pthread: "aio open" is off with multichannel, which '
                   'this server (as Samba >= 4.15 by default) has on')
    text = '\n'.join(out)
    print('\n' + '\n'.join(out[1:]))
    path = os.path.join(harness.BIN, 'bench-open.txt')
    with open(path, 'w') as f:
        f.write(text + '\n')
    print('\nresults written to %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
