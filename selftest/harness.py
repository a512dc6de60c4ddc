#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private smbd for tests and benchmarks.

Starts the installed smbd on 127.0.0.1 with its own smb.conf, state dirs,
passdb and test users, serving one share per environment.  Samba 4.17
loads VFS modules only from its modules dir, so smbd runs in a private
mount namespace where a copy of that dir, holding Samba's modules and ours,
is bind-mounted over the system one: nothing is written to the system.
"""
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Samba release under test: the installed one (None), or another
# series (make test SAMBA=4.22 sets ASVFS_SAMBA) whose smbd runs in its
# chroot (buildtools/prepare-chroot.sh).  The build under test is
# bin-<series> (or $ASVFS_OUT, the out dir the Makefile builds into), or
# the sanitized build (make test SANITIZE=1 sets ASVFS_BIN to
# bin-sanitize), or bin.
SAMBA = os.environ.get('ASVFS_SAMBA') or None
BIN = os.environ.get('ASVFS_BIN') or os.path.join(
    TOP, os.environ.get('ASVFS_OUT') or ('bin-' + SAMBA if SAMBA else 'bin'))
IN_RUNTIME = os.path.join(TOP, 'buildtools', 'in-runtime.sh')

GROUP = 'asvfs_grp'
PASSWORD = 'Asvfs-Test-Pw1'
# Two users with access to every share and a third one without.
USERS = ['asvfs_u1', 'asvfs_u2']
OUTSIDER = 'asvfs_u3'

# Share options of Samba's own selftest file server, as far as the
# modules exist in Debian (fake_acls and xattr_tdb are test-only there).
BASE_VFS = 'acl_xattr streams_xattr'
SHARE_DEFAULTS = {
    'read only': 'no',
    'ea support': 'yes',
    'store dos attributes': 'yes',
    'map archive': 'yes',
    'map hidden': 'no',
    'map system': 'no',
    'map readonly': 'no',
    'dos filemode': 'yes',
    'strict rename': 'yes',
    'create mask': '0755',
    'valid users': ' '.join(USERS),
}

# Variants of every environment's share, for suites that need other share
# options (as Samba's selftest runs smb2.durable-open on its [durable]).
SHARE_VARIANTS = {
    'durable': {'kernel share modes': 'no', 'kernel oplocks': 'no',
                'posix locking': 'no'},
    # every write is followed by an fsync: asynchronous writes chain
    # SMB_VFS_FSYNC_SEND on smbd's event context ...
    'writethrough': {'strict sync': 'yes', 'sync always': 'yes'},
    # ... synchronous ones call smb_vfs_fsync_sync(), which runs it on a
    # temporary event context
    'syncwrite': {'strict sync': 'yes', 'sync always': 'yes',
                  'aio write size': '0'},
}

# Our production modules; each logs its counters at level 5 through its
# own debug class.
MODULES = ['async_uring', 'async_xattr', 'async_dosattr', 'async_brl',
           'async_open']
LOG_LEVEL = '1 ' + ' '.join('%s:5' % m for m in MODULES)

# The environments: name -> (extra vfs objects, extra share options)
ENVIRONMENTS = {
    'default': ('', {}),
    'io_uring': ('io_uring', {}),
    'aio_pthread': ('aio_pthread', {'aio_pthread:aio open': 'yes'}),
    'async_dosmode': ('', {'smbd async dosmode': 'yes'}),
    'canary': ('asvfs_canary', {'asvfs_canary:log level': '1'}),
    'async_uring': ('async_uring', {}),
    # async dosmode on, so that listings call getxattrat; mode async, so
    # that every call goes through the ring even on a fast disk
    'async_xattr': ('async_xattr', {'smbd async dosmode': 'yes',
                                    'async_xattr:mode': 'async'}),
    # async dosmode on: listings call get_dos_attributes_send; mode async,
    # so that every read goes through the ring even on a fast disk
    'async_dosattr': ('async_dosattr', {'smbd async dosmode': 'yes',
                                        'async_dosattr:mode': 'async'}),
    # async dosmode on, every read answered at once (as mode auto does on
    # a fast disk until it has steered smbd's listing to synchronous)
    'async_dosattr_sync': ('async_dosattr', {'smbd async dosmode': 'yes',
                                             'async_dosattr:mode': 'sync'}),
    # smbd's default synchronous listing, with the prefetch forced on
    # (auto prefetches only on slow storage) and files older than 20 ms
    # trusted by ctime (ext4 stamps ctime from a coarse clock, <= 10 ms)
    'async_dosattr_prefetch': ('async_dosattr',
                               {'async_dosattr:prefetch': 'yes',
                                'async_dosattr:ctime granularity msec':
                                '20'}),
    # byte-range locks woken when a POSIX holder lets go ("posix locking"
    # is on by default)
    'async_brl': ('async_brl', {}),
    # ... and the POSIX lock of every decision taken on a thread (for
    # file systems where fcntl is slow), answered with NT_STATUS_RETRY
    'async_brl_decide': ('async_brl', {'async_brl:decision': 'async'}),
    # mode all: creates and opens of existing files both go asynchronous
    'async_open': ('async_open', {'async_open:mode': 'all'}),
    # every production module of this project, left is top (grows as the
    # modules land), with their defaults
    'full_stack': ('async_open async_brl async_dosattr async_xattr '
                   'async_uring',
                   {'smbd async dosmode': 'yes'}),
    # ... and with every asynchronous path forced on, the paths the
    # defaults keep for slow storage
    'full_stack_async': ('async_open async_brl async_dosattr async_xattr '
                         'async_uring',
                         {'smbd async dosmode': 'yes',
                          'async_open:mode': 'all',
                          'async_brl:decision': 'async',
                          'async_dosattr:mode': 'async',
                          'async_dosattr:prefetch': 'yes',
                          'async_xattr:mode': 'async'}),
}


def sanitizer_runtimes():
    """The ASan and UBSan runtimes of a sanitized build (waf configure
    --sanitize records them in its out dir), or None."""
    try:
        with open(os.path.join(BIN, 'sanitize-preload')) as f:
            return f.read().split() or None
    except OSError:
        return None


SANITIZER_RUNTIMES = sanitizer_runtimes()

# Every sanitizer report of a process this harness started (or of a unit
# test): (what ran, log file, report text).  selftest.py turns each into a
# failure.
SANITIZER_REPORTS = []
# Reports of stock smbd's own code, shown but not counted (see
# collect_sanitizer_reports).
SANITIZER_FOREIGN = []
# Where the reports are kept once a work dir is removed.
SANITIZER_KEEP = os.path.join(BIN, 'selftest-results', 'sanitizer')


def sanitizer_env(logdir):
    """Environment of a process that runs our sanitized code: its
    reports go to files in logdir, one per process (report.<pid>).

    smbd is not built with ASan, so the runtime is preloaded (LD_PRELOAD,
    see Smbd.start()); verify_asan_link_order=0 keeps ASan from refusing
    to start over the order of the libraries it finds, which is not ours
    to choose in smbd.  Leaks are checked (each smbd child runs
    LeakSanitizer at its exit) and sorted in collect_sanitizer_reports();
    print_module_map=1 ends each fatal report with the loaded libraries.
    The directory is world-writable: a report is written with the
    identity smbd has at that moment, which may be a test user's."""
    os.makedirs(logdir, exist_ok=True)
    os.chmod(logdir, 0o1777)
    # one prefix for all: the ASan runtime takes log_path from whichever
    # of these it parses last
    log_path = 'log_path=' + os.path.join(logdir, 'report')
    asan = [log_path,
            'verify_asan_link_order=0', 'detect_leaks=1',
            'halt_on_error=1', 'abort_on_error=0', 'disable_coredump=1',
            'malloc_context_size=30', 'print_module_map=1',
            'detect_stack_use_after_return=0']
    ubsan = [log_path,
             'print_stacktrace=1', 'halt_on_error=0']
    return {'ASAN_OPTIONS': ':'.join(asan),
            'UBSAN_OPTIONS': ':'.join(ubsan),
            'LSAN_OPTIONS': log_path}


# A frame of our own code in a report: our sources, modules, engine or
# test programs.
OUR_FRAME = re.compile(r'/(modules|selftest)/|libasync_vfs_engine\.so|'
                       r'/vfs/(async_\w+|asvfs_canary)\.so')


def split_reports(text):
    """A sanitizer log split into its reports (one per ERROR header)."""
    parts = re.split(r'\n(?=(?:=+\n)?==\d+==ERROR: )', '\n' + text)
    return [p.strip('\n') for p in parts if 'ERROR: ' in p]


def our_leaks(report):
    """The leaks of a LeakSanitizer report allocated by our code (one
    block per allocation stack; a module map after them is cut off)."""
    report = re.split(r'\n==\d+==Process (?:module|memory) map', report)[0]
    blocks = re.split(r'\n(?=(?:Direct|Indirect) leak of )', report)
    return [b for b in blocks[1:] if OUR_FRAME.search(b)]


def collect_sanitizer_reports(logdir, what, tag=None):
    """Add every report found in logdir to SANITIZER_REPORTS (once) and
    keep a copy under SANITIZER_KEEP.

    Only reports about our code count, as only our code is built with the
    sanitizers, but smbd's own allocations and libc calls are seen through
    the preloaded runtime:
    - a leak counts when one of its allocation frames is ours: every smbd
      child exits with a strdup of libsamba-passdb never freed, which is
      Samba's;
    - any other ASan report counts when a frame of any of its stacks is
      ours or its process had our modules loaded (the module map printed
      at the end of the report).  The rest, from processes of stock
      smbd's own shares, go to SANITIZER_FOREIGN: smbd 4.17 frees the
      buffer of a READ its thread pool is still filling when a client
      disconnects on the default VFS."""
    if not os.path.isdir(logdir):
        return
    os.makedirs(SANITIZER_KEEP, exist_ok=True)
    for name in sorted(os.listdir(logdir)):
        path = os.path.join(logdir, name)
        if name.endswith('.seen') or not os.path.isfile(path):
            continue
        with open(path, errors='replace') as f:
            text = f.read()
        os.rename(path, path + '.seen')
        shutil.copy2(path + '.seen', os.path.join(
            SANITIZER_KEEP, '%s-%s' % (tag or os.path.basename(what), name)))
        for report in split_reports(text):
            if 'ERROR: LeakSanitizer' in report:
                leaks = our_leaks(report)
                if leaks:
                    SANITIZER_REPORTS.append((what, path, '\n'.join(
                        [report.splitlines()[0]] + leaks)))
            elif OUR_FRAME.search(report):
                SANITIZER_REPORTS.append((what, path, report))
            else:
                SANITIZER_FOREIGN.append((what, path, report))


def ubsan_reports(text):
    """UBSan reports in a process's output: the runtime error line and
    its stack.  Next to ASan, GCC 12's UBSan runtime ignores log_path and
    writes to stderr, which smbd points at its log file."""
    reports = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if 'runtime error: ' not in line:
            continue
        block = [line]
        for frame in lines[i + 1:i + 40]:
            if not re.match(r'\s+#\d+ ', frame):
                break
            block.append(frame)
        reports.append('\n'.join(block))
    return reports


# How far each log file has been read for UBSan reports.
_UBSAN_SCANNED = {}


def collect_ubsan_reports(logdir, what):
    """Add the UBSan reports written to the log files in logdir since the
    last call to SANITIZER_REPORTS."""
    if not os.path.isdir(logdir):
        return
    for name in sorted(os.listdir(logdir)):
        path = os.path.join(logdir, name)
        if not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            f.seek(_UBSAN_SCANNED.get(path, 0))
            text = f.read().decode(errors='replace')
            _UBSAN_SCANNED[path] = f.tell()
        for report in ubsan_reports(text):
            SANITIZER_REPORTS.append((what, path, report))


def sanitizer_report_head(text, lines=12):
    """The first lines of a report that say what and where."""
    keep = [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not ln.startswith('====')]
    return '\n    '.join(keep[:lines])


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# The bound on every wait for a condition in the selftest: far above what
# anything takes on an idle machine, so that a busy one (load 7 on 2
# cores) makes a test slower, never changes its verdict.
WAIT_SECS = 60


def wait_until(cond, timeout=WAIT_SECS, interval=0.02):
    """Poll cond() until it is true; True if it became true within
    timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def runtime_cmd(argv, binds=(), bind_to=()):
    """argv as run against the Samba under test: unchanged for the
    installed one, else inside its chroot, with binds (host paths, seen at
    the same path) and bind_to ((host path, path in the chroot) pairs)."""
    if SAMBA is None:
        return list(argv)
    cmd = ['bash', IN_RUNTIME, '--samba', SAMBA]
    for b in binds:
        cmd += ['--bind', b]
    for src, dst in bind_to:
        cmd += ['--bind-to', src, dst]
    return cmd + ['--'] + list(argv)


def smbd_version():
    """The version line of the smbd under test (the chroot's for SAMBA)."""
    return subprocess.run(runtime_cmd(['smbd', '--version']),
                          stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


def samba_series():
    """(major, minor) of the Samba under test, e.g. (4, 22)."""
    if SAMBA is not None:
        return tuple(int(x) for x in SAMBA.split('.')[:2])
    out = subprocess.run(['smbd', '--version'], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    m = re.search(r'(\d+)\.(\d+)\.', out)
    return int(m.group(1)), int(m.group(2))


def runtime_root():
    """The host path of the chroot's / (empty for the installed Samba)."""
    if SAMBA is None:
        return ''
    return subprocess.run(
        ['bash', os.path.join(TOP, 'buildtools', 'prepare-chroot.sh'),
         '--samba', SAMBA, '--print-root'], stdout=subprocess.PIPE,
        universal_newlines=True, check=True).stdout.strip()


def patched_smbd():
    """The launcher of an smbd built with patches/ (by
    buildtools/build-patched-smbd.sh, or $ASVFS_PATCHED_SMBD), or None."""
    path = os.environ.get('ASVFS_PATCHED_SMBD') or \
        os.path.join(BIN, 'patched-smbd', 'smbd')
    return path if os.access(path, os.X_OK) else None


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def ensure_users():
    """Create the test group and users (idempotent) with smbpasswd-able
    unix accounts; they never get a login shell or home."""
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        run(['groupadd', GROUP])
    for user in USERS + [OUTSIDER]:
        try:
            pwd.getpwnam(user)
        except KeyError:
            cmd = ['useradd', '-M', '-N', '-s', '/usr/sbin/nologin']
            if user in USERS:
                cmd += ['-G', GROUP]
            run(cmd + [user])


def our_modules():
    """Module .so files of this build (modules and the test canary) plus
    the engine library they link against."""
    found = []
    for sub in ('modules', 'selftest'):
        d = os.path.join(BIN, sub)
        if os.path.isdir(d):
            found += [os.path.join(d, f) for f in sorted(os.listdir(d))
                      if f.endswith('.so')]
    engine = os.path.join(BIN, 'modules', 'lib', 'libasync_vfs_engine.so')
    if not os.path.exists(engine):
        raise RuntimeError('%s missing: run make first' % engine)
    return found + [engine]


def smbd_modules_dir(binary='smbd'):
    out = subprocess.run(runtime_cmd([binary, '-b']),
                         stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    m = re.search(r'^\s+MODULESDIR:\s+(\S+)$', out, re.M)
    return os.path.join(m.group(1), 'vfs')


class Smbd:
    """One private smbd with one share per environment."""

    def __init__(self, envs=None, workdir=None, extra_global=None,
                 share_root=None, log_level='1', port=None, wrapper=None,
                 binary='smbd'):
        self.envs = envs if envs is not None else dict(ENVIRONMENTS)
        self.extra_global = extra_global or {}
        self.log_level = log_level
        self.dir = workdir or tempfile.mkdtemp(prefix='asvfs-st-')
        self.share_root = share_root or os.path.join(self.dir, 'shares')
        self.port = port or free_port()
        # where it listens (a cluster node has its own loopback address)
        self.address = '127.0.0.1'
        # a command prefix for smbd, e.g. selftest/tools/no_io_uring
        self.wrapper = wrapper or []
        # another build of smbd (a patched one, see patches/README.md)
        self.binary = binary
        self.proc = None
        self.conf = os.path.join(self.dir, 'smb.conf')
        self.log = os.path.join(self.dir, 'logs', 'log.smbd')
        self.sanitizer_logs = os.path.join(self.dir, 'logs', 'sanitizer')

    # -- configuration -------------------------------------------------
    def shares(self):
        """(share name, vfs objects, options) of every share: one per
        environment plus its variants, named <env>_<variant>."""
        for env, (vfs, opts) in self.envs.items():
            yield env, vfs, opts
            for variant, vopts in SHARE_VARIANTS.items():
                yield '%s_%s' % (env, variant), vfs, dict(opts, **vopts)

    def share_path(self, env):
        return os.path.join(self.share_root, env)

    def _global_section(self):
        d = self.dir
        g = {
            'netbios name': 'ASVFSTEST',
            'workgroup': 'ASVFS',
            'server role': 'standalone server',
            'interfaces': '127.0.0.1/8',
            'bind interfaces only': 'yes',
            'smb ports': str(self.port),
            'disable netbios': 'yes',
            'server min protocol': 'SMB2_02',
            'private dir': os.path.join(d, 'private'),
            'lock directory': os.path.join(d, 'lock'),
            'state directory': os.path.join(d, 'state'),
            'cache directory': os.path.join(d, 'cache'),
            'pid directory': os.path.join(d, 'pid'),
            'ncalrpc dir': os.path.join(d, 'ncalrpc'),
            'log file': self.log,
            'max log size': '0',
            'log level': self.log_level,
            'debug pid': 'yes',
            'passdb backend': 'tdbsam:' + os.path.join(d, 'private',
                                                       'passdb.tdb'),
            'load printers': 'no',
            'printing': 'bsd',
            'printcap name': '/dev/null',
            'disable spoolss': 'yes',
            'usershare path': '',
            'panic action': '/bin/echo SMBD-PANIC-ACTION %d',
            'smb2 leases': 'yes',
            # As in Samba's own selftest file server (selftest/target/
            # Samba3.pm), so that smbtorture tests what it expects.
            'kernel oplocks': 'no',
            'kernel change notify': 'no',
            'server multi channel support': 'yes',
            'smbd:FSCTL_SMBTORTURE': 'yes',
            'smbd:validate_oplock_types': 'yes',
            'smbd:sharedelay': '100000',
            'smbd:writetimeupdatedelay': '500000',
            'mangled names': 'yes',
        }
        g.update(self.extra_global)
        return g

    def write_conf(self):
        lines = ['[global]']
        for k, v in self._global_section().items():
            lines.append('\t%s = %s' % (k, v))
        for share, vfs, opts in self.shares():
            o = dict(SHARE_DEFAULTS)
            o['path'] = self.share_path(share)
            o['vfs objects'] = (BASE_VFS + ' ' + vfs).strip()
            o.update(opts)
            lines.append('')
            lines.append('[%s]' % share)
            for k, v in o.items():
                lines.append('\t%s = %s' % (k, v))
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def _prepare_dirs(self):
        for sub in ('private', 'lock', 'state', 'cache', 'pid', 'ncalrpc',
                    'logs', 'vfs'):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.makedirs(self.share_root, exist_ok=True)
        gid = grp.getgrnam(GROUP).gr_gid
        for share, _, _ in self.shares():
            p = self.share_path(share)
            os.makedirs(p, exist_ok=True)
            os.chown(p, 0, gid)
            # Sticky and group-writable: both users create, neither may
            # remove the other's files, the outsider gets nothing.
            os.chmod(p, 0o3770)

    def _prepare_modules(self):
        """A copy of the system vfs dir plus our modules, to be bind-mounted
        over the system one inside smbd's mount namespace."""
        vfs = os.path.join(self.dir, 'vfs')
        sysdir = smbd_modules_dir(self.binary)
        if self.binary != 'smbd':
            # a build tree's smbd: its own modules dir may be missing
            os.makedirs(sysdir, exist_ok=True)
            sysdir_copy = smbd_modules_dir()
        else:
            sysdir_copy = sysdir
        sysdir_copy = runtime_root() + sysdir_copy
        for f in os.listdir(sysdir_copy):
            shutil.copy2(os.path.join(sysdir_copy, f), vfs)
        for f in our_modules():
            shutil.copy2(f, vfs)
        self.sys_vfs_dir = sysdir

    def _add_users(self):
        for user in USERS + [OUTSIDER]:
            subprocess.run(runtime_cmd(['smbpasswd', '-c', self.conf,
                                        '-s', '-a', user],
                                       binds=[self.dir]),
                           input='%s\n%s\n' % (PASSWORD, PASSWORD),
                           universal_newlines=True, check=True,
                           stdout=subprocess.DEVNULL)

    # -- life cycle ----------------------------------------------------
    def start(self, timeout=WAIT_SECS):
        ensure_users()
        self._prepare_dirs()
        self._prepare_modules()
        self.write_conf()
        self._add_users()
        vfs = os.path.join(self.dir, 'vfs')
        # unshare execs sh which execs (the wrapper which execs) smbd:
        # self.proc.pid is smbd's pid.
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        self.stdout = open(os.path.join(self.dir, 'logs', 'smbd.out'), 'w')
        # Only smbd (and its wrapper) get the sanitizer runtimes, not
        # unshare, sh and mount.
        preload = []
        if SANITIZER_RUNTIMES:
            preload = ['env', 'LD_PRELOAD=' + ' '.join(SANITIZER_RUNTIMES)]
            preload += ['%s=%s' % kv for kv in
                        sanitizer_env(self.sanitizer_logs).items()]
        smbd = preload + self.wrapper + [self.binary, '--foreground',
                                         '--no-process-group',
                                         '--configfile=' + self.conf]
        if SAMBA is None:
            cmd = ['unshare', '--mount', '--propagation', 'private', '--',
                   'sh', '-c', script, 'sh', vfs, self.sys_vfs_dir] + smbd
        else:
            cmd = runtime_cmd(smbd, binds=[self.dir, self.share_root],
                              bind_to=[(vfs, self.sys_vfs_dir)])
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.stdout, stderr=subprocess.STDOUT,
            start_new_session=True)
        if wait_until(self._listening, timeout, 0.2):
            return self
        self.stop()
        raise RuntimeError('smbd did not listen on port %d' % self.port)

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError('smbd exited at start (rc %d); see %s' %
                               (self.proc.returncode, self.dir))
        try:
            with socket.create_connection((self.address, self.port),
                                          timeout=1):
                return True
        except OSError:
            return False

    def cpu_children_seconds(self):
        """CPU time of reaped children (the per-connection smbds) of the
        parent smbd: cutime + cstime of /proc/<pid>/stat."""
        with open('/proc/%d/stat' % self.proc.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        hz = os.sysconf('SC_CLK_TCK')
        return (int(fields[13]) + int(fields[14])) / hz

    def children(self):
        """PIDs of the smbd parent's children (one per connection, plus
        its helpers)."""
        pid = self.proc.pid
        try:
            with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
                return set(f.read().split())
        except OSError:
            return set()

    def wait_children(self, baseline, timeout=WAIT_SECS):
        """Wait until no child beyond baseline is left (connections
        ended and reaped, so their CPU time is in the parent's cutime).
        True when that happened within timeout seconds."""
        return wait_until(lambda: not (self.children() - baseline), timeout)

    def profile_counts(self):
        """smbd's profile counters (smbd profiling level = on) that end
        in _count, from smbstatus --profile."""
        out = subprocess.run(runtime_cmd(['smbstatus', '--profile', '-s',
                                          self.conf], binds=[self.dir]),
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        return {k: int(v) for k, v in re.findall(
            r'^(\w+_count):\s+(\d+)', out, re.M)}

    def stop(self):
        """Stop only the smbd we started (and its children, which share its
        session).  With a sanitized build, wait until every process of the
        group has written its reports, then collect them."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            # children log their counters as they exit: a busy machine
            # must not make that a SIGKILL
            try:
                self.proc.wait(timeout=WAIT_SECS)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if SANITIZER_RUNTIMES:
            self._wait_group_gone()
            self.collect_sanitizer_reports()

    def collect_sanitizer_reports(self):
        collect_sanitizer_reports(self.sanitizer_logs, self.dir)
        collect_ubsan_reports(os.path.join(self.dir, 'logs'), self.dir)

    def group_members(self):
        """Live (not zombie) processes of smbd's process group."""
        pids = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % pid) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if fields[0] != 'Z' and int(fields[2]) == self.proc.pid:
                pids.append(int(pid))
        return pids

    def _wait_group_gone(self, timeout=WAIT_SECS):
        """Children may outlive the parent while LeakSanitizer checks
        them at exit; a generous bound, then they are killed."""
        if not wait_until(lambda: not self.group_members(), timeout, 0.1):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def panics(self):
        """Lines that show an smbd panic or crash, from all our logs."""
        bad = re.compile(r'PANIC|INTERNAL ERROR|SMBD-PANIC-ACTION|'
                         r'Signal \d+ caught|BACKTRACE')
        hits = []
        logdir = os.path.join(self.dir, 'logs')
        for root, _, files in os.walk(logdir):
            if os.path.basename(root) == 'cores' or '/cores/' in root:
                hits += ['core file: %s' % os.path.join(root, f)
                         for f in files]
        for f in sorted(os.listdir(logdir)):
            if not os.path.isfile(os.path.join(logdir, f)):
                continue
            with open(os.path.join(logdir, f), errors='replace') as fh:
                for line in fh:
                    if bad.search(line):
                        hits.append('%s: %s' % (f, line.rstrip()))
        return hits

    def log_lines(self, pattern):
        with open(self.log, errors='replace') as f:
            return [ln for ln in f if re.search(pattern, ln)]

    def counters(self, module, op):
        """A module's counters of op summed over all connections: each
        connection's smbd logs its own at tree disconnect (level 5)."""
        total = {}
        for line in self.log_lines(r'%s counters %s:' % (module, op)):
            for k, v in re.findall(r'(\w+)=(\d+)', line):
                total[k] = total.get(k, 0) + int(v)
        return total

    def unc(self, env):
        return '//%s/%s' % (self.address, env)

    def creds(self, user=None):
        return '%s%%%s' % (user or USERS[0], PASSWORD)

    def cleanup(self):
        self.stop()
        if SANITIZER_RUNTIMES:
            self.collect_sanitizer_reports()
        shutil.rmtree(self.dir, ignore_errors=True)
