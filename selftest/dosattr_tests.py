#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""async_dosattr beyond the listing comparison every environment gets
(listing_tests):

- a listing changed between two QUERY_DIRECTORY calls (attributes set on
  the server and over SMB, entries renamed, entries replaced by
  symlinks) never shows an attribute the object does not have now;
- invalid options are logged and replaced by their defaults;
- over SMB1, where sessions share a tree connect, an admin user (root,
  who sees trusted.* EA names) and a second user list what they list on
  the default environment, the second while the admin's cache is warm;
- a create time set with SETINFO is listed as set, however the module
  answers smbd's asynchronous listing (issue 26);
- a client holding 10,000 partly listed directory handles keeps smbd
  within the default environment's memory plus the prefetch memory
  (issue 20);
- on slowfs, mode auto steers smbd's async dosmode as it should: slow
  listings go asynchronous, fast ones synchronous, a lone slow read
  steers nothing, the admin's "no" after a reload and a tree reconnect
  are told from the module's own, and a listing turned asynchronous in
  its middle reads each entry once.

The listing comparison under a container that refuses unshare(2) is in
listing_tests.
"""
import os
import pwd
import re
import resource
import struct
import subprocess

from impacket import smb, smb3structs

import harness
import smb2client
import testlib
from smb2client import open_dir, query_step, rest_of_listing
from testlib import (Server, differing, make_listing_dir, reference_blobs,
                     share_counters, smbclient, wait_older_than)

PREFIX = 'dosattr'		# of the test names: dosattr.<test>/<env>

ENVS = ['default', 'async_dosattr', 'async_dosattr_prefetch', 'full_stack']
# a tight bound, so that most reads of a listing wait for a slot; and the
# asynchronous path with the prefetch forced on, which there lists only
# the EA names ahead
NARROW = {
    'async_dosattr_narrow': ('async_dosattr', {
        'smbd async dosmode': 'yes', 'async_dosattr:mode': 'async',
        'async_dosattr:max inflight': '4'}),
    'async_dosattr_async_names': ('async_dosattr', {
        'smbd async dosmode': 'yes', 'async_dosattr:mode': 'async',
        'async_dosattr:prefetch': 'yes',
        'async_dosattr:ctime granularity msec': '20'}),
    # smbd lists no EA names: the readahead window has no room for them
    'async_dosattr_noea': ('async_dosattr', {
        'ea support': 'no', 'async_dosattr:prefetch': 'yes',
        'async_dosattr:ctime granularity msec': '20'}),
}
NO_EA_ENVS = ['async_dosattr_noea']
# the prefetch with the attribute cache, on both paths
CACHE = {
    'async_dosattr_cache': ('async_dosattr', {
        'async_dosattr:prefetch': 'yes',
        'async_dosattr:ctime granularity msec': '20',
        'async_dosattr:cache entries': '65536'}),
    'async_dosattr_async_cache': ('async_dosattr', {
        'smbd async dosmode': 'yes', 'async_dosattr:mode': 'async',
        'async_dosattr:prefetch': 'yes',
        'async_dosattr:ctime granularity msec': '20',
        'async_dosattr:cache entries': '65536'}),
}
BADOPTS = {
    'async_dosattr_badopts': ('async_dosattr', {
        'async_dosattr:max inflight': '0',
        'async_dosattr:prefetch': 'sometimes',
        'async_dosattr:prefetch window': 'big',
        'async_dosattr:ctime granularity msec': '-5',
        'async_dosattr:mode': 'later',
        'async_dosattr:async threshold usec': 'soon',
        'async_dosattr:cache entries': 'many',
        'async_dosattr:prefetch memory': '64MB',
    }),
    # a cache needs the ctime check: refused with granularity 0
    'async_dosattr_cache_nogran': ('async_dosattr', {
        'async_dosattr:prefetch': 'yes',
        'async_dosattr:ctime granularity msec': '0',
        'async_dosattr:cache entries': '1000',
    }),
}
ATTR_HIDDEN = 0x2
# SMB1 on, the first user an admin user (smbd runs it as root)
SMB1_GLOBAL = {'server min protocol': 'NT1'}
SMB1_ENVS = {
    'default': ('', {'admin users': harness.USERS[0]}),
    'async_dosattr_cache': (CACHE['async_dosattr_cache'][0], dict(
        CACHE['async_dosattr_cache'][1], **{
            'admin users': harness.USERS[0]})),
}
# smbd async dosmode on, which SMB1 never uses: its listing is synchronous
# (mode async: mode auto would steer async dosmode off on this disk)
SMB1_ASYNC_ENV = 'async_dosattr_smb1_async'
SMB1_ENVS[SMB1_ASYNC_ENV] = ('async_dosattr', {
    'admin users': harness.USERS[0], 'smbd async dosmode': 'yes',
    'async_dosattr:mode': 'async',
    'async_dosattr:prefetch': 'yes',
    'async_dosattr:ctime granularity msec': '20'})
SMB1_FILES = 40


# --- a listing changed between two QUERY_DIRECTORY calls --------------------

def make_changing_dir(smbd, env, blobs, count, name='chg', tgt='tgt'):
    owner = pwd.getpwnam(harness.USERS[0])
    top = smbd.share_path(env)
    d = os.path.join(top, name)
    tgt = os.path.join(top, tgt)
    for path in (d, tgt):
        os.makedirs(path)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    target = os.path.join(tgt, 'hidden')
    with open(target, 'w') as f:
        f.write('t')
    os.setxattr(target, 'user.DOSATTRIB', blobs['h'])
    for i in range(count):
        path = os.path.join(d, 'f%04d' % i)
        with open(path, 'w') as f:
            f.write('x')
        os.setxattr(path, 'user.DOSATTRIB', blobs['a'])
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return d


def change_the_rest(smbd, env, d, rest):
    """Make every entry not listed yet differ from what a prefetch may
    have read: hidden on the server, hidden over SMB, renamed, replaced
    by a symlink to a hidden file, or given an EA on the server."""
    groups = {'server': [], 'smb': [], 'renamed': [], 'symlink': [],
              'ea': []}
    kinds = list(groups)
    for i, name in enumerate(sorted(rest)):
        groups[kinds[i % len(kinds)]].append(name)
    for name in groups['server']:
        hidden = os.getxattr(os.path.join(d, '..', 'tgt', 'hidden'),
                             'user.DOSATTRIB')
        os.setxattr(os.path.join(d, name), 'user.DOSATTRIB', hidden)
    cmds = ['setmode "chg\\%s" +h' % n for n in groups['smb']]
    rc, out = smbclient(smbd, env, '; '.join(cmds))
    assert rc == 0, out
    for name in groups['renamed']:
        os.rename(os.path.join(d, name), os.path.join(d, 'r' + name))
    for name in groups['symlink']:
        os.remove(os.path.join(d, name))
        os.symlink('../tgt/hidden', os.path.join(d, name))
    for name in groups['ea']:
        os.setxattr(os.path.join(d, name), 'user.note', b'changed')
    return groups


def changed_listing_is_never_stale(smbd, env):
    d = make_changing_dir(smbd, env, reference_blobs(smbd), 400)
    # older than the prefetch environment's 20 ms ctime granularity: the
    # first QUERY_DIRECTORY reads a window ahead with the old values
    wait_older_than(d, 0.1)
    client = smb2client.Client(smbd, env)
    conn, fid = open_dir(client, 'chg')
    try:
        # two steps: by the second smbd has asked for EA names, and the
        # prefetch lists a window's names ahead
        first = query_step(conn, client.tid, fid)
        first.update(query_step(conn, client.tid, fid))
        assert first and len(first) < 100, 'first steps: %s' % first
        groups = change_the_rest(smbd, env, d,
                                 set(os.listdir(d)) - set(first) -
                                 {'r' + n for n in first})
        later = rest_of_listing(conn, client.tid, fid)
    finally:
        conn.close(client.tid, fid)
        client.logoff()
    if harness.samba_series() >= (4, 19) and later:
        # smbd 4.19+ keeps the entry that did not fit the last answer
        # before the changes (dptr->overflow) as it was: stale for smbd
        # alone too
        later.pop(next(iter(later)))
    hidden = set(groups['server'] + groups['smb'] + groups['symlink'])
    # where smbd lists no EAs, every EaSize is 0
    with_ea = set(groups['ea']) if env not in NO_EA_ENVS else set()
    wrong = []
    for name, (attr, ea_size) in sorted(later.items()):
        if name in groups['renamed']:
            wrong.append('%s listed under its old name' % name)
        elif (attr & ATTR_HIDDEN != 0) != (name in hidden):
            wrong.append('%s: 0x%x' % (name, attr))
        elif (ea_size != 0) != (name in with_ea):
            wrong.append('%s: EaSize %d' % (name, ea_size))
    assert not wrong, '%d wrong entries, e.g. %s' % (len(wrong), wrong[:5])
    changed = hidden | set(groups['ea'])
    shown = [n for n in changed if n in later]
    assert len(shown) >= len(changed) * 3 // 4, \
        'changed entries missing: %d of %d listed' % (len(shown),
                                                      len(changed))


def list_whole(client, path):
    """One listing of path, in small steps: name -> (attributes,
    EaSize)."""
    conn, fid = open_dir(client, path)
    try:
        return rest_of_listing(conn, client.tid, fid)
    finally:
        conn.close(client.tid, fid)


def wrong_entries(listing, groups, count):
    hidden = set(groups['server'] + groups['smb'])
    wrong = []
    for name, (attr, ea_size) in sorted(listing.items()):
        if (attr & ATTR_HIDDEN != 0) != (name in hidden):
            wrong.append('%s: 0x%x' % (name, attr))
        elif (ea_size != 0) != (name in groups['ea']):
            wrong.append('%s: EaSize %d' % (name, ea_size))
    if len(listing) != count:
        wrong.append('%d entries of %d' % (len(listing), count))
    return wrong


def cached_listing_is_never_stale(smbd, env):
    """List (the cache fills), change attributes on the server and over
    SMB and add EAs, list again at once and again later, all on one
    connection (the cache is its tree connect's): every listing shows
    what the objects are now, and the later ones come from the cache
    (but on the default environment, which has none)."""
    count = 300
    counted = env != 'default'
    d = make_changing_dir(smbd, env, reference_blobs(smbd), count,
                          'cached', 'ctgt')
    wait_older_than(d, 0.1)    # the environment's 20 ms granularity
    # the asynchronous path keeps only EA names: smbd reads the DOS
    # attributes through get_dos_attributes_send there
    counter = 'cached_names' if 'async' in env else 'cached'
    before = share_counters(smbd, env).get(counter, 0)
    client = smb2client.Client(smbd, env)
    try:
        listings_stay_right(smbd, env, client, d, count)
    finally:
        client.logoff()
    # the counters are logged at the tree disconnect, after the logoff
    if counted and not harness.wait_until(
            lambda: share_counters(smbd, env).get(counter, 0) > before):
        fail('no listing was answered from the cache: %s' %
             share_counters(smbd, env))


def listings_stay_right(smbd, env, client, d, count):
    nothing = {'server': [], 'smb': [], 'ea': []}
    for _ in range(2):
        wrong = wrong_entries(list_whole(client, 'cached'), nothing, count)
        assert not wrong, 'before the changes: %s' % wrong[:5]
    names = sorted(os.listdir(d))
    groups = {'server': names[0::7], 'smb': names[1::7], 'ea': names[2::7]}
    hidden = os.getxattr(os.path.join(d, '..', 'ctgt', 'hidden'),
                         'user.DOSATTRIB')
    for name in groups['server']:
        os.setxattr(os.path.join(d, name), 'user.DOSATTRIB', hidden)
    rc, out = smbclient(smbd, env, '; '.join(
        'setmode "cached\\%s" +h' % n for n in groups['smb']))
    assert rc == 0, out
    for name in groups['ea']:
        os.setxattr(os.path.join(d, name), 'user.note', b'changed')
    wrong = wrong_entries(list_whole(client, 'cached'), groups, count)
    assert not wrong, 'right after the changes: %s' % wrong[:5]
    wait_older_than(d, 0.1)    # the new values may be kept now
    for _ in range(2):
        wrong = wrong_entries(list_whole(client, 'cached'), groups, count)
        assert not wrong, 'later: %s' % wrong[:5]


def bad_options_are_logged_and_defaults_used(smbd):
    """On async_dosattr_badopts and async_dosattr_cache_nogran."""
    rc, out = smbclient(smbd, 'async_dosattr_badopts', 'ls')
    assert rc == 0, out
    for line in (r"async_dosattr:max inflight: .*; using 4096",
                 r"async_dosattr:prefetch: 'sometimes' is not one of: "
                 r".*; using auto",
                 r"async_dosattr:prefetch window: 'big' is not a number; "
                 r"using 64",
                 r"async_dosattr:ctime granularity msec: .*; using 1000",
                 r"async_dosattr:mode: 'later' is not one of: "
                 r".*; using auto",
                 r"async_dosattr:async threshold usec: 'soon' is not a "
                 r"number; using 50",
                 r"async_dosattr:cache entries: 'many' is not a number; "
                 r"using 0",
                 r"async_dosattr:prefetch memory: '64MB' is not a size; "
                 r"using 67108864"):
        assert smbd.log_lines(line), 'no log line like: ' + line
    cache_refused_without_granularity(smbd)


def cache_refused_without_granularity(smbd):
    share = 'async_dosattr_cache_nogran'
    for _ in range(2):      # a repeat would be answered by a cache
        rc, out = smbclient(smbd, share, 'ls')
        assert rc == 0, out
    line = (r'\[%s\]: cache entries needs a ctime granularity msec above '
            r'0: no cache' % share)
    assert smbd.log_lines(line), 'no log line like: ' + line
    counters = share_counters(smbd, share)
    assert counters.get('cached', 0) == 0, counters


def changed_listing_used_the_prefetch(smbd, share):
    c = share_counters(smbd, share)
    assert c.get('hits', 0) > 0, 'no prefetch hits: %s' % c


def max_inflight_queues_the_rest(smbd, share):
    c = share_counters(smbd, share)
    assert c.get('queued', 0) > 100, 'too few reads waited: %s' % c


def prefetch_listed_ea_names_ahead(smbd, share):
    c = share_counters(smbd, share)
    assert c.get('names', 0) > 0, 'no EA names from the prefetch: %s' % c
    if share == 'async_dosattr_async_names':
        assert c.get('prefetched', 0) == 0 and c.get('async', 0) > 0, \
            'smbd listed asynchronously, yet attributes were ' \
            'prefetched: %s' % c


def prefetch_without_ea_support(smbd, share):
    c = share_counters(smbd, share)
    assert c.get('hits', 0) > 0 and c.get('names', 0) == 0, \
        'with ea support = no: no prefetch hits, or EA names: %s' % c


def auto_lists_a_fast_disk_synchronously(smbd, share):
    """full_stack has the defaults: on a local disk mode auto turns
    smbd's async dosmode off and the listing is synchronous."""
    c = share_counters(smbd, share)
    assert c.get('steered', 0) > 0 and c.get('misses', 0) > 0, \
        'smbd was not steered to its synchronous listing: %s' % c


def fail(msg):
    raise AssertionError(msg)


# --- SMB1: sessions sharing a tree connect ------------------------------------

def make_ea_dir(smbd, env, hidden):
    """Files with a user.* EA and a trusted.* one (listed only to root,
    the admin user); some hidden, some private to the first user, whose
    EA the second user may not read (an EaSize of 0 for that user)."""
    owner = pwd.getpwnam(harness.USERS[0])
    top = os.path.join(smbd.share_path(env), 'eas')
    os.makedirs(top)
    for i in range(SMB1_FILES):
        path = os.path.join(top, 'f%03d' % i)
        with open(path, 'w') as f:
            f.write('x')
        os.setxattr(path, 'user.asvfs_note', b'for everybody')
        os.setxattr(path, 'trusted.asvfs_secret', b'for root only')
        if i % 3 == 0:
            os.setxattr(path, 'user.DOSATTRIB', hidden)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        os.chmod(path, 0o600 if i % 2 == 0 else 0o644)
    wait_older_than(top, 0.1)	# older than the ctime granularity


def smb1_find(conn, tid, pattern):
    """{name: (attributes, EaSize)} of one TRANS2_FIND_FIRST2 answer."""
    flags2 = conn.get_flags()[1]
    p = smb.SMBFindFirst2_Parameters(flags2)
    p['SearchAttributes'] = 0x16
    p['SearchCount'] = 512
    p['Flags'] = smb.SMB_FIND_CLOSE_AT_EOS
    p['InformationLevel'] = smb.SMB_FIND_FILE_BOTH_DIRECTORY_INFO
    p['SearchStorageType'] = 0
    # impacket negotiates Unicode or not: names come back as they went
    enc = 'utf-16le' if flags2 & smb.SMB.FLAGS2_UNICODE else 'ascii'
    p['FileName'] = (pattern + '\x00').encode(enc)
    conn.send_trans2(tid, smb.SMB.TRANS2_FIND_FIRST2, '\x00', p, '')
    total, data, params = 1, b'', b''
    while len(data) < total:
        resp = conn.recvSMB()
        resp.isValidAnswer(smb.SMB.SMB_COM_TRANSACTION2)
        cmd = smb.SMBCommand(resp['Data'][0])
        tp = smb.SMBTransaction2Response_Parameters(cmd['Parameters'])
        total = tp['TotalDataCount']
        params += cmd['Data'][tp['ParameterOffset'] - 55:][
            :tp['ParameterCount']]
        data += cmd['Data'][tp['DataOffset'] - 55:]
    answer = smb.SMBFindFirst2Response_Parameters(params)
    assert answer['EndOfSearch'], 'the listing did not fit one answer'
    found = {}
    for _ in range(answer['SearchCount']):
        rec = smb.SMBFindFileBothDirectoryInfo(data=data)
        name = rec['FileName'].decode(enc).rstrip('\x00')
        found[name] = (rec['ExtFileAttributes'], rec['EaSize'])
        if rec['NextEntryOffset'] == 0:
            break
        data = data[rec['NextEntryOffset']:]
    return found


def smb1_shared_tree(smbd, env):
    """The admin user lists twice (the second from the cache), then the
    second user, in a new session, lists on the same tree connect."""
    owner, other = harness.USERS
    conn = smb.SMB('*SMBSERVER', '127.0.0.1', sess_port=smbd.port)
    try:
        conn.login(owner, harness.PASSWORD)
        tid = conn.tree_connect_andx('\\\\*SMBSERVER\\' + env)
        smb1_find(conn, tid, '\\eas\\*')
        mine = smb1_find(conn, tid, '\\eas\\*')
        conn.set_uid(0)		# a new session, not a re-authentication
        conn.login(other, harness.PASSWORD)
        return mine, smb1_find(conn, tid, '\\eas\\*')
    finally:
        conn.close_session()


# what the default environment lists to each user
SMB1_DEFAULT = {}


def smb1_default_tells_the_users_apart(smbd, env):
    """The same directory on every share; on the default one the users
    see different EaSizes, and some entries are hidden: an answer given
    to the wrong user shows."""
    hidden = reference_blobs(smbd)['h']
    for e in smbd.envs:
        make_ea_dir(smbd, e, hidden)
    admin, other = smb1_shared_tree(smbd, env)
    assert len(other) == SMB1_FILES + 2, 'default: %s' % other
    assert admin['f000'][1] != other['f000'][1] and \
        admin['f000'][0] & ATTR_HIDDEN, 'default: %s' % ((admin, other),)
    SMB1_DEFAULT['listings'] = admin, other


def smb1_sessions_sharing_a_tree_match_default(smbd, env):
    assert SMB1_DEFAULT, 'no listing of the default environment'
    smb1_listings_match(SMB1_DEFAULT['listings'], smb1_shared_tree(smbd, env))


def smb1_listings_match(expected, got):
    for who, exp, act in zip(('admin', 'other'), expected, got):
        diff = differing(exp, act)
        assert not diff, '%s: %d entries differ from default, e.g. %s' % (
            who, len(diff), ['%s: %s vs %s' % (n, act.get(n), exp.get(n))
                             for n in diff[:3]])


def smb1_cache_was_warm_when_the_user_changed(smbd, share):
    c = share_counters(smbd, share)
    assert c.get('cached', 0) > 0 and c.get('reader_changes', 0) > 0, \
        'the cache was not warm when the reader changed: %s' % c


def smb1_listing_is_prefetched_under_async_dosmode(smbd, share):
    c = share_counters(smbd, share)
    # each listing's entries, but for . and .., answered from the prefetch
    assert c.get('prefetched', 0) >= SMB1_FILES and \
        c.get('hits', 0) >= SMB1_FILES, \
        'the SMB1 listing was not prefetched: %s' % c


# --- create times set over SMB, listed ------------------------------------

# smbd's asynchronous listing, each way async_dosattr answers it: at
# once (mode sync, and mode auto before it has measured the disk),
# through the ring (mode async); and smbd's synchronous listing with the
# prefetch
BTIME_ENVS = {
    'default': ('', {}),
    'async_dosmode': ('', {'smbd async dosmode': 'yes'}),
    'async_dosattr_sync': harness.ENVIRONMENTS['async_dosattr_sync'],
    'async_dosattr_auto': ('async_dosattr', {'smbd async dosmode': 'yes'}),
    'async_dosattr': harness.ENVIRONMENTS['async_dosattr'],
    'async_dosattr_prefetch': harness.ENVIRONMENTS['async_dosattr_prefetch'],
}
BTIME_FILES = 20
# 2001-01-01 00:00:00 UTC as NTTIME (100 ns since 1601)
NTTIME_2001 = 126227808000000000


def set_create_times(smbd, env):
    """Files whose create times are set with SETINFO (FileBasicInformation,
    the other times left alone): name -> the NTTIME set."""
    client = smb2client.Client(smbd, env)
    conn = client.conn.getSMBServer()
    want = {}
    try:
        client.conn.createDirectory(env, 'btime')
        for i in range(BTIME_FILES):
            name = 'f%02d' % i
            # a day apart, and not on a second
            want[name] = NTTIME_2001 + i * 864000000000 + i * 1234560
            fid = client.create('btime\\' + name)
            try:
                conn.setInfo(client.tid, fid, struct.pack(
                    '<qqqqLL', want[name], 0, 0, 0, 0, 0),
                    smb3structs.SMB2_0_INFO_FILE,
                    smb3structs.SMB2_FILE_BASIC_INFO)
            finally:
                client.close(fid)
    finally:
        client.logoff()
    return want


def listed_create_times(smbd, env):
    """name -> CreationTime of the listing of btime, as the first
    QUERY_DIRECTORY of a new connection (a new smbd process, in which
    mode auto has measured nothing yet) shows it."""
    client = smb2client.Client(smbd, env)
    conn, fid = open_dir(client, 'btime')
    out = {}
    try:
        data = conn.queryDirectory(
            client.tid, fid, '*', maxBufferSize=65536,
            informationClass=smb2client.FULL_DIRECTORY_INFO)
        while data:
            info = smb.SMBFindFileFullDirectoryInfo(smb.SMB.FLAGS2_UNICODE)
            info.fromString(data)
            name = info['FileName'].decode('utf-16le')
            out[name] = info['CreationTime']
            if info['NextEntryOffset'] == 0:
                break
            data = data[info['NextEntryOffset']:]
    finally:
        conn.close(client.tid, fid)
        client.logoff()
    return out


def listed_create_time_is_the_one_set(smbd, env):
    want = set_create_times(smbd, env)
    got = listed_create_times(smbd, env)
    wrong = ['%s: %s, set %s' % (n, got.get(n), t)
             for n, t in sorted(want.items()) if got.get(n) != t]
    assert not wrong, '%d of %d create times listed wrong, e.g. %s' % (
        len(wrong), len(want), wrong[:3])


# --- the prefetch's memory, with many directory handles open ---------------

# Samba 4.22's smbd runs out of descriptors between 7,000 and 10,000 open
# directories on one connection, and then panics, on the default VFS too
# (vfs_default.c:619, dirfd -1 from openat_pathref_fsp_lcomp: seen
# 2026-12-06), where 4.17 holds 10,000.  Each release holds what it can.
HANDLES = 7000 if harness.SAMBA == '4.22' else 10000
HANDLE_BATCH = 250
MANY_FILES = 100
MiB = 1024 * 1024
# async_dosattr:prefetch memory by default, and what else smbd may take
# beyond what it takes on the default environment for the same handles
PREFETCH_MEMORY = 64 * MiB
RSS_SLACK = 32 * MiB


def rss_of(pid):
    with open('/proc/%s/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def send_query_directory(rc, user, fid):
    """The first QUERY_DIRECTORY of a handle, answered with about a
    dozen entries: the listing stays in the middle of the directory."""
    q = smb3structs.SMB2QueryDirectory()
    q['FileInformationClass'] = smb2client.FULL_DIRECTORY_INFO
    q['FileIndex'] = 0
    q['FileID'] = fid
    q['OutputBufferLength'] = 1024
    q['FileNameLength'] = 2
    q['Buffer'] = '*'.encode('utf-16le')
    return rc._send(user, smb3structs.SMB2_QUERY_DIRECTORY, q)


def open_and_list(rc, user, n):
    """n handles of directory 'many', opened and listed in part."""
    mids = [rc.send_create(user, 'many', smb2client.FILE_OPEN,
                           access=smb3structs.FILE_READ_ATTRIBUTES |
                           smb2client.FILE_READ_DATA,
                           options=smb3structs.FILE_DIRECTORY_FILE)
            for _ in range(n)]
    fids = []
    for mid in mids:
        status, _, fid = smb2client.create_result(*rc.wait(mid)[:2])
        assert status == 0, 'open: 0x%x' % status
        fids.append(fid)
    for mid in [send_query_directory(rc, user, fid) for fid in fids]:
        status = rc.wait(mid)[0]
        assert status == 0, 'listing: 0x%x' % status


def hold_listed_dirs(smbd, env, bound):
    """HANDLES handles of one directory on one connection, each listed in
    part (a prefetch reads ahead and keeps its window until the listing
    ends or the handle is closed), opened in pipelined batches while the
    connection's smbd is watched.  Stops early once its RSS exceeds
    bound, so that a prefetch without a budget cannot exhaust the
    machine.  Returns (handles held, largest RSS seen)."""
    user = harness.USERS[0]
    before = smbd.children()
    rc = smb2client.RawConn(smbd, env)
    held, peak = 0, 0
    try:
        rc.login(user)
        new = smbd.children() - before
        assert len(new) == 1, 'which smbd serves us: %s' % new
        pid = new.pop()
        while held < HANDLES and peak <= bound:
            n = min(HANDLE_BATCH, HANDLES - held)
            open_and_list(rc, user, n)
            held += n
            peak = max(peak, rss_of(pid))
        return held, peak
    finally:
        rc.disconnect()


def make_many(smbd, env):
    owner = pwd.getpwnam(harness.USERS[0])
    d = os.path.join(smbd.share_path(env), 'many')
    os.makedirs(d)
    os.chown(d, owner.pw_uid, owner.pw_gid)
    for i in range(MANY_FILES):
        path = os.path.join(d, 'f%03d' % i)
        with open(path, 'w') as f:
            f.write('x')
        os.chown(path, owner.pw_uid, owner.pw_gid)


def wait_for_counters(smbd, share, timeout=120):
    """The counters of a share once its connection has logged them."""
    if not harness.wait_until(lambda: share_counters(smbd, share), timeout,
                              0.2):
        fail('no counters of %s logged within %d s' % (share, timeout))
    return share_counters(smbd, share)


def prefetch_memory_stays_bounded(smbd, env):
    """10,000 partly listed handles of a directory held open: smbd takes
    no more than on the default environment plus the prefetch memory
    (default 64 MiB) plus 32 MiB, and the prefetch served the first of
    them."""
    for e in ('default', env):
        make_many(smbd, e)
    # older than the environment's 20 ms ctime granularity
    wait_older_than(os.path.join(smbd.share_path(env), 'many'), 0.1)
    held, base = hold_listed_dirs(smbd, 'default', 1 << 62)
    assert held == HANDLES, 'default: %d handles' % held
    bound = base + PREFETCH_MEMORY + RSS_SLACK
    held, peak = hold_listed_dirs(smbd, env, bound)
    assert peak <= bound, \
        'RSS %.0f MiB after %d handles, above %.0f MiB (the default ' \
        'environment: %.0f MiB for %d)' % (
            peak / MiB, held, bound / MiB, base / MiB, HANDLES)
    c = wait_for_counters(smbd, env)
    assert c.get('hits', 0) > 0 and c.get('over_budget', 0) > 0, \
        'the prefetch served none, or never met its budget: %s' % c


def prefetch_memory_exceeded_is_logged_once(smbd):
    lines = smbd.log_lines(r'prefetch memory of \d+ bytes in use: more '
                           r'directories are listed without prefetch')
    assert len(lines) == 1, 'logged %d times: %s' % (len(lines), lines[:2])


# --- mode auto steering smbd's async dosmode, on slowfs --------------------

# mode auto, asynchronous path and prefetch, finding out by itself that
# the storage is slow
AUTO_ENVS = {
    'async_dosattr_async_auto': ('async_dosattr',
                                 {'smbd async dosmode': 'yes'}),
    'async_dosattr_auto': ('async_dosattr',
                           {'async_dosattr:ctime granularity msec': '20'}),
}
# the asynchronous path in mode auto, for one test alone: its counters
# are per tree connect, in order.  The threshold puts slowfs's own
# latency (some 40 usec a read) clearly below it, 2 ms clearly above.
RETCON_ENV = 'async_dosattr_retcon'
RETCON_DEF = ('async_dosattr', {'smbd async dosmode': 'yes',
                                'async_dosattr:async threshold usec': '500'})
# the same, for the reload test, which rewrites its section
RELOAD_ENV = 'async_dosattr_reload'
# mode auto with thresholds far above slowfs's own latency (40-70 usec,
# some ms on a machine at load 10-18, which at thresholds of 1 and 2 ms
# steered it): a lone slow read, capped at twice the larger threshold,
# moves the estimate by half the async threshold (by all of it at the
# former cap).  The spike is 5 times that cap, as 10 ms were at 1/2 ms.
SPIKY_ENV = 'async_dosattr_spiky'
SPIKY_ASYNC_USEC = 20000
SPIKY_DEF = ('async_dosattr', {'smbd async dosmode': 'yes',
                               'async_dosattr:async threshold usec':
                               str(SPIKY_ASYNC_USEC),
                               'async_dosattr:prefetch threshold usec':
                               str(2 * SPIKY_ASYNC_USEC)})
SPIKE_MS = 10 * SPIKY_ASYNC_USEC // 1000
# the asynchronous path with every default, for one test alone: a new
# connection to slow storage
COLD_ENV = 'async_dosattr_cold'
COLD_DEF = ('async_dosattr', {'smbd async dosmode': 'yes'})
# smbd's synchronous listing with the prefetch on, turned asynchronous
# by the admin in the middle of a listing (mode async: nothing steers)
TURNED_ENV = 'async_dosattr_turned'
TURNED_DEF = ('async_dosattr', {'smbd async dosmode': 'no',
                                'async_dosattr:mode': 'async',
                                'async_dosattr:prefetch': 'yes',
                                'async_dosattr:ctime granularity msec':
                                '20'})
STEERING_ENVS = dict(AUTO_ENVS, **{
    'default': harness.ENVIRONMENTS['default'],
    RETCON_ENV: RETCON_DEF,
    RELOAD_ENV: (RETCON_DEF[0], dict(RETCON_DEF[1])),
    SPIKY_ENV: SPIKY_DEF,
    COLD_ENV: COLD_DEF,
    TURNED_ENV: (TURNED_DEF[0], dict(TURNED_DEF[1])),
})


def slow_listing_twice(smbd, env, storage):
    """Two listings in one connection: the first teaches mode auto that
    the storage is slow, so the second is asynchronous (checked on the
    counters when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'twicelist', 100)
    out = list_slowly(smbd, env, storage, 'twicelist/',
                      'ls twicelist\\*; ls twicelist\\*')
    assert out.count('f0099') == 2, out[-500:]


def list_slowly(smbd, env, storage, path_filter, commands):
    """smbclient's output for commands while getxattr takes 2 ms on
    paths containing path_filter."""
    storage.set('getxattr.delay_ms = 2', 'path_filter = ' + path_filter)
    try:
        rc, out = smbclient(smbd, env, commands)
    finally:
        storage.set()
    assert rc == 0, out
    return out


def slow_entries_in_fast_directories(smbd, env, storage):
    """Two listings in one connection of directories whose own
    attributes are read fast and whose entries slowly: the fast read
    of the second directory asks mode auto to measure again, and that
    measurement must not end the listing before its first entry."""
    for d in ('fastdir1', 'fastdir2'):
        make_listing_dir(storage, smbd, env, d, 60)
    out = list_slowly(smbd, env, storage, '/f00',
                      'ls fastdir1\\*; ls fastdir2\\*')
    listed = len(re.findall(r'^\s+f00\d\d\s', out, re.M))
    assert listed == 120, '%d of 120 entries listed: %s' % (listed,
                                                           out[-500:])


def listing_after_tree_reconnect(smbd, env, storage):
    """One connection lists a fast directory (mode auto steers smbd's
    async dosmode off for the share), disconnects the tree, connects it
    again and lists a slow directory twice: the second tree connect must
    know the "no" it finds for the module's, not the admin's, and list
    asynchronously (checked on the counters when smbd has stopped)."""
    for d in ('quickdir', 'slowdir'):
        make_listing_dir(storage, smbd, env, d, 60)
    out = list_slowly(smbd, env, storage, 'slowdir/',
                      'ls quickdir\\*; tdis; tcon %s; ls slowdir\\*; '
                      'ls slowdir\\*' % env)
    listed = len(re.findall(r'^\s+f00\d\d\s', out, re.M))
    assert listed == 180, '%d of 180 entries listed: %s' % (listed,
                                                           out[-500:])


def set_and_reload(smbd, env, pid, option, value):
    """Set an option of env's share in smb.conf, and have the smbd
    child pid reload it.  reload-config is asynchronous; the child
    handles its messages in order, reloading within the handler, so its
    answer to a ping that follows says the reload is done."""
    smbd.envs[env][1][option] = value
    smbd.write_conf()
    subprocess.run(harness.runtime_cmd(['smbcontrol', '-s', smbd.conf,
                                        str(pid), 'reload-config'],
                                       binds=[smbd.dir]), check=True)
    subprocess.run(harness.runtime_cmd(['smbcontrol', '-s', smbd.conf, '-t',
                                        str(harness.WAIT_SECS), str(pid),
                                        'ping'], binds=[smbd.dir]),
                   check=True, stdout=subprocess.DEVNULL)


def listing_after_reload(smbd, env, storage):
    """A listing on fast storage steers smbd's async dosmode off for the
    share; then the admin sets it to no and smbd reloads.  The module
    must take that no for the admin's (the reload clears the share's
    parametric options, the module's note of its own no with them) and
    leave the slow listings that follow synchronous on the same tree
    connect (checked on the counters when smbd has stopped)."""
    for d in ('quickdir', 'slowdir'):
        make_listing_dir(storage, smbd, env, d, 60)
    opts = smbd.envs[env][1]
    baseline = smbd.children()
    c = smb2client.Client(smbd, env)
    try:
        pid = (smbd.children() - baseline).pop()
        got = c.conn.listPath(env, 'quickdir\\*')
        assert len(got) == 62, '%d entries listed' % len(got)
        set_and_reload(smbd, env, pid, 'smbd async dosmode', 'no')
        storage.set('getxattr.delay_ms = 2', 'path_filter = slowdir/')
        try:
            for _ in range(2):
                got = c.conn.listPath(env, 'slowdir\\*')
                assert len(got) == 62, '%d entries listed' % len(got)
        finally:
            storage.set()
    finally:
        c.logoff()
        opts['smbd async dosmode'] = 'yes'
        smbd.write_conf()


def listing_with_lone_slow_reads(smbd, env, storage):
    """A fast directory with four entries that read slowly (SPIKE_MS, 10
    times the async threshold), as a busy machine's preempted reads look
    to mode auto: after steering smbd's async dosmode off at its first
    read, the listing must not steer it again (checked on the counters
    when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'spikydir', 196)
    make_listing_dir(storage, smbd, env, 'spikydir', 4, prefix='spike')
    storage.set('getxattr.delay_ms = %d' % SPIKE_MS,
                'path_filter = spikydir/spike')
    try:
        rc, out = smbclient(smbd, env, 'ls spikydir\\*')
    finally:
        storage.set()
    assert rc == 0, out
    listed = len(re.findall(r'^\s+(f|spike)\d{4}\s', out, re.M))
    assert listed == 200, '%d of 200 entries listed: %s' % (listed,
                                                           out[-500:])


def slow_share_keeps_async_dosmode(smbd, env, storage):
    """A new connection to a share whose every read is slow (2 ms, far
    above the default thresholds): mode auto must keep smbd's async
    dosmode on from the first read, and no entry's DOS attributes may be
    read twice, by the prefetch and by the asynchronous path (checked on
    the counters when smbd has stopped)."""
    make_listing_dir(storage, smbd, env, 'colddir', 200)
    out = list_slowly(smbd, env, storage, '/' + env, 'ls colddir\\*')
    listed = len(re.findall(r'^\s+f0\d{3}\s', out, re.M))
    assert listed == 200, '%d of 200 entries listed: %s' % (listed,
                                                           out[-500:])


def listing_turned_async(smbd, env, storage):
    """A listing that smbd begins synchronously (the prefetch reads DOS
    attributes ahead) and, after the admin turned smbd's async dosmode on
    and smbd reloaded, goes on asynchronously on the same handle: from
    then on the prefetch must leave the DOS attributes to the
    asynchronous path (checked on the counters when smbd has
    stopped)."""
    make_listing_dir(storage, smbd, env, 'turndir', 600)
    wait_older_than(storage.backing(smbd, env, 'turndir'), 0.1)
    opts = smbd.envs[env][1]
    baseline = smbd.children()
    client = smb2client.Client(smbd, env)
    try:
        pid = (smbd.children() - baseline).pop()
        conn, fid = smb2client.open_dir(client, 'turndir')
        try:
            listed = dict(smb2client.query_step(conn, client.tid, fid))
            assert 0 < len(listed) < 100, '%d listed' % len(listed)
            set_and_reload(smbd, env, pid, 'smbd async dosmode', 'yes')
            listed.update(smb2client.rest_of_listing(conn, client.tid,
                                                     fid))
        finally:
            conn.close(client.tid, fid)
    finally:
        client.logoff()
        opts['smbd async dosmode'] = 'no'
        smbd.write_conf()
    assert len(listed) == 600, '%d of 600 listed' % len(listed)


def tree_counters(smbd, share):
    """async_dosattr's listing counters of share, one dict per tree
    connect, in order."""
    lines = smbd.log_lines('async_dosattr counters listing: share=%s ' %
                           share)
    return [{k: int(v) for k, v in re.findall(r' (\w+)=(\d+)', ln)}
            for ln in lines]


def counted(smbd, share, counter, what):
    """counter, summed over share's connections, is above zero."""
    total, lines = testlib.counter_total(
        smbd, 'async_dosattr counters listing: share=%s ' % share, counter)
    assert total > 0, 'no %s: %s' % (what, lines[-3:])


def async_dosattr_auto_goes_async_on_slow_storage(smbd):
    counted(smbd, 'async_dosattr_async_auto', 'async', 'asynchronous read')


def async_dosattr_auto_prefetches_on_slow_storage(smbd):
    counted(smbd, 'async_dosattr_auto', 'hits', 'prefetch hits')


def async_dosattr_auto_leaves_async_dosmode_off_alone(smbd):
    """Slow reads, but the admin left smbd async dosmode off there."""
    steered, lines = testlib.counter_total(
        smbd, 'async_dosattr counters listing: share=async_dosattr_auto ',
        'steered')
    assert lines and steered == 0, 'steered %d times: %s' % (steered,
                                                             lines[-3:])


def tree_counters_hold(smbd, share, holds):
    counts = tree_counters(smbd, share)
    assert holds(counts), 'counters per tree connect: %s' % counts


def tree_reconnect_finds_async_dosmode_again(smbd, env):
    tree_counters_hold(smbd, env, lambda c: len(c) == 2 and
                       c[0].get('steered', 0) > 0 and
                       c[1].get('async', 0) > 0)


def reload_to_no_is_the_admins(smbd, env):
    """Steered once, by the fast listing, and never back on."""
    tree_counters_hold(smbd, env, lambda c: len(c) == 1 and
                       c[0].get('steered', 0) == 1 and
                       c[0].get('async', 0) == 0)


def lone_slow_reads_steer_nothing(smbd, env):
    tree_counters_hold(smbd, env, lambda c: len(c) == 1 and
                       c[0].get('steered', 0) == 1)


def slow_share_kept_async_dosmode(smbd, env):
    tree_counters_hold(smbd, env, lambda c: len(c) == 1 and
                       c[0].get('steered', 1) == 0 and
                       c[0].get('prefetched', 1) == 0 and
                       c[0].get('async', 0) >= 150)


def turned_async_reads_each_entry_once(smbd, env):
    """Before the reload at most the first top-ups (a window of 64
    each)."""
    tree_counters_hold(smbd, env, lambda c: len(c) == 1 and
                       0 < c[0].get('prefetched', 0) <= 192 and
                       c[0].get('async', 0) >= 400)


STEERING_TESTS = [
    (slow_listing_twice, ['async_dosattr_async_auto']),
    (slow_entries_in_fast_directories,
     ['async_dosattr_auto', 'async_dosattr_async_auto']),
    (listing_after_tree_reconnect, [RETCON_ENV]),
    (listing_after_reload, [RELOAD_ENV]),
    (listing_with_lone_slow_reads, [SPIKY_ENV]),
    (slow_share_keeps_async_dosmode, [COLD_ENV]),
    (listing_turned_async, [TURNED_ENV]),
]
# the steering tests' checks, on the counters of their tree connects
STEERING_AFTER = [
    (async_dosattr_auto_goes_async_on_slow_storage, [None]),
    (async_dosattr_auto_prefetches_on_slow_storage, [None]),
    (async_dosattr_auto_leaves_async_dosmode_off_alone, [None]),
    (tree_reconnect_finds_async_dosmode_again, [RETCON_ENV]),
    (reload_to_no_is_the_admins, [RELOAD_ENV]),
    (lone_slow_reads_steer_nothing, [SPIKY_ENV]),
    (slow_share_kept_async_dosmode, [COLD_ENV]),
    (turned_async_reads_each_entry_once, [TURNED_ENV]),
]


def files_hard_limit():
    """Why the memory test cannot run here, or None: smbd raises its
    descriptor limit only up to the hard one it inherits."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < HANDLES + 1000:
        return 'open files hard limit %d' % hard
    return None


CHANGES_ENVS = dict({e: harness.ENVIRONMENTS[e] for e in ENVS},
                    **BADOPTS, **NARROW, **CACHE)
SERVERS = [
    Server('dosattr_btime', BTIME_ENVS,
           [(listed_create_time_is_the_one_set, list(BTIME_ENVS))]),
    Server('dosattr_smb1', SMB1_ENVS, [
        (smb1_default_tells_the_users_apart, ['default']),
        (smb1_sessions_sharing_a_tree_match_default,
         ['async_dosattr_cache', SMB1_ASYNC_ENV]),
    ], after=[
        (smb1_cache_was_warm_when_the_user_changed, ['async_dosattr_cache']),
        (smb1_listing_is_prefetched_under_async_dosmode, [SMB1_ASYNC_ENV]),
    ], extra_global=SMB1_GLOBAL),
    Server('dosattr', CHANGES_ENVS, [
        (changed_listing_is_never_stale, ENVS + list(NARROW) + list(CACHE)),
        (cached_listing_is_never_stale, ['default'] + list(CACHE)),
        (bad_options_are_logged_and_defaults_used, [None]),
    ], after=[
        (changed_listing_used_the_prefetch, ['async_dosattr_prefetch']),
        (prefetch_without_ea_support, ['async_dosattr_noea']),
        (prefetch_listed_ea_names_ahead,
         ['async_dosattr_prefetch', 'async_dosattr_async_names']),
        (auto_lists_a_fast_disk_synchronously, ['full_stack']),
        (max_inflight_queues_the_rest, ['async_dosattr_narrow']),
    ]),
    Server('dosattr_memory', ['default', 'async_dosattr_prefetch'], [
        (prefetch_memory_stays_bounded, ['async_dosattr_prefetch']),
        (prefetch_memory_exceeded_is_logged_once, [None]),
    ], skip=files_hard_limit()),
    Server('dosattr_steering', STEERING_ENVS, STEERING_TESTS,
           STEERING_AFTER, storage='slowfs'),
]

