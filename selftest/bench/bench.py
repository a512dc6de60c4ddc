#!/usr/bin/python3
"""make bench: the same workloads on several environments, side by side.

Each workload runs on every environment in one run, interleaved (A B C A B
C ...), so that machine noise hits all of them alike. It prints, per
environment, the min and median wall time, the median server CPU time
(the smbd parent's cutime+cstime delta: the per-connection smbd is its
child and is reaped by it) and the ratios against the default
environment. Nothing here asserts a time.
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
import harness  # noqa: E402

MIB = 1024 * 1024

# Environments compared by default: Samba's default VFS, its in-tree
# asynchronous modules, and ours as they land (harness.ENVIRONMENTS).
DEFAULT_ENVS = ['default', 'io_uring', 'aio_pthread', 'async_dosmode']

# slowfs settings per storage: what a slow network or cloud-backed file
# system costs per operation.
SLOWFS_CONFIG = """\
# samba-async-vfs bench: a slow backing store
getxattr.delay_ms = 1
open.delay_ms = 2
create.delay_ms = 2
read.delay_ms = 1
write.delay_ms = 1
fsync.delay_ms = 5
"""


def smbclient(smbd, env, commands):
    p = subprocess.run(['smbclient', smbd.unc(env), '-p', str(smbd.port),
                        '-mSMB3', '-U', smbd.creds(), '-c', commands],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        raise RuntimeError('smbclient on %s failed: %s' % (env, p.stderr))


def children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return set(f.read().split())
    except OSError:
        return set()


def wait_reaped(smbd, baseline, timeout=10):
    """Wait until the per-connection smbd has exited and been reaped, so
    that its CPU time is in the parent's cutime."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if children(smbd.proc.pid) <= baseline:
            return
        time.sleep(0.02)


def measure(smbd, env, commands):
    baseline = children(smbd.proc.pid)
    cpu0 = smbd.cpu_children_seconds()
    t0 = time.monotonic()
    smbclient(smbd, env, commands)
    wall = time.monotonic() - t0
    wait_reaped(smbd, baseline)
    return wall, smbd.cpu_children_seconds() - cpu0


def make_file(path, size):
    with open(path, 'wb') as f:
        chunk = os.urandom(MIB)
        for _ in range(size // MIB):
            f.write(chunk)


class Workload:
    def __init__(self, name, setup, commands, describe):
        self.name = name
        self.setup = setup
        self.commands = commands
        self.describe = describe


def workloads(args, tmp, backing):
    """backing(path) maps a path below the share root to the backing
    store, where setup can write without going through slowfs."""
    src = os.path.join(tmp, 'write-src.bin')

    def setup_read(smbd, env, size):
        make_file(backing(os.path.join(smbd.share_path(env), 'read.bin')),
                  size)

    def setup_write(smbd, env, size):
        if not os.path.exists(src) or os.path.getsize(src) != size:
            make_file(src, size)

    def setup_list(smbd, env, count):
        # Created on the backing store directly: through slowfs this
        # would take count * create delay per environment.
        d = backing(os.path.join(smbd.share_path(env), 'list'))
        os.makedirs(d, exist_ok=True)
        owner = pwd.getpwnam(harness.USERS[0])
        for i in range(count):
            f = os.path.join(d, 'f%06d.txt' % i)
            with open(f, 'w'):
                pass
            os.chown(f, owner.pw_uid, owner.pw_gid)
        # Every entry gets the DOS attribute xattr that smbd wrote for the
        # first one, as files written over SMB have: the listing then
        # reads one user.DOSATTRIB per entry.
        smbclient(smbd, env, 'cd list; setmode f000000.txt +h; '
                  'setmode f000000.txt -h')
        blob = os.getxattr(os.path.join(d, 'f000000.txt'), 'user.DOSATTRIB')
        for i in range(1, count):
            os.setxattr(os.path.join(d, 'f%06d.txt' % i), 'user.DOSATTRIB',
                        blob)

    return {
        'read': lambda storage: Workload(
            'read', lambda s, e: setup_read(s, e, args.read_mib[storage] *
                                            MIB),
            'get read.bin /dev/null',
            'read a %d MiB file' % args.read_mib[storage]),
        'write': lambda storage: Workload(
            'write', lambda s, e: setup_write(s, e, args.write_mib * MIB),
            'put %s write.bin' % src,
            'write a %d MiB file' % args.write_mib),
        'list': lambda storage: Workload(
            'list', lambda s, e: setup_list(s, e, args.files[storage]),
            'cd list; ls',
            'list a %d-file directory' % args.files[storage]),
    }


def mount_slowfs(tmp):
    binary = os.path.join(harness.BIN, 'selftest', 'slowfs', 'slowfs')
    if not os.path.exists(binary):
        raise RuntimeError('%s missing: run make first' % binary)
    back = os.path.join(tmp, 'slow-back')
    mnt = os.path.join(tmp, 'slow-mnt')
    conf = os.path.join(tmp, 'slowfs.conf')
    os.makedirs(back)
    os.makedirs(mnt)
    os.chmod(tmp, 0o755)
    with open(conf, 'w') as f:
        f.write(SLOWFS_CONFIG)
    subprocess.run([binary, back, mnt, '-o', 'allow_other,default_permissions',
                    '--config=' + conf], check=True)
    return mnt, back


def unmount(mnt):
    subprocess.run(['fusermount3', '-u', mnt], stderr=subprocess.DEVNULL)


def run_storage(args, storage, tmp, out):
    share_root = None
    mnt = None

    def backing(path):
        return path

    if storage == 'slowfs':
        mnt, back = mount_slowfs(tmp)
        share_root = mnt

        def backing(path):  # noqa: F811
            return os.path.join(back, os.path.relpath(path, mnt))
    envs = {e: harness.ENVIRONMENTS[e] for e in args.envs}
    smbd = harness.Smbd(envs=envs, share_root=share_root,
                        workdir=tempfile.mkdtemp(prefix='asvfs-bench-'))
    try:
        smbd.start()
        wl_makers = workloads(args, tmp, backing)
        for wl_name in args.workloads:
            wl = wl_makers[wl_name](storage)
            for env in args.envs:
                wl.setup(smbd, env)
            samples = {env: [] for env in args.envs}
            for rnd in range(args.rounds + 1):
                for env in args.envs:
                    wall, cpu = measure(smbd, env, wl.commands)
                    if rnd > 0:     # round 0 warms caches for everyone
                        samples[env].append((wall, cpu))
            report(out, storage, wl, samples, args.envs)
    finally:
        smbd.stop()
        panics = smbd.panics()
        smbd.cleanup()
        if mnt:
            unmount(mnt)
    if panics:
        raise RuntimeError('smbd panicked: %s' % panics[:3])


def report(out, storage, wl, samples, envs):
    base = statistics.median(w for w, _ in samples[envs[0]])
    base_cpu = statistics.median(c for _, c in samples[envs[0]])
    lines = ['', '%s on %s (%d rounds)' % (wl.describe, storage,
                                           len(samples[envs[0]])),
             '  %-14s %9s %9s %9s %9s %9s' %
             ('environment', 'min s', 'median s', 'ratio', 'cpu s',
              'cpu ratio')]
    for env in envs:
        walls = [w for w, _ in samples[env]]
        cpus = [c for _, c in samples[env]]
        med, cmed = statistics.median(walls), statistics.median(cpus)
        lines.append('  %-14s %9.3f %9.3f %9.2f %9.3f %9s' %
                     (env, min(walls), med, med / base if base else 0,
                      cmed, '%.2f' % (cmed / base_cpu) if base_cpu else '-'))
    text = '\n'.join(lines)
    print(text, flush=True)
    out.append(text)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--workloads', default='read,write,list')
    ap.add_argument('--storage', default='ext4,slowfs')
    ap.add_argument('--envs', default=','.join(DEFAULT_ENVS))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--quick', action='store_true',
                    help='small sizes, one round: checks the bench runs')
    args = ap.parse_args()
    args.workloads = args.workloads.split(',')
    args.storage = args.storage.split(',')
    args.envs = args.envs.split(',')
    if args.envs[0] != 'default':
        args.envs = ['default'] + [e for e in args.envs if e != 'default']
    if args.quick:
        args.rounds = 1
        args.read_mib = {'ext4': 16, 'slowfs': 4}
        args.write_mib = 8
        args.files = {'ext4': 500, 'slowfs': 200}
    else:
        args.read_mib = {'ext4': 1024, 'slowfs': 256}
        args.write_mib = 256
        args.files = {'ext4': 20000, 'slowfs': 20000}
    return args


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit('bench: must run as root (test users, mount namespace)')
    out = ['samba-async-vfs bench, %s, smbd %s' %
           (time.strftime('%Y-%m-%d'), subprocess.run(
               ['smbd', '--version'], stdout=subprocess.PIPE,
               universal_newlines=True).stdout.strip())]
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
