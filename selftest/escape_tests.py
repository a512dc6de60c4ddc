#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guards for what the audit of issue 20 found sound: no way out of a
share, on every environment, the same as on the default VFS.

- Symlinks inside a share point outside it: to a directory, to a
  root-only 0600 file, to another user's 0600 file, dangling, relative,
  and with ".." components; plus names with "..".  Each is tried with
  every create disposition, mkdir, a directory open with a listing, and
  listed (DOS attributes read) in its parent, as two unix users.
- A directory inside the share is swapped with a symlink to outside
  (RENAME_EXCHANGE in a loop, in a helper process) while pipelined opens,
  creates, mkdirs, reads and listings (DOS attributes, so xattr reads)
  of two users' sessions, taking turns, run through it.

Nothing outside may be created, read or listed: the outside tree is
compared before and after, access times included (they were set before
the modification times, so that a read or a listing moves them), and no
answer may carry outside data (every outside file holds a marker, and
its DOS attributes say hidden and system).  Each environment's answers
to the symlink probes must equal those of the default environment; the
answers in the race depend on when each request meets the swap, so
there outside data, outside names and changes outside are what count.

The tests guard themselves: the same probes run on a share with
"wide links = yes" must see the escape ("escape.probes_see_wide_links").
"""
import hashlib
import os
import pwd
import re
import select
import signal
import subprocess
import sys

import harness
import smb2client
from impacket import smb3, smb3structs
from testlib import (ASYNC_OPEN_TEMP_PREFIX, Server,
                     async_open_temp_names)

PREFIX = 'escape'		# of the test names: escape.<test>/<env>

SMB_ERRORS = (smb3.SessionError, smb2client.SessionError)
OUTSIDE = 'outside'		# in the smbd's work dir, beside shares/
MARK = b'OUTSIDE-'		# every outside file's data starts with it
INSIDE = b'INSIDE-RACE'
# Names only the outside tree has
OUTSIDE_NAMES = ('outside_inner', 'outside_only')

HIDDEN_SYSTEM = 0x2 | 0x4
READ = smb2client.FILE_READ_DATA | smb3structs.FILE_READ_ATTRIBUTES
READ_WRITE = smb2client.GENERIC_READ_WRITE
DIRECTORY_FILE = smb3structs.FILE_DIRECTORY_FILE
NON_DIRECTORY_FILE = smb2client.NON_DIRECTORY_FILE
DISPOSITIONS = {
    'supersede': smb2client.FILE_SUPERSEDE,
    'open': smb2client.FILE_OPEN,
    'create': smb2client.FILE_CREATE,
    'open_if': smb2client.FILE_OPEN_IF,
    'overwrite': 4,
    'overwrite_if': smb2client.FILE_OVERWRITE_IF,
}

# Every environment of the harness, and the full stack with every module's
# asynchronous path forced on.
ENVS = dict(harness.ENVIRONMENTS)
ENVS['full_stack_async'] = (harness.ENVIRONMENTS['full_stack'][0], {
    'smbd async dosmode': 'yes',
    'async_open:mode': 'all',
    'async_dosattr:mode': 'async',
    'async_dosattr:prefetch': 'yes',
    'async_xattr:mode': 'async',
    'async_brl:decision': 'async',
})
# Where opens, listings or xattr reads have an asynchronous path
RACE_ENVS = ['default', 'async_open', 'async_xattr', 'async_dosattr',
             'async_dosattr_prefetch', 'full_stack', 'full_stack_async']
RACE_ROUNDS = 30

# Symlinks in each share: name -> target ("@" is the outside dir).  The
# share is <work dir>/shares/<env>, so "../.." is the work dir.
LINKS = {
    'l_dir': '@/dir',
    'l_secret': '@/secret',
    'l_readable': '@/readable',
    'l_u2private': '@/u2private',
    'l_dangling': '@/dir/dangling_target',
    'l_dangling_dir': '@/dangling_dir_target',
    'l_rel': '../../%s/readable' % OUTSIDE,
    'l_reldir': '../../%s/dir' % OUTSIDE,
    'l_dotdot': 'sub/../../../%s/dir' % OUTSIDE,
    'l_dotdot_file': 'sub/../../../%s/readable' % OUTSIDE,
    # inside the share: must work as on the default
    'l_inside': 'sub',
    'l_inside_file': 'sub/f',
}
# Names tried, beyond the links themselves: through a link to a
# directory, and ".." in the name itself
THROUGH = ['l_dir\\outside_inner', 'l_dir\\newfile', 'l_reldir\\newfile',
           'l_dotdot\\outside_inner', 'l_inside\\f', 'l_inside\\newfile',
           'sub\\..\\..\\%s\\readable' % OUTSIDE, '..\\%s\\readable' % OUTSIDE]
NAMES = list(LINKS) + THROUGH
DIRS = ['l_dir', 'l_reldir', 'l_dotdot', 'l_inside', 'l_dangling_dir',
        'sub\\..\\..\\%s\\dir' % OUTSIDE]


# --- the trees ----------------------------------------------------------------

def dosattrib_hidden_system(smbd):
    """A user.DOSATTRIB value saying hidden and system, written by smbd
    itself on a scratch file of the default share."""
    c = smb2client.Client(smbd, 'default')
    try:
        conn = c.conn.getSMBServer()
        fid = conn.create(c.tid, 'proto', READ_WRITE, 7, NON_DIRECTORY_FILE,
                          smb2client.FILE_OVERWRITE_IF, HIDDEN_SYSTEM)
        conn.close(c.tid, fid)
    finally:
        c.logoff()
    path = os.path.join(smbd.share_path('default'), 'proto')
    value = os.getxattr(path, 'user.DOSATTRIB')
    os.unlink(path)
    return value


def make_file(path, data, mode, uid=0, dosattrib=None):
    with open(path, 'wb') as f:
        f.write(data)
    os.chown(path, uid, -1)
    os.chmod(path, mode)
    if dosattrib:
        os.setxattr(path, 'user.DOSATTRIB', dosattrib)


def build_outside(smbd, dosattrib):
    """World-writable directories and readable files: only smbd's own
    checks can keep a client out.  Plus a root-only and another user's
    0600 file."""
    out = os.path.join(smbd.dir, OUTSIDE)
    u2 = pwd.getpwnam(harness.USERS[1]).pw_uid
    for d in ('', 'dir', 'racedir', 'racedir/subdir'):
        os.makedirs(os.path.join(out, d), exist_ok=True)
        os.chmod(os.path.join(out, d), 0o777)
        os.setxattr(os.path.join(out, d), 'user.DOSATTRIB', dosattrib)
    make_file(os.path.join(out, 'readable'), MARK + b'READABLE', 0o644,
              dosattrib=dosattrib)
    make_file(os.path.join(out, 'secret'), MARK + b'SECRET', 0o600,
              dosattrib=dosattrib)
    make_file(os.path.join(out, 'u2private'), MARK + b'U2PRIVATE', 0o600,
              uid=u2, dosattrib=dosattrib)
    make_file(os.path.join(out, 'dir', 'outside_inner'), MARK + b'INNER',
              0o666, dosattrib=dosattrib)
    for name in ('a', 'outside_only'):
        make_file(os.path.join(out, 'racedir', name), MARK + b'RACE', 0o644,
                  dosattrib=dosattrib)
    age_atimes(out)
    return out


def age_atimes(top):
    """Access times well before modification times: with relatime (or
    strictatime) the next read or listing moves them."""
    for root, dirs, files in os.walk(top):
        for name in dirs + files + ['']:
            p = os.path.join(root, name)
            st = os.lstat(p)
            os.utime(p, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns),
                     follow_symlinks=False)


def snapshot(top):
    """Every object under top: type, mode, owner, size, times, content
    hash and xattrs.  Read without moving access times (O_NOATIME)."""
    snap = {}

    def walk(rel):
        p = os.path.join(top, rel)
        st = os.lstat(p)
        entry = [oct(st.st_mode), st.st_uid, st.st_size, st.st_mtime_ns,
                 st.st_atime_ns,
                 sorted((n, os.getxattr(p, n, follow_symlinks=False))
                        for n in os.listxattr(p, follow_symlinks=False))]
        fd = os.open(p, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
        try:
            if os.path.isdir(p):
                names = sorted(os.listdir(fd))
                entry.append(names)
            else:
                entry.append(hashlib.sha256(os.read(fd, 1 << 20))
                             .hexdigest())
                names = []
        finally:
            os.close(fd)
        snap[rel or '.'] = entry
        for n in names:
            walk(os.path.join(rel, n))
    walk('')
    return snap


SNAP_FIELDS = ('mode', 'owner', 'size', 'mtime', 'atime', 'xattrs',
               'content')


def snapshot_diff(before, after):
    """What changed, per object: created, removed, or the fields."""
    out = []
    for k in sorted(set(before) | set(after)):
        if k not in before:
            out.append('%s created' % k)
        elif k not in after:
            out.append('%s removed' % k)
        elif before[k] != after[k]:
            out.append('%s: %s changed' % (k, ', '.join(
                f for f, b, a in zip(SNAP_FIELDS, before[k], after[k])
                if b != a)))
    return out


def build_share(path, outside):
    sub = os.path.join(path, 'sub')
    os.makedirs(sub, exist_ok=True)
    os.chmod(sub, 0o777)
    make_file(os.path.join(sub, 'f'), b'INSIDE-SUB', 0o666)
    for name, target in LINKS.items():
        os.symlink(target.replace('@', outside), os.path.join(path, name))
    race = os.path.join(path, 'race')
    os.makedirs(race, exist_ok=True)
    os.chmod(race, 0o777)
    for name in ('a', 'b'):
        make_file(os.path.join(race, name), INSIDE, 0o666)
    os.symlink(os.path.join(outside, 'racedir'),
               os.path.join(path, 'race_link'))


# --- probes -------------------------------------------------------------------

def status_of(e):
    return '0x%08x' % (e.get_error_code() & 0xffffffff)


def read_some(conn, tid, fid):
    try:
        return repr(conn.read(tid, fid, 0, 64))
    except SMB_ERRORS as e:
        return 'read ' + status_of(e)


def try_create(conn, tid, name, disposition, options, access):
    """'status' or 'ok action=N data=...' of one create (and a read of
    what it opened)."""
    try:
        fid = conn.create(tid, name, access, 7, options, disposition, 0)
    except SMB_ERRORS as e:
        return status_of(e)
    try:
        if options & DIRECTORY_FILE:
            return 'ok dir'
        return 'ok ' + read_some(conn, tid, fid)
    finally:
        conn.close(tid, fid)


def try_listing(conn, tid, name):
    """'status' or the sorted names and attributes of a listing."""
    try:
        fid = conn.create(tid, name, READ, 7, DIRECTORY_FILE,
                          smb2client.FILE_OPEN, 0)
    except SMB_ERRORS as e:
        return status_of(e)
    try:
        listed = smb2client.rest_of_listing(conn, tid, fid)
    except SMB_ERRORS as e:
        return 'list ' + status_of(e)
    finally:
        conn.close(tid, fid)
    return 'ok %s' % sorted((n, hex(a)) for n, (a, _) in listed.items())


def probe_env(smbd, env):
    """key -> answer of every probe, as each of the two users in turn
    (the second finds what the first created)."""
    got = {}
    for user in harness.USERS:
        c = smb2client.Client(smbd, env, user=user)
        conn, tid = c.conn.getSMBServer(), c.tid
        try:
            got[(user, '', 'list')] = try_listing(conn, tid, '')
            for name in NAMES:
                for disp, value in sorted(DISPOSITIONS.items()):
                    got[(user, name, disp)] = try_create(
                        conn, tid, name, value, NON_DIRECTORY_FILE,
                        READ_WRITE)
                got[(user, name, 'read')] = try_create(
                    conn, tid, name, smb2client.FILE_OPEN,
                    NON_DIRECTORY_FILE, READ)
                got[(user, name, 'mkdir')] = try_create(
                    conn, tid, name, smb2client.FILE_CREATE, DIRECTORY_FILE,
                    READ)
            for name in DIRS:
                got[(user, name, 'list')] = try_listing(conn, tid, name)
            # after the creates: attributes of everything in the root
            got[(user, '', 'list again')] = try_listing(conn, tid, '')
        finally:
            c.logoff()
    return got


def leaks(answers):
    """Answers that carry outside data or outside names."""
    bad = []
    for key, a in sorted(answers.items()):
        if MARK.decode() in a or any(n in a for n in OUTSIDE_NAMES) or \
                hidden_listed(a):
            bad.append('%s: %s' % ('/'.join(key), a[:120]))
    return bad


def check_symlinks(smbd, env, outside, default):
    before = snapshot(outside)
    got = probe_env(smbd, env)
    changed = snapshot_diff(before, snapshot(outside))
    problems = []
    if changed:
        problems.append('outside changed: %s' % '; '.join(changed)[:400])
    bad = leaks(got)
    if bad:
        problems.append('outside data in answers: %s' % '; '.join(bad[:4]))
    if default is not None:
        differ = ['%s: %s (default %s)' % ('/'.join(k), got[k][:100],
                                           default.get(k, '?')[:100])
                  for k in sorted(got) if got[k] != default.get(k)]
        if differ:
            problems.append('%d answers differ from the default: %s' % (
                len(differ), '; '.join(differ[:4])))
    return got, problems


# --- the RENAME_EXCHANGE race -------------------------------------------------

SWAPPER = r'''
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
n = 0
def stop(*_):
    # the directory back where it was (the count may miss the last swap)
    if os.path.islink(a):
        libc.renameat2(-100, a, -100, b, 2)
    os.write(1, b"%d\n" % n)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
libc.prctl(1, signal.SIGTERM)	# PR_SET_PDEATHSIG: never outlive the test
if os.getppid() != int(sys.argv[3]):
    stop()
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        os.write(1, b"renameat2 failed: %d\n" % ctypes.get_errno())
        os._exit(1)
    n += 1
    if n == 1000:
        os.write(1, b"going\n")
'''


class Swapper:
    """A helper process that swaps two names (RENAME_EXCHANGE) until
    stopped."""

    def __init__(self, a, b):
        self.proc = subprocess.Popen([sys.executable, '-c', SWAPPER, a, b,
                                      str(os.getpid())],
                                     stdout=subprocess.PIPE)
        # going once it has swapped a thousand times (a condition)
        ready, _, _ = select.select([self.proc.stdout], [], [],
                                    harness.WAIT_SECS)
        line = self.proc.stdout.readline() if ready else b''
        if line != b'going\n':
            self.stop()
            raise RuntimeError('swapper did not start: %r' % line)

    def stop(self):
        """The number of swaps; both names as they were."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out = self.proc.communicate(timeout=harness.WAIT_SECS)[0]
        return out.decode().strip()


def race_round(raw, user, rnd):
    """Pipelined opens, creates and mkdirs through the swapped name,
    then reads of what opened and a listing: the answers."""
    tid = raw.use(user)
    conn = raw.s3
    sent = []
    for _ in range(4):
        sent.append(('open a', raw.send_create(
            user, 'race\\a', smb2client.FILE_OPEN, access=READ)))
    sent.append(('open_if', raw.send_create(
        user, 'race\\n%d' % rnd, smb2client.FILE_OPEN_IF)))
    sent.append(('create', raw.send_create(
        user, 'race\\c%d' % rnd, smb2client.FILE_CREATE)))
    sent.append(('mkdir', raw.send_create(
        user, 'race\\d%d' % rnd, smb2client.FILE_CREATE, access=READ,
        options=DIRECTORY_FILE)))
    sent.append(('open dir', raw.send_create(
        user, 'race', smb2client.FILE_OPEN, access=READ,
        options=DIRECTORY_FILE)))
    answers, ok = [], 0
    # every answer first: impacket's own reads below would take (and
    # keep) any answer still on the way
    done = [(what, smb2client.create_result(*raw.wait(mid)[:2]))
            for what, mid in sent]
    for what, (status, _, fid) in done:
        if status != 0:
            answers.append('%s 0x%08x' % (what, status))
            continue
        ok += 1
        raw.use(user)
        # impacket's reads and listings want opens it knows of
        conn._Session['OpenTable'][fid] = {'TreeConnect': tid}
        if what == 'open a':
            answers.append('%s %s' % (what, read_some(conn, tid, fid)))
        elif what == 'open dir':
            try:
                listed = smb2client.rest_of_listing(conn, tid, fid)
                answers.append('%s %s' % (what, sorted(
                    (n, hex(a)) for n, (a, _) in listed.items())))
            except SMB_ERRORS as e:
                answers.append('%s list %s' % (what, status_of(e)))
        del conn._Session['OpenTable'][fid]
        raw.close(user, fid)
    return answers, ok


def check_race(smbd, env, outside):
    share = smbd.share_path(env)
    before = snapshot(outside)
    raw = smb2client.RawConn(smbd, env)
    for user in harness.USERS:	# two sessions, taking turns
        raw.login(user)
    swapper = Swapper(os.path.join(share, 'race'),
                      os.path.join(share, 'race_link'))
    answers, ok = [], 0
    try:
        for rnd in range(RACE_ROUNDS):
            user = harness.USERS[rnd % 2]
            a, n = race_round(raw, user, rnd)
            answers += a
            ok += n
            # the listing of the parent reads DOS attributes of the entry
            answers.append('root %s' % try_listing(raw.s3, raw.use(user),
                                                   ''))
    finally:
        swaps = swapper.stop()
        raw.disconnect()
    problems = []
    changed = snapshot_diff(before, snapshot(outside))
    if changed:
        problems.append('outside changed: %s' % '; '.join(changed)[:400])
    bad = [a[:160] for a in answers
           if MARK.decode() in a or 'outside_only' in a or hidden_listed(a)]
    if bad:
        problems.append('outside seen: %s' % '; '.join(bad[:3]))
    # and none of async_open's temporary files stays: vfs_async_open.8,
    # an unclaimed file goes at the latest 30 s after its create
    if not harness.wait_until(lambda: not temp_names(share), 40, 0.05):
        problems.append('temporary names left: %s' % temp_names(share))
    if not swaps.isdigit():
        problems.append('swapper: %s' % swaps)
    if ok == 0:
        problems.append('nothing succeeded: the race proved nothing')
    if not os.path.isdir(os.path.join(share, 'race')) or \
            os.path.islink(os.path.join(share, 'race')):
        problems.append('race is not the directory after the swaps')
    return problems


LISTED = re.compile(r"\('([^']*)', '(0x[0-9a-f]+)'\)")


def temp_names(share):
    d = os.path.join(share, 'race')
    return async_open_temp_names(d) if os.path.isdir(d) else []


# async_open's temporary files are hidden; when the retry of a create is
# answered with an error (the directory had been swapped meanwhile), the
# file is removed asynchronously, so a listing right behind may still
# show it.  It is the share's own file: a create that escaped would show
# as a change of the outside tree.
def hidden_listed(answer):
    """Names a listing answer shows hidden: nothing inside a share is but
    async_open's temporary names, every outside object is (its
    user.DOSATTRIB says so)."""
    return [n for n, a in LISTED.findall(answer) if int(a, 16) & 0x2 and
            not n.startswith(ASYNC_OPEN_TEMP_PREFIX)]


# --- running ------------------------------------------------------------------

def fail_with(problems):
    assert not problems, ' | '.join(problems)


# The outside tree of the running smbd, and the default's answers
PROBED = {}


def build_outside_and_shares(smbd, storage):
    """The outside tree, built once per smbd, and the links in every
    share."""
    PROBED.clear()
    PROBED['dir'] = build_outside(smbd, dosattrib_hidden_system(smbd))
    for env in smbd.envs:
        build_share(smbd.share_path(env), PROBED['dir'])


def symlink_problems(smbd, env):
    """What the symlink probes found wrong on env, compared with the
    default environment's answers (probed first)."""
    got, problems = check_symlinks(smbd, env, PROBED['dir'],
                                   PROBED.get('default'))
    if env == 'default':
        PROBED['default'] = got
    return problems


def symlinks_stay_inside(smbd, env):
    fail_with(symlink_problems(smbd, env))


def exchanged_dir_stays_inside(smbd, env):
    fail_with(check_race(smbd, env, PROBED['dir']))


def probes_see_wide_links(smbd):
    """The probes must see an escape where smbd allows one: a share with
    wide links (which smbd 4.17 allows only with "allow insecure wide
    links" while SMB1 unix extensions are on)."""
    got = {}
    for env in ('default', 'wide_links'):
        got['symlinks', env] = symlink_problems(smbd, env)
    for env in ('default', 'wide_links'):
        got['race', env] = check_race(smbd, env, PROBED['dir'])
    for (probe, env), problems in sorted(got.items()):
        # what the probes saw where smbd lets clients out
        print('escape: insecure %s/%s: %s' % (
            probe, env, ' | '.join(problems)[:300] or 'nothing'),
            flush=True)
    wrong = ['%s/%s: %s' % (probe, env, 'nothing found' if env ==
                            'wide_links' else 'found ' + problems[0][:200])
             for (probe, env), problems in sorted(got.items())
             if bool(problems) != (env == 'wide_links')]
    assert not wrong, '; '.join(wrong)


SERVERS = [
    Server('escape', ENVS, [
        (symlinks_stay_inside, ['default'] +
         [e for e in ENVS if e != 'default']),
        (exchanged_dir_stays_inside, RACE_ENVS),
    ], setup=build_outside_and_shares),
    Server('escape-insecure', {'default': ('', {}),
                               'wide_links': ('', {'wide links': 'yes'})},
           [(probes_see_wide_links, [None])],
           setup=build_outside_and_shares, log_level='1',
           extra_global={'allow insecure wide links': 'yes'}),
]
