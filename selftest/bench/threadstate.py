# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the connections' smbd main threads spend a benchmark's time.

A benchmark that misses a target has to say what bounds it.  smbd serves
a connection on one main thread (the tevent loop); our modules move
storage calls off it.  While a measurement runs, MainThreadSampler reads
/proc/<pid>/syscall of every connection's smbd main thread (the
connections that began after the sampler started) PERIOD times a second
and counts each sample as one of:

  running   on a CPU or waiting for one (not in a system call)
  in <call> blocked in that system call: storage round trips (on FUSE,
            each a wait for the file system daemon), locks, the socket
  idle      waiting for work in the event loop (epoll)

A main thread that is almost never idle is what bounds a single
connection: more requests in flight cannot go faster than it.  The
sampler also reads the machine's CPU time (/proc/stat) before and after:
CPUs that are almost never idle bound many connections together.

Reading /proc/<pid>/syscall needs root (ptrace access), as the
benchmarks run.  Sampling costs the benchmark about 1 % of one CPU.
"""
import statistics
import threading
import time

PERIOD = 200		# samples a second

# x86_64 system call numbers of the calls smbd blocks in; others are
# reported by number.
SYSCALLS = {
    0: 'read', 1: 'write', 2: 'open', 3: 'close', 4: 'stat', 5: 'fstat',
    6: 'lstat', 7: 'poll', 16: 'ioctl', 17: 'pread64', 18: 'pwrite64',
    19: 'readv', 20: 'writev', 21: 'access', 44: 'sendto', 45: 'recvfrom',
    46: 'sendmsg', 47: 'recvmsg', 72: 'fcntl', 74: 'fsync',
    75: 'fdatasync', 80: 'chdir', 81: 'fchdir', 82: 'rename', 83: 'mkdir',
    87: 'unlink', 89: 'readlink', 90: 'chmod', 91: 'fchmod', 92: 'chown',
    93: 'fchown', 137: 'statfs', 138: 'fstatfs', 188: 'setxattr',
    189: 'lsetxattr', 190: 'fsetxattr', 191: 'getxattr', 192: 'lgetxattr',
    193: 'fgetxattr', 194: 'listxattr', 196: 'flistxattr', 202: 'futex',
    217: 'getdents64', 232: 'epoll_wait', 257: 'openat', 258: 'mkdirat',
    260: 'fchownat', 262: 'newfstatat', 263: 'unlinkat', 264: 'renameat',
    267: 'readlinkat', 268: 'fchmodat', 269: 'faccessat', 271: 'ppoll',
    280: 'utimensat', 281: 'epoll_pwait', 316: 'renameat2', 332: 'statx',
    426: 'io_uring_enter', 437: 'openat2', 439: 'faccessat2',
    441: 'epoll_pwait2',
}
IDLE_CALLS = {'epoll_wait', 'epoll_pwait', 'epoll_pwait2'}


def descendants(pid):
    """All processes below pid (smbd may sit under unshare and sh)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            with open('/proc/%d/task/%d/children' % (p, p)) as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        found.update(kids)
        todo.extend(kids)
    return found


def cpu_times():
    """(busy, iowait, all) jiffies of the machine, from /proc/stat."""
    with open('/proc/stat') as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is in user)
    return sum(v[:8]) - v[3] - v[4], v[4], sum(v[:8])


def main_thread_state(pid):
    """'running', 'idle', a system call's name, or None when gone."""
    try:
        with open('/proc/%d/syscall' % pid) as f:
            text = f.read().split()
    except OSError:
        return None
    if not text:
        return None
    if text[0] == 'running':
        return 'running'
    try:
        nr = int(text[0])
    except ValueError:
        return None
    name = SYSCALLS.get(nr, 'syscall %d' % nr)
    return 'idle' if name in IDLE_CALLS else name


class MainThreadSampler:
    """start() before a measurement, stop() after it: the result."""

    def __init__(self, parent_pid):
        self.parent = parent_pid
        self.counts = {}
        self.samples = 0
        self.pids = set()
        self.done = threading.Event()

    def start(self):
        self.baseline = descendants(self.parent)
        self.cpu0 = cpu_times()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        last_scan = 0.0
        while not self.done.wait(1.0 / PERIOD):
            now = time.monotonic()
            if now - last_scan > 0.5:
                self.pids |= descendants(self.parent) - self.baseline
                last_scan = now
            for pid in self.pids:
                state = main_thread_state(pid)
                if state is None:
                    continue
                self.counts[state] = self.counts.get(state, 0) + 1
                self.samples += 1

    def stop(self):
        self.done.set()
        self.thread.join()
        busy1, iowait1, all1 = cpu_times()
        busy0, iowait0, all0 = self.cpu0
        total = float(all1 - all0) or 1.0
        shares = {k: v / float(self.samples or 1)
                  for k, v in self.counts.items()}
        return {
            'main_running': shares.pop('running', 0.0),
            'main_idle': shares.pop('idle', 0.0),
            'main_calls': shares,
            'cpu_busy': (busy1 - busy0) / total,
            'cpu_iowait': (iowait1 - iowait0) / total,
        }


def mean(results):
    """The mean of several stop() results (the rounds of one row)."""
    keys = ('main_running', 'main_idle', 'cpu_busy', 'cpu_iowait')
    m = {k: statistics.mean(r[k] for r in results) for k in keys}
    calls = {c for r in results for c in r['main_calls']}
    m['main_calls'] = {c: statistics.mean(r['main_calls'].get(c, 0.0)
                                          for r in results) for c in calls}
    return m


def describe(m, top=4):
    """One line from a stop() result (or the median of several)."""
    calls = sorted(m['main_calls'].items(), key=lambda kv: -kv[1])
    blocked = sum(v for _, v in calls)
    named = ', '.join('%s %.0f%%' % (k, 100 * v) for k, v in calls[:top]
                      if v >= 0.01)
    return ('main thread: running %.0f%%, in system calls %.0f%% (%s), '
            'idle %.0f%%; CPUs busy %.0f%%, iowait %.0f%%' % (
                100 * m['main_running'], 100 * blocked, named or '-',
                100 * m['main_idle'], 100 * m['cpu_busy'],
                100 * m['cpu_iowait']))
