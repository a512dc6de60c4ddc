#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the series that carries this project's modules into Samba's own
tree, as a Samba developer would send them upstream:

  0001 the engine, a private library (source3/modules/asvfs_*)
  0002..0006 one module each: source3/modules/vfs_async_<name>.c, its
       wscript_build entry, its place among the default shared modules
       (with liburing, next to vfs_io_uring) and its man page
  0007 a share stacking all five in the selftest fileserver environment,
       and smbtorture runs against it in source3/selftest/tests.py

The series is generated from the sources in modules/ and docs/manpages/,
so it never drifts from them: the selftest checks that the committed
series is what this script writes now (build.intree_series_is_current).
git format-patch runs in a scratch repository holding only the Samba
files the series touches, at their content in the prepared tree, with
fixed dates and --zero-commit, so the output depends on the sources alone.

Usage: intree-series.py [--samba-source DIR | --samba SERIES] [--out DIR]
  defaults: the prepared tree of the installed samba, and
  patches/<major.minor>/in-tree/; then, without arguments, also every
  other series that has a patches/<series>/in-tree/ and whose prepared
  tree is in its chroot (make SAMBA=<series>), e.g. 4.22.  A series whose
  chroot is missing is left as it is, with a warning.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTHOR = ('samba-async-vfs maintainers',
          'maintainers@users.noreply.r-seed-4777ee28.example')
DATE = '2026-12-06T12:00:00+0000'
# Order of the module patches, and what each says upstream.
MODULES = [
    ('async_uring', 'pread, pwrite and fsync through io_uring, with one '
     'ring per process shared by all shares, batched submission, '
     'per-request cancellation and fallback to the next module.'),
    ('async_xattr', 'extended attribute reads relative to a directory '
     '(SMB_VFS_GETXATTRAT_SEND) through io_uring, with the requester\'s '
     'credentials as an io_uring personality, so no per-thread cwd is '
     'needed.'),
    ('async_dosattr', 'DOS attributes for directory listings: batched '
     'xattr reads for the asynchronous listing, and a prefetch for '
     'smbd\'s synchronous one on slow storage.'),
    ('async_open', 'opens and creates that may block on slow storage, '
     'each through the smbd hook that fits it (deferred create replay, '
     'open retry).'),
    ('async_brl', 'byte-range lock decisions that must wait (POSIX locks '
     'held outside smbd) answered with NT_STATUS_RETRY and woken by an '
     'event instead of polling.'),
]
# Samba files the series edits (the new files come from this project).
EDITED = ['source3/modules/wscript_build', 'source3/wscript',
          'docs-xml/wscript_build', 'selftest/target/Samba3.pm',
          'source3/selftest/tests.py']
SAMBA_DOCTYPE = ('<!DOCTYPE refentry PUBLIC "-//Samba-Team//DTD DocBook '
                 'V4.2-Based Variant V1.0//EN" '
                 '"http://www.samba.org/samba/DTD/samba-doc">\n')
# smbtorture suites run against the share in Samba's selftest: the ones
# this project's own selftest runs on the full stack, minus those with
# known failures on Samba's selftest file system.
TORTURE = ['smb2.read', 'smb2.rw', 'smb2.lock', 'smb2.compound_async',
           'smb2.oplock.brl1', 'smb2.oplock.brl2', 'smb2.oplock.brl3']


def die(msg):
    sys.exit('intree-series: ' + msg)


def git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME=AUTHOR[0],
               GIT_AUTHOR_EMAIL=AUTHOR[1], GIT_COMMITTER_NAME=AUTHOR[0],
               GIT_COMMITTER_EMAIL=AUTHOR[1], GIT_AUTHOR_DATE=DATE,
               GIT_COMMITTER_DATE=DATE, GIT_CONFIG_NOSYSTEM='1',
               HOME=repo)
    return subprocess.run(['git', '-C', repo] + list(args), env=env,
                          check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def commit(repo, subject, body):
    signed = 'Signed-off-by: %s <%s>' % AUTHOR
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', '%s\n\n%s\n\n%s' % (subject, body,
                                                        signed))


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def insert_after(text, anchor, addition, what):
    """Insert addition after the first line containing anchor."""
    i = text.find(anchor)
    if i < 0:
        die('%s: no "%s" in the Samba tree' % (what, anchor.strip()))
    j = text.index('\n', i) + 1
    return text[:j] + addition + text[j:]


def insert_before(text, anchor, addition, what):
    i = text.find(anchor)
    if i < 0:
        die('%s: no "%s" in the Samba tree' % (what, anchor.strip()))
    return text[:i] + addition + text[i:]


def intree_module_source(name, text):
    """Out of tree smbd looks for samba_init_module; in tree the build
    names the init function per module (static or shared)."""
    out, n = re.subn(
        r'(?:/\*[^\n]*\*/\n)?NTSTATUS samba_init_module\(TALLOC_CTX \*ctx\);\n'
        r'NTSTATUS samba_init_module\(TALLOC_CTX \*ctx\)\n',
        'static_decl_vfs;\nNTSTATUS vfs_%s_init(TALLOC_CTX *ctx)\n' % name,
        text)
    if n != 1:
        die('vfs_%s.c: no samba_init_module definition to rename' % name)
    return out


def intree_source(text):
    """Samba's build defines _GNU_SOURCE on the command line."""
    return re.sub(r'(?m)^#define _GNU_SOURCE\n',
                  '#ifndef _GNU_SOURCE\n#define _GNU_SOURCE\n#endif\n', text)


def engine_patch(repo):
    lib = os.path.join(TOP, 'modules', 'lib')
    sources = sorted(f for f in os.listdir(lib) if f.endswith('.c'))
    for f in sorted(os.listdir(lib)):
        if f.endswith(('.c', '.h')):
            write(os.path.join(repo, 'source3', 'modules', f),
                  intree_source(read(os.path.join(lib, f))))
    # The Samba-facing headers the modules share sit beside them
    mods = os.path.join(TOP, 'modules')
    for f in sorted(os.listdir(mods)):
        if f.startswith('asvfs_') and f.endswith('.h'):
            write(os.path.join(repo, 'source3', 'modules', f),
                  read(os.path.join(mods, f)))
    path = os.path.join(repo, 'source3/modules/wscript_build')
    entry = ("\nif bld.CONFIG_SET('HAVE_LIBURING'):\n"
             "    # The engine of the vfs_async_* modules: one io_uring per\n"
             "    # smbd process, shared by every module and share, so a\n"
             "    # private library rather than a copy in each module.\n"
             "    bld.SAMBA_LIBRARY('async_vfs_engine',\n"
             "                      source='''%s''',\n"
             "                      deps='talloc tevent uring pthread',\n"
             "                      private_library=True)\n" %
             '\n                              '.join(sources))
    text = insert_before(read(path), "bld.SAMBA3_MODULE('vfs_preopen',",
                         entry.lstrip('\n') + '\n', 'wscript_build')
    write(path, text)
    commit(repo, 's3:modules: add async_vfs_engine, the io_uring engine '
           'of the vfs_async_* modules',
           'One engine per smbd process, created lazily after fork and '
           'shared by all\nmodules and shares of that process: '
           'submissions are prepared with the\nrequester\'s credentials '
           '(an io_uring personality or per-thread\ncredentials), '
           'batched once per tevent loop turn, reaped in batches; '
           'memory\nthe kernel still writes to outlives a cancelled '
           'request; where io_uring is\nmissing, filtered or lacks an '
           'opcode the caller falls back.\n\nIt uses no Samba headers '
           '(the modules do), and is built only with liburing.')


def module_patch(repo, name, what, after):
    """after: the module before this one in the lists, or None."""
    src = read(os.path.join(TOP, 'modules', 'vfs_%s.c' % name))
    write(os.path.join(repo, 'source3/modules/vfs_%s.c' % name),
          intree_source(intree_module_source(name, src)))
    path = os.path.join(repo, 'source3/modules/wscript_build')
    entry = ("bld.SAMBA3_MODULE('vfs_%(n)s',\n"
             "                 subsystem='vfs',\n"
             "                 source='vfs_%(n)s.c',\n"
             "                 deps='samba-util tevent uring "
             "async_vfs_engine',\n"
             "                 init_function='',\n"
             "                 internal_module=bld.SAMBA3_IS_STATIC_MODULE("
             "'vfs_%(n)s'),\n"
             "                 enabled=bld.SAMBA3_IS_ENABLED_MODULE("
             "'vfs_%(n)s'))\n\n" % {'n': name})
    write(path, insert_before(read(path), "bld.SAMBA3_MODULE('vfs_preopen',",
                              entry, 'wscript_build'))
    path = os.path.join(repo, 'source3/wscript')
    write(path, insert_after(read(path),
                             "default_shared_modules.extend(['vfs_%s'" %
                             (after or 'io_uring'),
                             "        default_shared_modules.extend("
                             "['vfs_%s'])\n" % name, 'source3/wscript'))
    xml = read(os.path.join(TOP, 'docs', 'manpages', 'vfs_%s.8.xml' % name))
    xml = xml.replace('<?xml version="1.0" encoding="utf-8"?>\n',
                      '<?xml version="1.0" encoding="UTF-8"?>\n' +
                      SAMBA_DOCTYPE, 1)
    write(os.path.join(repo, 'docs-xml/manpages/vfs_%s.8.xml' % name), xml)
    path = os.path.join(repo, 'docs-xml/wscript_build')
    write(path, insert_after(read(path), "'vfs_%s'," % (after or 'io_uring'),
                             "                       'vfs_%s',\n" % name,
                             'docs-xml/wscript_build'))
    commit(repo, 's3:modules: add vfs_%s' % name,
           textwrap.fill('vfs_%s: %s' % (name, what), 72) +
           '\n\nBuilt as a default shared module where liburing is '
           'found, like\nvfs_io_uring; documented in vfs_%s(8).' % name)


def selftest_patch(repo):
    stack = 'async_open async_brl async_dosattr async_xattr async_uring'
    path = os.path.join(repo, 'selftest/target/Samba3.pm')
    text = read(path)
    text = insert_after(text, 'push(@dirs, $lower_case_share_dir_30000);',
                        '\n\tmy $async_vfs_sharedir="$share_dir/async_vfs";'
                        '\n\tpush(@dirs, $async_vfs_sharedir);\n',
                        'Samba3.pm')
    share = ('\n[async_vfs]\n'
             '\tpath = $async_vfs_sharedir\n'
             '\tread only = no\n'
             '\tsmbd async dosmode = yes\n'
             '\tvfs objects = %s\n' % stack)
    homes = ('\n[homes]\n\tcomment = Home directories\n'
             '\tbrowseable = No\n\tread only = No\n";\n\n'
             '\tif (defined($more_conf))')
    if homes not in text:
        # 4.22: setup_fileserver's last share is another one; the end of
        # its smb.conf text is the first such end after its share dirs
        start = text.find('push(@dirs, $async_vfs_sharedir);')
        end = text.find('\n";\n\n\tif (defined($more_conf))', start)
        if start == -1 or end == -1:
            die('Samba3.pm: no end of setup_fileserver\'s shares')
        text = text[:end] + share + text[end:]
    else:
        text = insert_before(text, homes, share, 'Samba3.pm')
    write(path, text)
    path = os.path.join(repo, 'source3/selftest/tests.py')
    block = ('\nif is_module_enabled("vfs_async_uring"):\n'
             '    # The vfs_async_* modules stacked on one share\n'
             '    for t in [%s]:\n'
             '        plansmbtorture4testsuite(t, "fileserver",\n'
             '                                 \'//$SERVER_IP/async_vfs '
             '-U$USERNAME%%$PASSWORD\',\n'
             '                                 description="async_vfs")\n' %
             ',\n              '.join('"%s"' % t for t in TORTURE))
    text = insert_before(read(path),
                         "\nplansmbtorture4testsuite('rpc.epmapper'",
                         block, 'tests.py')
    write(path, text)
    commit(repo, 'selftest: run smbtorture against the vfs_async_* modules',
           'A share [async_vfs] in the fileserver environment stacks all '
           'five modules\nwith "smbd async dosmode = yes", and '
           'source3/selftest/tests.py runs the\nsmb2 read, rw, lock, '
           'compound_async and oplock/brl suites against it.')


def runtime_tree(series):
    """The host path of the prepared tree in series' chroot, or None."""
    root = subprocess.run(
        ['bash', os.path.join(TOP, 'buildtools', 'prepare-chroot.sh'),
         '--samba', series, '--print-root'], stdout=subprocess.PIPE,
        universal_newlines=True, check=True).stdout.strip()
    try:
        inside = read(os.path.join(root, '.asvfs-samba-tree')).strip()
    except OSError:
        return None
    tree = root + inside
    return tree if os.path.isfile(os.path.join(tree, 'VERSION')) else None


def series_of(tree):
    kv = dict(re.findall(r'^SAMBA_VERSION_(MAJOR|MINOR)=(\d+)$',
                         read(os.path.join(tree, 'VERSION')), re.M))
    return '%s.%s' % (kv['MAJOR'], kv['MINOR'])


def other_series(done):
    """The series with a committed in-tree series other than done."""
    top = os.path.join(TOP, 'patches')
    return sorted(d for d in os.listdir(top)
                  if d != done and
                  os.path.isdir(os.path.join(top, d, 'in-tree')))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--samba-source')
    ap.add_argument('--samba', help='a series prepared in its chroot '
                    '(make SAMBA=<series>), e.g. 4.22')
    ap.add_argument('--out')
    args = ap.parse_args()
    if args.samba:
        tree = runtime_tree(args.samba)
        if tree is None:
            die('no prepared tree for Samba %s: make SAMBA=%s' %
                (args.samba, args.samba))
    else:
        tree = args.samba_source or subprocess.run(
            ['bash', os.path.join(TOP, 'buildtools', 'prepare-samba.sh')],
            stdout=subprocess.PIPE, universal_newlines=True,
            check=True).stdout.strip().splitlines()[-1]
    write_series(tree, args.out or os.path.join(
        TOP, 'patches', series_of(tree), 'in-tree'))
    if args.samba or args.samba_source or args.out:
        return
    for series in other_series(series_of(tree)):
        other = runtime_tree(series)
        if other is None:
            print('intree-series: patches/%s/in-tree left as it is: no '
                  'prepared tree (make SAMBA=%s)' % (series, series),
                  file=sys.stderr)
            continue
        write_series(other, os.path.join(TOP, 'patches', series,
                                         'in-tree'))


def write_series(tree, out):
    with tempfile.TemporaryDirectory(prefix='asvfs-series-') as repo:
        git(repo, 'init', '-q')
        for f in EDITED:
            os.makedirs(os.path.dirname(os.path.join(repo, f)),
                        exist_ok=True)
            shutil.copy(os.path.join(tree, f), os.path.join(repo, f))
        commit(repo, 'baseline', 'The Samba files the series edits.')
        base = git(repo, 'rev-parse', 'HEAD').strip()
        engine_patch(repo)
        after = None
        for name, what in MODULES:
            module_patch(repo, name, what, after)
            after = name
        selftest_patch(repo)
        if os.path.isdir(out):
            for f in os.listdir(out):
                if f.endswith('.patch'):
                    os.unlink(os.path.join(out, f))
        os.makedirs(out, exist_ok=True)
        names = git(repo, 'format-patch', '--zero-commit',
                    '--no-signature', '-o', out, base + '..HEAD')
    for n in names.split():
        print(n)


if __name__ == '__main__':
    main()
