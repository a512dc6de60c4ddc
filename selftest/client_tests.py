#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A second client, independent of smbtorture: smbnetfs, a FUSE file
system over libsmbclient, mounts the plain share and the full stack's
(with its defaults and with every asynchronous path forced on).

Through it fio writes files sequentially and at random offsets (several
jobs, block and file sizes that are no multiple of 512) and verifies them
by crc32c (O_DIRECT: its reads reach the server, not the client's page
cache), and cp copies a generated tree.  The mount is then made again,
so that nothing is read back from the client's cache: diff -r compares
the tree, and every file read through the client must equal the file on
the server's disk.  The full stack must end with the same names and sizes
as the plain share, and the tree with the same bytes (fio stamps its
blocks with the time).

The mounts live in a private mount namespace of their own (this file run
with --worker under unshare), so that no mount outlives the test.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import harness
from testlib import Skip

PREFIX = 'clients'		# of the test names: clients.<test>/<env>

# The plain share and the full stack, with its defaults and with every
# asynchronous path forced on, compared with each other.
ENVS = ['default', 'full_stack', 'full_stack_async']
# Directory of this test in each share.
TOPDIR = 'clients-smbnetfs'
MOUNT_TIMEOUT = 60
WORKER_TIMEOUT = 900

# Block and file sizes that are no multiple of 512 (nor of a page), and
# two jobs of each kind writing at once.
FIO_JOBS = """[global]
ioengine=psync
direct=1
verify=crc32c
verify_fatal=1
randrepeat=1
directory=%(dir)s

[seq]
rw=write
bs=3333
size=2000001
numjobs=2

[rand]
rw=randwrite
bsrange=1000-70000
bs_unaligned=1
size=3000017
numjobs=2
"""


# --- the worker, inside its own mount namespace --------------------------
def write_config(home, user, password):
    """smbnetfs reads its config and libsmbclient its smb.conf from
    $HOME/.smb; both are private to this test."""
    conf_dir = os.path.join(home, '.smb')
    os.makedirs(conf_dir, exist_ok=True)
    conf = os.path.join(conf_dir, 'smbnetfs.conf')
    with open(conf, 'w') as f:
        f.write('auth "%s" "%s"\n' % (user, password))
        f.write('smb_query_browsers false\n')
    os.chmod(conf, 0o600)
    open(os.path.join(conf_dir, 'smb.conf'), 'w').close()
    return conf


class Mount:
    """smbnetfs in the foreground, as our child: stopping it ends the
    mount.  Shares are found as <mountpoint>/<host>:<port>/<share>."""

    def __init__(self, work, port):
        self.home = os.path.join(work, 'home')
        self.point = os.path.join(work, 'mnt')
        self.port = port
        self.log = os.path.join(work, 'smbnetfs.log')
        self.proc = None

    def __enter__(self):
        os.makedirs(self.point, exist_ok=True)
        conf = write_config(self.home, harness.USERS[0], harness.PASSWORD)
        self.out = open(self.log, 'a')
        self.proc = subprocess.Popen(
            ['smbnetfs', self.point, '-f', '-o', 'config=' + conf],
            env=dict(os.environ, HOME=self.home), stdout=self.out,
            stderr=subprocess.STDOUT)
        harness.wait_until(lambda: os.path.ismount(self.point) or
                           self.proc.poll() is not None, MOUNT_TIMEOUT, 0.1)
        if not os.path.ismount(self.point):
            raise RuntimeError('smbnetfs did not mount (rc %s), see %s'
                               % (self.proc.poll(), self.log))
        return self

    def share(self, name):
        return os.path.join(self.point, '127.0.0.1:%d' % self.port, name)

    def __exit__(self, *exc):
        subprocess.run(['umount', self.point], stdout=self.out,
                       stderr=subprocess.STDOUT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def run_fio(work, share_dir, env):
    jobfile = os.path.join(work, 'jobs-%s.fio' % env)
    with open(jobfile, 'w') as f:
        # a ':' in a directory separates directories, unless escaped
        f.write(FIO_JOBS % {'dir': share_dir.replace(':', '\\:')})
    cmd = ['fio', jobfile]
    # fio keeps its verify state files in its working directory
    p = subprocess.run(cmd, cwd=work, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=WORKER_TIMEOUT)
    errors = [ln for ln in p.stdout.splitlines()
              if 'err=' in ln and 'err= 0' not in ln or 'fio:' in ln or
              'verify' in ln.lower()]
    return {'rc': p.returncode, 'out': ' | '.join(errors)[-800:]}


def tree_listing(root):
    """Sorted (relative path, size or None for a directory)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out.append((os.path.normpath(os.path.join(rel, d)), None))
        for f in filenames:
            path = os.path.join(dirpath, f)
            out.append((os.path.normpath(os.path.join(rel, f)),
                        os.path.getsize(path)))
    return sorted(out)


def file_hashes(root):
    hashes = {}
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            path = os.path.join(dirpath, f)
            h = hashlib.sha256()
            with open(path, 'rb') as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b''):
                    h.update(chunk)
            hashes[os.path.relpath(path, root)] = h.hexdigest()
    return hashes


def command(argv):
    """{'rc': exit status, 'out': the end of its output}."""
    p = subprocess.run(argv, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    return {'rc': p.returncode, 'out': p.stdout[-800:]}


def worker(args):
    work = args.work
    envs = args.envs.split(',')
    result = {e: {} for e in envs}
    with Mount(work, args.port) as m:
        for env in envs:
            top = os.path.join(m.share(env), TOPDIR)
            os.makedirs(os.path.join(top, 'fio'))
            result[env]['fio'] = run_fio(work, os.path.join(top, 'fio'),
                                         env)
            result[env]['copy'] = command(['cp', '-r', args.tree,
                                           os.path.join(top, 'tree')])
    # A new mount: what follows reads from the server, not from pages the
    # writes left in this client's cache.
    with Mount(work, args.port) as m:
        for env in envs:
            top = os.path.join(m.share(env), TOPDIR)
            result[env]['diff'] = command(['diff', '-r', args.tree,
                                           os.path.join(top, 'tree')])
            result[env]['listing'] = tree_listing(top)
            result[env]['hashes'] = file_hashes(top)
    print(json.dumps(result))


# --- the tests, on the selftest's smbd ---------------------------------
def make_tree(root, seed=26):
    """A deterministic tree: nested directories, an empty one, names with
    spaces and non-ASCII letters, empty files and sizes around 512 and
    page boundaries."""
    rnd = random.Random(seed)
    sizes = [0, 1, 511, 513, 4095, 4097, 65537, 131071, 300007]
    names = ['plain', 'with space', 'ümlaut', 'dots.in.name', 'UPPER',
             'x' * 60]
    os.makedirs(os.path.join(root, 'empty dir'))
    count = 0
    for a in range(6):
        for b in range(6):
            d = os.path.join(root, 'd%d %s' % (a, names[a]), 'sub%d' % b)
            os.makedirs(d)
            for i in range(12):
                size = rnd.choice(sizes)
                name = '%s-%d.%s' % (names[(a + b + i) % len(names)], i,
                                     rnd.choice(['txt', 'bin', 'c']))
                with open(os.path.join(d, name), 'wb') as f:
                    f.write(rnd.getrandbits(8 * size).to_bytes(size, 'little')
                            if size else b'')
                count += 1
    return count


def run_worker(smbd, envs, work, tree):
    cmd = ['unshare', '--mount', '--propagation', 'private', '--',
           sys.executable, os.path.abspath(__file__), '--worker',
           '--port', str(smbd.port), '--envs', ','.join(envs),
           '--work', work, '--tree', tree]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=WORKER_TIMEOUT)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        log = os.path.join(work, 'smbnetfs.log')
        tail = open(log, errors='replace').read()[-300:] \
            if os.path.exists(log) else ''
        raise RuntimeError('worker rc %d: %s %s' % (
            p.returncode, p.stderr[-500:], tail))
    return json.loads(lines[-1])


# What the worker saw, per smbd: {env: result} or the reason it has none
RESULTS = {}


def result(smbd, env):
    """What the client did and saw on env: the worker runs once per smbd,
    on every environment of ENVS it serves."""
    if smbd.dir not in RESULTS:
        RESULTS[smbd.dir] = run_clients(smbd)
    got = RESULTS[smbd.dir]
    assert isinstance(got, dict), got
    return got[env]


def run_clients(smbd):
    envs = [e for e in ENVS if e in smbd.envs]
    missing = [t for t in ('smbnetfs', 'fio') if shutil.which(t) is None]
    if missing or not os.path.exists('/dev/fuse'):
        return 'missing %s (make bootstrap installs them)' % (
            ' '.join(missing) or '/dev/fuse')
    work = tempfile.mkdtemp(prefix='asvfs-clients-')
    try:
        tree = os.path.join(work, 'tree')
        make_tree(tree)
        got = run_worker(smbd, envs, work, tree)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return 'smbnetfs: %s' % str(e)[:600]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # what the server stored, and the trees removed again
    for env in envs:
        top = os.path.join(smbd.share_path(env), TOPDIR)
        got[env]['on_disk'] = file_hashes(top)
        shutil.rmtree(top, ignore_errors=True)
    return got


def smbnetfs_fio_writes_verify(smbd, env):
    r = result(smbd, env)
    assert r['fio']['rc'] == 0, 'fio rc %d: %s' % (r['fio']['rc'],
                                                   r['fio']['out'])


def smbnetfs_tree_copy_diff_clean(smbd, env):
    r = result(smbd, env)
    assert r['copy']['rc'] == 0, 'cp: %s' % r['copy']['out']
    assert r['diff']['rc'] == 0, 'diff -r: %s' % r['diff']['out']


def smbnetfs_reads_what_server_stored(smbd, env):
    r = result(smbd, env)
    on_disk, seen = r['on_disk'], r['hashes']
    assert set(on_disk) == set(seen), 'names differ: only on disk %s, ' \
        'only through the client %s' % (sorted(set(on_disk) - set(seen))[:5],
                                         sorted(set(seen) - set(on_disk))[:5])
    bad = sorted(n for n in on_disk if on_disk[n] != seen[n])
    assert not bad, 'content differs: %s' % bad[:5]


def smbnetfs_same_as_default(smbd, env):
    if 'default' not in smbd.envs:
        raise Skip('no default environment in this run')
    r, default = result(smbd, env), result(smbd, 'default')
    a = [tuple(x) for x in r['listing']]
    b = [tuple(x) for x in default['listing']]
    assert a == b, 'names or sizes differ from default: %s' % \
        sorted(set(a) ^ set(b))[:5]
    # fio stamps each block's verify header with the time: only the
    # tree's contents can equal the default's
    bad = sorted(n for n in default['hashes'] if n.startswith('tree/') and
                 r['hashes'].get(n) != default['hashes'][n])
    assert not bad, 'content differs from default: %s' % bad[:5]


# On the shared smbd, on the environments of ENVS it serves
SHARED = [
    (smbnetfs_fio_writes_verify, ENVS),
    (smbnetfs_tree_copy_diff_clean, ENVS),
    (smbnetfs_reads_what_server_stored, ENVS),
    (smbnetfs_same_as_default, ENVS[1:]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--worker', action='store_true', required=True)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--envs', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--tree', required=True)
    worker(ap.parse_args())


if __name__ == '__main__':
    main()
