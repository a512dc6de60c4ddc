# SPDX-License-Identifier: GPL-3.0-or-later
"""What the test files share: the clients and checks they use, slowfs
under a share, and the one way tests are declared and run.

A test file declares its smbds, each a Server with its environments and
a table of (test, environments) (or a ClusterServer: the smbds of a CTDB
cluster); run_all() starts each smbd, runs every test on each of its
environments, stops it and runs the checks that read its logs, and
planned() names the same tests without running anything (selftest.py
--list).  A test is a function of (smbd, env) or (smbd, env, storage)
that raises AssertionError with the reason; its name is
<file prefix>.<function name>/<environment><suffix>.  See
selftest/README.md.
"""
import hashlib
import inspect
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import ctdb_cluster
import harness

NO_IO_URING = os.path.join(harness.BIN, 'selftest', 'tools', 'no_io_uring')
SLOWFS = os.path.join(harness.BIN, 'selftest', 'slowfs', 'slowfs')

def EVERY_ENV(env):
    """In a table: every environment of the smbd."""
    return True


class Skip(Exception):
    """Raised by a test that cannot run here, with the reason."""


class KnownFail(Exception):
    """Raised by a test whose failure is known, with the reason (a
    release's difference that is not ours)."""


# --- clients and what they see -------------------------------------------

def smbclient(smbd, env, commands, user=None, password=None):
    """(exit status, output) of smbclient running commands on env's
    share as user (the first test user by default)."""
    creds = smbd.creds(user) if password is None else \
        '%s%%%s' % (user, password)
    p = subprocess.run(['smbclient', smbd.unc(env), '-p', str(smbd.port),
                        '-mSMB3', '-U', creds, '-c', commands],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    return p.returncode, p.stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def put_get_roundtrip(smbd, share):
    """2 MiB put and got back unchanged."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'src')
        with open(src, 'wb') as f:
            f.write(os.urandom(2 * 1024 * 1024 + 5))
        rc, out = smbclient(smbd, share, 'put %s wt.bin; get wt.bin %s/dst;'
                            ' del wt.bin' % (src, tmp))
        assert rc == 0, out
        assert sha256(src) == sha256(os.path.join(tmp, 'dst'))


def listing(smbd, env, user, mask):
    """(exit status, NT statuses, {name: DOS attribute letters}) of an
    smbclient ls."""
    rc, out = smbclient(smbd, env, 'ls "%s"' % mask, user=user)
    entries = {}
    for line in out.splitlines():
        m = re.match(r'^  (\S+)\s+([A-Za-z]*)\s*\d+\s+\w{3} ', line)
        if m and m.group(1) not in ('.', '..'):
            entries[m.group(1)] = m.group(2)
    status = re.findall(r'NT_STATUS_\w+', out)
    return rc, status, entries


# async_open makes a create's file under a temporary name in the same
# directory (vfs_async_open.8)
ASYNC_OPEN_TEMP_PREFIX = '.async_open-'


def async_open_temp_names(d):
    """The files async_open made under a temporary name that are in d."""
    return [n for n in os.listdir(d) if n.startswith(ASYNC_OPEN_TEMP_PREFIX)]


def share_counters(smbd, share, module='async_dosattr', op='listing'):
    """A module's counters of one share, summed over its connections
    (logged at tree disconnect)."""
    total = {}
    for line in smbd.log_lines(r'%s counters %s: share=%s ' %
                               (module, op, share)):
        for k, v in re.findall(r'(\w+)=(\d+)', line):
            total[k] = total.get(k, 0) + int(v)
    return total


def child_of(smbd, before):
    """The one smbd child that appeared since before (smbd.children())."""
    new = smbd.children() - before
    assert len(new) == 1, 'expected one new smbd child: %s' % new
    return new.pop()


def file_fds(pid):
    """A process's fds other than sockets (which smbd's messaging opens
    and closes as peers come and go): files, pipes, rings."""
    d = '/proc/%s/fd' % pid
    out = set()
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if not target.startswith('socket:'):
            out.add('%s->%s' % (fd, target))
    return out


def task_wchans(pid):
    """(tid, where it sleeps) of each task of process pid; none if it
    has gone."""
    try:
        tids = os.listdir('/proc/%s/task' % pid)
    except OSError:
        return []
    out = []
    for tid in tids:
        try:
            with open('/proc/%s/task/%s/wchan' % (pid, tid)) as f:
                out.append((tid, f.read()))
        except OSError:
            continue
    return out


def counter_total(smbd, prefix, counter):
    """(counter summed over the log lines that start with prefix, one
    per connection; those lines)."""
    lines = smbd.log_lines(prefix)
    return sum(int(x) for ln in lines
               for x in re.findall(r' %s=(\d+)' % counter, ln)), lines


def differing(exp, act):
    """Names whose entry is not the same in both listings."""
    return sorted(n for n in set(exp) | set(act)
                  if exp.get(n) != act.get(n))


# DOSATTRIB kinds of the reference files
BLOB_KINDS = ['h', 's', 'r', 'a', 'hsr']
_BLOBS = {}


def reference_blobs(smbd):
    """DOSATTRIB values as smbd writes them, made once per smbd on its
    default share: {'h': hidden, 's': system, ...}."""
    if smbd.dir in _BLOBS:
        return _BLOBS[smbd.dir]
    cmds = ['mkdir ref', 'cd ref']
    for k in BLOB_KINDS:
        cmds.append('put /etc/hostname %s' % k)
        cmds.append('setmode %s +%s' % (k, k if k != 'a' else 'h'))
        if k == 'a':
            cmds.append('setmode a -h')
    rc, out = smbclient(smbd, 'default', '; '.join(cmds))
    assert rc == 0, out
    d = os.path.join(smbd.share_path('default'), 'ref')
    _BLOBS[smbd.dir] = {k: os.getxattr(os.path.join(d, k), 'user.DOSATTRIB')
                        for k in BLOB_KINDS}
    return _BLOBS[smbd.dir]


def wait_older_than(path, seconds):
    """Wait until path and the entries in it last changed more than
    seconds ago by their ctime (as a module that trusts values by ctime
    sees them)."""
    def newest():
        paths = [path] + [os.path.join(path, n) for n in os.listdir(path)]
        return max(os.lstat(p).st_ctime for p in paths)
    assert harness.wait_until(lambda: time.time() - newest() > seconds), \
        '%s still changes' % path


# What each comparing test saw on the default environment, which runs
# first in its table
ON_DEFAULT = {}


def same_as_default(test, env, value):
    """Remember value on the default environment, compare with it on
    the others."""
    if env == 'default':
        ON_DEFAULT[test] = value
        return
    assert value == ON_DEFAULT.get(test), '%s here, %s on default' % (
        value, ON_DEFAULT.get(test))


# --- slowfs under the shares --------------------------------------------------

class SlowStorage:
    """slowfs mounted over a backing dir, with its config file."""

    def __init__(self, tmp, fuse_options=''):
        self.back = os.path.join(tmp, 'back')
        self.mnt = os.path.join(tmp, 'mnt')
        self.conf = os.path.join(tmp, 'slowfs.conf')
        # Not in tmp: slowfs writes its stats again when it exits, which
        # can come after its caller removes tmp (a CI run's teardown
        # failed so, the mount busy at unmount).  umount() removes it.
        self.stats_dir = tempfile.mkdtemp(prefix='asvfs-slowfs-stats-')
        self.stats = os.path.join(self.stats_dir, 'slowfs.stats')
        self.generation = 0
        os.makedirs(self.back)
        os.makedirs(self.mnt)
        os.chmod(tmp, 0o755)
        text = self._write()
        subprocess.run([SLOWFS, self.back, self.mnt, '-o',
                        'allow_other,default_permissions' + fuse_options,
                        '--config=' + self.conf, '--stats=' + self.stats],
                       check=True)
        self._wait_loaded(text)

    def calls(self):
        """slowfs's call counters so far: operation name -> count."""
        try:
            os.unlink(self.stats)
        except FileNotFoundError:
            pass
        for pid in self.pids():
            os.kill(int(pid), signal.SIGUSR1)
        if not harness.wait_until(lambda: os.path.exists(self.stats)):
            raise RuntimeError('slowfs wrote no stats within %d s' %
                               harness.WAIT_SECS)
        with open(self.stats) as f:
            return {op: int(n) for op, n in (line.split() for line in f)}

    def _write(self, *lines):
        # direct_io: every read reaches slowfs, no page cache in between;
        # the generation makes each version's text differ
        self.generation += 1
        text = '# generation %d\ndirect_io = 1\n%s' % (
            self.generation, ''.join(line + '\n' for line in lines))
        with open(self.conf + '.new', 'w') as f:
            f.write(text)
        os.rename(self.conf + '.new', self.conf)
        return text

    def _wait_loaded(self, text):
        """slowfs copies each config it put in force to FILE.loaded."""
        def loaded():
            try:
                with open(self.conf + '.loaded') as f:
                    return f.read() == text
            except FileNotFoundError:
                return False
        if not harness.wait_until(loaded):
            raise RuntimeError('slowfs did not load its config within '
                               '%d s' % harness.WAIT_SECS)

    def set(self, *lines):
        self._wait_loaded(self._write(*lines))

    def backing(self, smbd, env, name):
        rel = os.path.relpath(smbd.share_path(env), self.mnt)
        return os.path.join(self.back, rel, name)

    def pids(self):
        """The slowfs processes serving this mount."""
        pids = self._pids()
        assert pids, 'no slowfs serves ' + self.mnt
        return pids

    def _pids(self):
        return [p for p in os.listdir('/proc') if p.isdigit() and
                self._serves(p)]

    def delaying(self):
        """How many of slowfs's threads sleep out an operation's delay
        (an operation still in the storage)."""
        return sum(wchan == 'hrtimer_nanosleep'
                   for pid in self.pids() for _, wchan in task_wchans(pid))

    def umount(self):
        """Unmount, and wait for slowfs to exit: at unmount it writes its
        stats file into the directory its caller is about to remove."""
        pids = self._pids()
        subprocess.run(['fusermount3', '-u', self.mnt],
                       stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: not any(running(p) for p in pids))
        shutil.rmtree(self.stats_dir, ignore_errors=True)

    def _serves(self, pid):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                args = f.read().decode(errors='replace').split('\0')
        except OSError:
            return False
        return self.mnt in args and os.path.basename(args[0]) == 'slowfs'


def running(pid):
    """Whether process pid is there and not a zombie."""
    try:
        with open('/proc/%s/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def make_listing_dir(storage, smbd, env, name, count, prefix='f'):
    """count hidden files in a new directory of env's share on
    storage."""
    blob = hidden_blob(smbd, storage)
    d = storage.backing(smbd, env, name)
    os.makedirs(d, exist_ok=True)
    owner = pwd.getpwnam(harness.USERS[0])
    for i in range(count):
        path = os.path.join(d, '%s%04d' % (prefix, i))
        with open(path, 'w'):
            pass
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.setxattr(path, 'user.DOSATTRIB', blob)


HIDDEN_BLOB = {}


def hidden_blob(smbd, storage):
    """The DOSATTRIB value smbd writes for a hidden file (on the
    default environment's share, which the smbd must have)."""
    if 'hidden' not in HIDDEN_BLOB:
        rc, out = smbclient(smbd, 'default', 'put /etc/hostname hblob; '
                            'setmode hblob +h')
        assert rc == 0, out
        HIDDEN_BLOB['hidden'] = os.getxattr(
            storage.backing(smbd, 'default', 'hblob'), 'user.DOSATTRIB')
    return HIDDEN_BLOB['hidden']


# --- smbtorture's results -----------------------------------------------------

RESULT_RE = re.compile(r'^(success|successful|failure|fail|error|skip|'
                       r'xfail|uxsuccess):\s*(.+?)(\s*\[.*)?$')


def parse_subunit(text):
    """name -> 'pass' | 'fail' | 'skip' from subunit v1 lines."""
    out = {}
    for line in text.splitlines():
        m = RESULT_RE.match(line)
        if not m:
            continue
        kind, name = m.group(1), m.group(2).strip()
        if kind in ('success', 'successful'):
            out[name] = 'pass'
        elif kind in ('skip', 'xfail'):
            out[name] = 'skip'
        else:
            out[name] = 'fail'
    return out


def read_patterns(path):
    """Lines "regex  # reason" (knownfail, flapping); a reason is
    required."""
    pats = []
    if not os.path.exists(path):
        return pats
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            regex, _, reason = line.partition('#')
            if not reason.strip():
                sys.exit('%s:%d: a known failure needs a reason' % (path, n))
            pats.append((re.compile(regex.strip()), reason.strip()))
    return pats


def match(pats, name):
    """The reason of the first pattern that matches name, or None."""
    for regex, reason in pats:
        if regex.search(name):
            return reason
    return None


def judge(env, st, default_st, kf, flap, kf_env=None):
    """(status, reason) of one smbtorture result on one environment,
    given its result on the default environment, its known failure's
    reason (kf), its flapping reason (flap) and the reason of a known
    failure of this environment only (kf_env: a knownfail line
    "<env>/<suite>.<test>", for Samba's own modules where they differ
    from its default)."""
    if st == 'skip':
        return 'skip', ''
    if flap:
        # Timing dependent anywhere: its result proves nothing either way.
        return ('pass', '') if st == 'pass' else ('knownfail', flap)
    if st == 'pass':
        if env == 'default' and kf:
            return 'fail', 'UNEXPECTED SUCCESS of a known failure (%s)' % kf
        if kf_env:
            return 'fail', 'UNEXPECTED SUCCESS of a known failure on %s ' \
                '(%s)' % (env, kf_env)
        return 'pass', ''
    if kf_env:
        return 'knownfail', kf_env
    if env == 'default':
        return ('knownfail', kf) if kf else ('fail', '')
    if default_st == 'fail' and kf:
        return 'knownfail', 'fails on default too: %s' % kf
    if default_st == 'fail':
        return 'fail', 'fails on default too, not in selftest/knownfail'
    return 'fail', 'passes on default'


# --- recording results --------------------------------------------------------

def record(res, name, fn, *args):
    """One test's result; any other exception (a client timeout or
    reset) fails that test, not the run.  A test that runs a suite of
    its own (smbtorture) returns that suite's results, [(status, name,
    reason)], each recorded as <its name>/<name> in place of its pass."""
    try:
        results = fn(*args)
    except KnownFail as e:
        res.add('knownfail', name, str(e))
        return
    except Skip as e:
        res.add('skip', name, str(e))
        return
    except AssertionError as e:
        res.add('fail', name, str(e).strip().replace('\n', ' | ')[:400])
        return
    except Exception as e:
        res.add('fail', name, 'error: %s: %s' % (
            e, traceback.format_exc(limit=-3).replace('\n', ' | ')[-400:]))
        return
    if results is None:
        res.add('pass', name)
        return
    for status, sub, why in results:
        res.add(status, '%s/%s' % (name, sub), why)


def check_panics(res, smbd, label):
    for line in smbd.panics():
        res.add('fail', 'faults.%s-panic' % label, line)


def test_name(prefix, test, env, suffix=''):
    if env is None:
        return '%s.%s' % (prefix, test.__name__)
    return '%s.%s/%s%s' % (prefix, test.__name__, env, suffix)


def call(test, smbd, env, storage=None):
    """A test takes (smbd), (smbd, env) or (smbd, env, storage)."""
    n = len(inspect.signature(test).parameters)
    return test(*(smbd, env, storage)[:n])


def each_env(tests, envs):
    """(test, env) for a table of (test, environments) on an smbd with
    envs.  Environments are a list (those the smbd lacks are left out:
    the shared smbd may run a few), or a function that picks them."""
    return [(test, env) for test, on in tests
            for env in (filter(on, envs) if callable(on) else
                        [e for e in on if e is None or e in envs])]


# --- the smbds of a test file -------------------------------------------------

class Server:
    """One smbd of a test file.

    envs: {environment: (base, options)} or a list of harness
    environments; tests: [(test, [environments])], run in order, each on
    its environments in order (default first: same_as_default); after:
    the same, run once smbd has stopped (its counters are logged at
    disconnect), [None] for a test of no environment; storage: None,
    'slowfs' or 'tmpfs' under the shares; prepare(): run before smbd
    starts (users, groups); setup(smbd, storage): run
    once smbd has started, before the tests (a failure is
    <prefix>.<label>_setup's); suffix: added to each environment in the
    names; skip: the reason this smbd cannot run here, or a function
    that tells it (None: it can), its tests then reported skipped; the
    rest goes to harness.Smbd."""

    def __init__(self, label, envs, tests, after=(), storage=None,
                 fuse_options='', prepare=None, setup=None, suffix='',
                 skip=None, **smbd_args):
        if not isinstance(envs, dict):
            envs = {e: harness.ENVIRONMENTS[e] for e in envs}
        self.label = label
        self.envs = envs
        self.tests = tests
        self.after = after
        self.storage = storage
        self.fuse_options = fuse_options
        self.prepare = prepare
        self.setup = setup
        self.suffix = suffix
        self.skip = skip
        smbd_args.setdefault('log_level', harness.LOG_LEVEL)
        self.smbd_args = smbd_args

    def planned(self, prefix):
        return [test_name(prefix, t, e, self.suffix)
                for t, e in each_env(self.tests, list(self.envs)) +
                each_env(self.after, list(self.envs))]

    def run(self, res, prefix):
        skip = self.skip() if callable(self.skip) else self.skip
        if skip:
            for name in self.planned(prefix):
                res.add('skip', name, skip)
            return
        try:
            with tempfile.TemporaryDirectory(prefix='asvfs-%s-' %
                                             prefix) as tmp:
                storage, root, undo = self._storage(tmp)
                try:
                    self._run_on(res, prefix, self._make(root), storage)
                finally:
                    undo()
        except Exception as e:
            # its storage or its smbd did not start: the tests not run
            # fail with this
            res.add('fail', '%s.%s' % (prefix, self.label), 'error: %s: %s' % (
                e, traceback.format_exc(limit=-3).replace('\n', ' | ')[-400:]))

    def _storage(self, tmp):
        """(what tests get as storage, the share root, its undo)."""
        if self.storage == 'slowfs':
            storage = SlowStorage(tmp, self.fuse_options)
            return storage, storage.mnt, storage.umount
        if self.storage == 'tmpfs':
            mnt = os.path.join(tmp, 'tmpfs')
            os.makedirs(mnt)
            os.chmod(tmp, 0o755)	# the test users walk through it
            subprocess.run(['mount', '-t', 'tmpfs', '-o',
                            'size=256m,mode=755', 'tmpfs', mnt], check=True)
            return None, os.path.join(mnt, 'shares'), \
                lambda: subprocess.run(['umount', mnt])
        return None, None, lambda: None

    def _make(self, root):
        """What the tests run against, its shares under root."""
        return harness.Smbd(envs=dict(self.envs), share_root=root,
                            **self.smbd_args)

    def _run_on(self, res, prefix, smbd, storage):
        try:
            if self.prepare:
                self.prepare()
            smbd.start()
            if self.setup:
                try:
                    self.setup(smbd, storage)
                except Exception as e:
                    res.add('fail', '%s.%s_setup' % (prefix, self.label),
                            str(e)[:400])
                    return
            run_tests(res, prefix, smbd, self.tests, storage, self.suffix)
            smbd.stop()
            run_tests(res, prefix, smbd, self.after, storage, self.suffix)
        finally:
            smbd.stop()
            check_panics(res, smbd, self.label)
            smbd.cleanup()


class ClusterServer(Server):
    """A CTDB cluster on this machine (ctdb_cluster.Cluster): a ctdbd and
    an smbd per node, all nodes exporting the same directories.  Its
    tests get the cluster where a Server's get an smbd (cluster.smbds[n]
    is node n's).

    slow_envs: the environments whose shares are on slowfs, the tests'
    storage (None where slowfs is not built); report(cluster): prints
    what is information, once the cluster has stopped.  Skipped where
    CTDB cannot run; a failure to start is <prefix>.start's; its work
    dir is kept when a test failed.  label, envs, tests, after, suffix,
    skip and log_level as a Server's."""

    def __init__(self, label, envs, tests, slow_envs=(), report=None,
                 **kw):
        kw.setdefault('skip', ctdb_cluster.unavailable)
        super().__init__(label, envs, tests, **kw)
        self.slow_envs = list(slow_envs)
        self.report = report

    def _storage(self, tmp):
        if not self.slow_envs or not os.path.exists(SLOWFS):
            return None, None, lambda: None
        storage = SlowStorage(tmp, self.fuse_options)
        return storage, storage.mnt, storage.umount

    def _make(self, root):
        return ctdb_cluster.Cluster(
            dict(self.envs), share_paths={e: root for e in self.slow_envs}
            if root else None, **self.smbd_args)

    def _run_on(self, res, prefix, cluster, storage):
        failed = res.failed
        started = time.monotonic()
        try:
            cluster.start()
        except Exception as e:
            res.add('fail', '%s.start' % prefix, '%s (work dir %s)' % (
                e, cluster.dir))
            return
        print('selftest: %s of %s on port %d up in %.1f s (ctdb %.1f s), '
              'work dir %s' % (prefix, ', '.join(cluster.addresses),
                               cluster.port, time.monotonic() - started,
                               cluster.ctdb_secs, cluster.dir), flush=True)
        try:
            run_tests(res, prefix, cluster, self.tests, storage,
                      self.suffix)
            cluster.stop()
            run_tests(res, prefix, cluster, self.after, storage,
                      self.suffix)
        finally:
            cluster.stop()
            for line in cluster.panics():
                res.add('fail', '%s-panic' % prefix, line)
            if self.report:
                self.report(cluster)
            if res.failed == failed:
                cluster.cleanup()
            else:
                print('selftest: %s work dir kept: %s' % (prefix,
                                                          cluster.dir))


def run_tests(res, prefix, smbd, tests, storage=None, suffix='',
              known=None):
    """Record each test of a table on each of its environments; known:
    {(test name, env): reason} not run, reported as known failures."""
    for test, env in each_env(tests, list(smbd.envs)):
        name = test_name(prefix, test, env, suffix)
        why = (known or {}).get((test.__name__, env))
        if why:
            res.add('knownfail', name, why)
            continue
        record(res, name, call, test, smbd, env, storage)


def run_all(res, prefix, servers):
    for server in servers:
        server.run(res, prefix)


def planned(prefix, servers):
    return [name for s in servers for name in s.planned(prefix)]
