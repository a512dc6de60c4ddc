# SPDX-License-Identifier: GPL-3.0-or-later
"""A three-node CTDB cluster on this one machine, with one private smbd
per node, for the cluster part of the selftest.

Each node is a ctdbd of Debian's ctdb package run as CTDB's own test suite
runs its "local daemons" (ctdb/tests/local_daemons.sh): CTDB_TEST_MODE=yes
makes ctdbd and the ctdb tool take every path (config, socket, databases)
from CTDB_BASE, so several daemons live side by side, each on its own
loopback address.  ctdbd runs with --interactive and its stdin on a pipe of
ours: in test mode it exits when that pipe closes, so it cannot outlive
the harness.  Each node's smbd (clustering = yes, ctdbd socket of its node)
listens on the node's address only; all three export the same directories.

The recipe and its measurements: /work/shared/studies/ctdb-local-cluster.md
(startup about 7 s with leader timeout 3).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness

CTDB_PORT = 4379		# fixed per address (no ctdb entry in services)
CTDB_ETC = '/etc/ctdb'
# leader timeout 1 makes the recovery daemons elect over and over (69 s
# to settle, measured); 3 settles in about 7 s
LEADER_TIMEOUT = 3
NODES = 3


def unavailable():
    """Why CTDB cannot run here, or None."""
    if harness.SAMBA is not None:
        return ('the cluster runs the installed Samba\'s ctdb; Samba %s\'s '
                'chroot has none' % harness.SAMBA)
    for prog in ('ctdbd', 'ctdb'):
        if shutil.which(prog) is None:
            return ('%s not installed (Debian package ctdb; make '
                    'bootstrap installs it)' % prog)
    out = subprocess.run(['smbd', '-b'], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    if 'CLUSTER_SUPPORT' not in out:
        return 'this smbd is built without cluster support'
    return None


def _bindable(address, port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def pick_addresses(count=NODES):
    """count loopback addresses (127.K.0.1, 127.K.0.2, ...) where the ctdb
    port is free on all, K chosen from this process's id so that two runs
    at once (and a cluster somebody runs on 127.0.0.x) do not meet."""
    for i in range(200):
        k = 30 + (os.getpid() + i) % 200
        addrs = ['127.%d.0.%d' % (k, n + 1) for n in range(count)]
        if all(_bindable(a, CTDB_PORT) for a in addrs):
            return addrs
    raise RuntimeError('no loopback addresses with port %d free' % CTDB_PORT)


def common_free_port(addresses):
    """A TCP port free on every address (smbd listens on the same port on
    each node's address)."""
    for _ in range(100):
        port = harness.free_port()
        if all(_bindable(a, port) for a in addresses):
            return port
    raise RuntimeError('no port free on all of %s' % addresses)


class ClusterSmbd(harness.Smbd):
    """The smbd of one node: clustering on, its own address, the shares
    of the whole cluster (one directory tree for all nodes)."""

    def __init__(self, node, address, socket_path, add_users,
                 share_paths=None, **kw):
        super().__init__(**kw)
        self.node = node
        self.address = address
        self.socket_path = socket_path
        self.add_users = add_users
        # env -> the directory that holds its shares instead of
        # share_root (e.g. a slowfs mount)
        self.share_paths = share_paths or {}

    def share_path(self, env):
        for base, root in self.share_paths.items():
            if env == base or env.startswith(base + '_'):
                return os.path.join(root, env)
        return super().share_path(env)

    def _global_section(self):
        g = super()._global_section()
        g.update({
            'netbios name': 'ASVFSCLUSTER',
            'clustering': 'yes',
            'ctdbd socket': self.socket_path,
            # a /8 mask: smbd takes the address as given
            'interfaces': '%s/8' % self.address,
            # tdbsam in ctdb's persistent passdb.tdb, shared by all nodes
            'passdb backend': 'tdbsam',
        })
        return g

    def _add_users(self):
        # passdb.tdb is a persistent ctdb database: once for all nodes
        if self.add_users:
            super()._add_users()


class Cluster:
    """Three ctdbd and three smbd; start() brings them up in order,
    stop() takes down only what it started."""

    def __init__(self, envs, log_level='1', nodes=NODES, share_paths=None):
        self.dir = tempfile.mkdtemp(prefix='asvfs-cluster-')
        os.chmod(self.dir, 0o755)
        self.addresses = pick_addresses(nodes)
        self.port = common_free_port(self.addresses)
        self.share_root = os.path.join(self.dir, 'shares')
        self.envs = envs
        self.log_level = log_level
        self.ctdbd = [None] * nodes
        self.smbds = []
        for n, addr in enumerate(self.addresses):
            self.smbds.append(ClusterSmbd(
                n, addr, os.path.join(self.node_dir(n), 'run',
                                      'ctdbd.socket'),
                add_users=(n == 0), envs=envs,
                workdir=os.path.join(self.dir, 'smb.%d' % n),
                share_root=self.share_root, share_paths=share_paths,
                log_level=log_level, port=self.port))

    # -- ctdb ----------------------------------------------------------
    def node_dir(self, n):
        return os.path.join(self.dir, 'node.%d' % n)

    def ctdb_env(self, n):
        return dict(os.environ, CTDB_TEST_MODE='yes',
                    CTDB_BASE=self.node_dir(n))

    def _setup_ctdb(self):
        lock_dir = os.path.join(self.dir, 'shared', '.ctdb')
        os.makedirs(lock_dir, exist_ok=True)
        nodes = ''.join(a + '\n' for a in self.addresses)
        for n, addr in enumerate(self.addresses):
            d = self.node_dir(n)
            for sub in ('events/legacy', 'run', 'var', 'db/volatile',
                        'db/persistent', 'db/state'):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
            for f in ('functions', 'notify.sh'):
                if os.path.exists(os.path.join(CTDB_ETC, f)):
                    shutil.copy2(os.path.join(CTDB_ETC, f), d)
            with open(os.path.join(d, 'nodes'), 'w') as f:
                f.write(nodes)
            open(os.path.join(d, 'public_addresses'), 'w').close()
            with open(os.path.join(d, 'ctdb.conf'), 'w') as f:
                f.write(CTDB_CONF % {
                    'log': os.path.join(d, 'log.ctdb'),
                    'lock': os.path.join(lock_dir, 'cluster.lock'),
                    'address': addr, 'leader_timeout': LEADER_TIMEOUT,
                    'db': os.path.join(d, 'db')})

    def start_ctdbd(self, n):
        d = self.node_dir(n)
        out = open(os.path.join(d, 'ctdbd.out'), 'a')
        # its own session: ctdbd, eventd and recoverd are one group that
        # stop_ctdbd() can signal without touching anything else
        self.ctdbd[n] = subprocess.Popen(
            ['ctdbd', '--interactive'], stdin=subprocess.PIPE,
            stdout=out, stderr=subprocess.STDOUT, env=self.ctdb_env(n),
            start_new_session=True)
        out.close()

    def ctdb(self, n, *args, timeout=30):
        return subprocess.run(['ctdb'] + list(args), env=self.ctdb_env(n),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=timeout)

    def healthy(self, n, count=None):
        """Whether node n sees count nodes (default: all started) OK and
        recovery done."""
        if count is None:
            count = sum(1 for p in self.ctdbd if p and p.poll() is None)
        try:
            out = self.ctdb(n, 'status').stdout
        except subprocess.TimeoutExpired:
            return False
        ok = len(re.findall(r'^pnn:\d+\s+\S+\s+OK\b', out, re.M))
        return ok == count and 'Recovery mode:NORMAL' in out

    def wait_healthy(self, nodes, timeout=harness.WAIT_SECS * 2):
        def all_healthy():
            for n in nodes:
                p = self.ctdbd[n]
                if p.poll() is not None:
                    raise RuntimeError('ctdbd of node %d exited (rc %d); '
                                       'see %s' % (n, p.returncode,
                                                   self.node_dir(n)))
            return all(self.healthy(n) for n in nodes)
        if not harness.wait_until(all_healthy, timeout, interval=0.5):
            raise RuntimeError('ctdb not healthy within %d s: %s' % (
                timeout, self.ctdb(nodes[0], 'status').stdout.strip()))

    def stop_ctdbd(self, n, sig=None):
        """Stop node n's ctdbd: by closing its stdin (it exits within
        about a second), or by signal sig to its whole group."""
        p = self.ctdbd[n]
        if p is None:
            return
        if sig is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=harness.WAIT_SECS)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        # eventd and recoverd follow ctdbd; any left of its group go too
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- life cycle ----------------------------------------------------
    def start(self):
        try:
            self._setup_ctdb()
            started = time.monotonic()
            for n in range(len(self.addresses)):
                self.start_ctdbd(n)
            self.wait_healthy(list(range(len(self.addresses))))
            self.ctdb_secs = time.monotonic() - started
            for smbd in self.smbds:
                smbd.start()
        except BaseException:
            self.stop()
            raise
        return self

    def kill_smbd(self, n):
        """Node n's smbd and all its children, at once (a crash)."""
        smbd = self.smbds[n]
        if smbd.proc is not None and smbd.proc.poll() is None:
            os.killpg(smbd.proc.pid, signal.SIGKILL)
            smbd.proc.wait()

    def stop(self):
        """smbd first (it exits anyway once its ctdbd is gone), then
        ctdbd."""
        for smbd in self.smbds:
            try:
                smbd.stop()
            except Exception:
                pass
        for n in range(len(self.ctdbd)):
            self.stop_ctdbd(n)

    def panics(self):
        hits = []
        for smbd in self.smbds:
            if os.path.isdir(os.path.join(smbd.dir, 'logs')):
                hits += ['node %d: %s' % (smbd.node, h)
                         for h in smbd.panics()]
        return hits

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


CTDB_CONF = """\
[logging]
	location = file:%(log)s
	log level = NOTICE
[cluster]
	cluster lock = %(lock)s
	node address = %(address)s
	leader timeout = %(leader_timeout)d
[database]
	volatile database directory = %(db)s/volatile
	persistent database directory = %(db)s/persistent
	state database directory = %(db)s/state
[failover]
	disabled = true
[legacy]
	realtime scheduling = false
"""
