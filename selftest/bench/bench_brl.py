#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte-range lock benchmark: the default VFS against async_brl.

1. Grant latency after an external release: a local process holds a range
   (an OFD lock), an SMB client asks for it with a blocking lock, the
   holder lets go after 300 ms or 3 s; the time from the release to the
   grant, 20 runs each (p50, p99).  The default smbd polls for such a
   holder (200 ms growing to 2 s); async_brl is woken.
2. Lock/unlock pairs per second on an uncontended file (one client, one
   handle, non-blocking exclusive lock then unlock): what the module costs
   when nothing waits.

Environments run interleaved (A B A B ...) so machine noise hits both.
Prints a table with ratios and writes bin/bench-brl.txt.  Nothing here
asserts a time.

    /usr/bin/python3 selftest/bench/bench_brl.py [--quick]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import smb2client  # noqa: E402
from brllib import grant_latency_ms, new_file  # noqa: E402

ENVS = ['default', 'async_brl']


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def lock_pairs_per_second(smbd, env, pairs):
    c = smb2client.Client(smbd, env)
    try:
        fid, _ = new_file(smbd, env, c, 'pairs.bin')
        flags = smb2client.LOCK_EXCLUSIVE | smb2client.LOCK_FAIL_IMMEDIATELY
        t0 = time.monotonic()
        for i in range(pairs):
            off = (i % 64) * 10
            assert smb2client.lock(c, fid, off, 10, flags) == \
                'STATUS_SUCCESS'
            assert smb2client.lock(c, fid, off, 10,
                                   smb2client.LOCK_UNLOCK) == \
                'STATUS_SUCCESS'
        elapsed = time.monotonic() - t0
        c.close(fid)
        return pairs / elapsed
    finally:
        c.logoff()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='few runs: check that it works')
    ap.add_argument('--runs', type=int, default=None,
                    help='latency runs per hold and environment [20]')
    ap.add_argument('--pairs', type=int, default=None,
                    help='lock/unlock pairs per round [2000]')
    ap.add_argument('--rounds', type=int, default=None,
                    help='lock/unlock rounds per environment [5]')
    return ap.parse_args()


def main():
    args = parse_args()
    runs = args.runs or (2 if args.quick else 20)
    pairs = args.pairs or (200 if args.quick else 2000)
    rounds = args.rounds or (2 if args.quick else 5)
    holds = (0.3, 3.0)
    envs = {e: harness.ENVIRONMENTS[e] for e in ENVS}
    smbd = harness.Smbd(envs=envs, log_level='1')
    smbd.start()
    lat = {(h, e): [] for h in holds for e in ENVS}
    rate = {e: [] for e in ENVS}
    try:
        for h in holds:
            for i in range(runs):
                for e in ENVS:
                    lat[(h, e)].append(
                        grant_latency_ms(smbd, e, 'lat.bin', hold=h)[0])
                print('bench_brl: hold %.1f s, run %d/%d' % (h, i + 1, runs),
                      file=sys.stderr, flush=True)
        for e in ENVS:    # warm-up
            lock_pairs_per_second(smbd, e, max(20, pairs // 10))
        for i in range(rounds):
            for e in ENVS:
                rate[e].append(lock_pairs_per_second(smbd, e, pairs))
    finally:
        smbd.cleanup()

    out = []
    out.append('Byte-range locks: default VFS vs async_brl (%s, %s; %d '
               'runs per hold, %d x %d lock/unlock pairs)' %
               (time.strftime('%Y-%m-%d %H:%M'), harness.smbd_version(),
                runs, rounds, pairs))
    out.append('')
    out.append('%-40s %12s %12s %10s' % ('measure', 'default', 'async_brl',
                                          'ratio'))
    for h in holds:
        for name, p in (('p50', 50), ('p99', 99)):
            d = percentile(lat[(h, 'default')], p)
            a = percentile(lat[(h, 'async_brl')], p)
            out.append('%-40s %12.1f %12.1f %9.3fx' % (
                'grant after %.1f s hold, %s ms' % (h, name), d, a,
                a / d if d else float('nan')))
    d = statistics.median(rate['default'])
    a = statistics.median(rate['async_brl'])
    out.append('%-40s %12.0f %12.0f %9.3fx' % (
        'uncontended lock/unlock pairs/s (median)', d, a, a / d))
    out.append('')
    out.append('ratio: async_brl / default (latency: lower is better; '
               'pairs/s: higher is better)')
    text = '\n'.join(out) + '\n'
    print(text)
    path = os.path.join(harness.BIN, 'bench-brl.txt')
    with open(path, 'w') as f:
        f.write(text)
    print('written to %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
