#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Byte-range lock grants across the nodes of a three-node CTDB cluster:
the default VFS against the full module stack.

The cluster is the selftest's (selftest/ctdb_cluster.py): three ctdbd on
this machine, one smbd per node with clustering = yes, one directory.

1. SMB holder on another node: node 1 holds a range over SMB, a blocking
   lock on node 0 is pending, node 1 unlocks; the time from the unlock
   request to the grant on node 0 (smbd's cluster-wide watch of the
   file's locking record in CTDB, with or without the modules).
2. Local holder: a process outside smbd holds the range (an OFD lock),
   a blocking lock on node 2 is pending, the holder lets go; the time
   from the release to the grant (the default smbd polls, 200 ms and
   up; async_brl is woken).

Environments run interleaved (A B A B ...) so machine noise hits both.
Prints p50 and p99 with ratios and writes bin/bench-cluster.txt.  Where
CTDB cannot run, the file says why.  Nothing here asserts a time.

    /usr/bin/python3 selftest/bench/bench_cluster.py [--quick] [--runs N]
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import brllib  # noqa: E402
import ctdb_cluster  # noqa: E402
import harness  # noqa: E402

ENVS = ['default', 'full_stack']
MEASURES = [
    ('grant on node 0 after node 1 unlocks',
     brllib.grant_after_unlock_on_other_node_ms),
    ('grant on node 2 after a local release',
     brllib.grant_after_local_release_ms),
]


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def measure(runs):
    envs = {e: harness.ENVIRONMENTS[e] for e in ENVS}
    cluster = ctdb_cluster.Cluster(envs, log_level='1')
    lat = {(m, e): [] for m, _ in MEASURES for e in ENVS}
    try:
        cluster.start()
        for i in range(runs):
            for m, fn in MEASURES:
                for e in ENVS:
                    lat[(m, e)].append(fn(cluster, e))
            print('bench_cluster: run %d/%d' % (i + 1, runs),
                  file=sys.stderr, flush=True)
    finally:
        cluster.cleanup()
    return lat


def report(lat, runs):
    out = ['Byte-range lock grants in a three-node CTDB cluster: default '
           'VFS vs full module stack (%s; %d runs)' %
           (time.strftime('%Y-%m-%d %H:%M'), runs), '',
           '%-44s %10s %10s %10s' % ('measure (ms)', 'default',
                                     'full_stack', 'ratio')]
    for m, _ in MEASURES:
        for name, p in (('p50', 50), ('p99', 99)):
            d = percentile(lat[(m, 'default')], p)
            f = percentile(lat[(m, 'full_stack')], p)
            out.append('%-44s %10.1f %10.1f %9.3fx' % (
                '%s, %s' % (m, name), d, f, f / d if d else float('nan')))
    out += ['', 'ratio: full_stack / default (lower is better)']
    return '\n'.join(out) + '\n'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='few runs: check that it works')
    ap.add_argument('--runs', type=int, default=None,
                    help='runs per measure and environment [20]')
    args = ap.parse_args()
    runs = args.runs or (2 if args.quick else 20)
    why = ctdb_cluster.unavailable()
    if why:
        text = 'bench_cluster: not run: %s\n' % why
    else:
        text = report(measure(runs), runs)
    print(text)
    path = os.path.join(harness.BIN, 'bench-cluster.txt')
    with open(path, 'w') as f:
        f.write(text)
    print('written to %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
