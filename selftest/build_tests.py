#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the build itself: a wrong or missing Samba tree, a version
mismatch or a missing package give one clear error line, never a compiler
error wall; make install honours DESTDIR.

Each configure here writes to its own out dir and waf lock file, so the
project's bin/ is never touched.
"""
import os
import re
import subprocess
import tempfile

import harness

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = '/usr/bin/python3'


def samba_tree():
    p = subprocess.run(['bash', os.path.join(TOP, 'buildtools',
                                             'prepare-samba.sh')],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True, check=True)
    return p.stdout.strip().splitlines()[-1]


WAFLOCK = '.lock-waf-buildtest-%d' % os.getpid()


def waf(tmp, *args, env=None):
    e = dict(os.environ, WAFLOCK=WAFLOCK)
    e.update(env or {})
    p = subprocess.run([PY, os.path.join(TOP, 'buildtools', 'waf')] +
                       list(args) + ['--out=' + os.path.join(tmp, 'out')],
                       cwd=TOP, env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=300)
    return p.returncode, p.stdout


def assert_clear_error(rc, out, *needles):
    assert rc != 0, 'configure succeeded:\n' + out[-500:]
    for n in needles:
        assert n in out, 'no "%s" in: %s' % (n, out[-600:])
    # never a compiler error wall or a Python backtrace
    assert not re.search(r'\.[ch]:\d+:\d+: error', out), out[-600:]
    assert 'Traceback' not in out, out[-600:]


def configure_refuses_a_samba_version_mismatch(tmp):
    fake = os.path.join(tmp, 'smbd')
    with open(fake, 'w') as f:
        f.write('#!/bin/sh\ncase "$1" in\n'
                '--version) echo "Version 4.22.3-Debian" ;;\n'
                '-b) printf "Paths:\\n   MODULESDIR: /usr/lib/x86_64-'
                'linux-gnu/samba\\n" ;;\nesac\n')
    os.chmod(fake, 0o755)
    rc, out = waf(tmp, 'configure', '--with-samba-source=' + samba_tree(),
                  '--smbd=' + fake)
    assert_clear_error(rc, out, 'Samba version mismatch',
                       'installed smbd is 4.22.3-Debian',
                       'Samba source is 4.17', 'interface 47')


def configure_refuses_an_unprepared_tree(tmp):
    tree = os.path.join(tmp, 'tree')
    os.makedirs(os.path.join(tree, 'third_party'))
    os.symlink(os.path.join(samba_tree(), 'third_party', 'waf'),
               os.path.join(tree, 'third_party', 'waf'))
    rc, out = waf(tmp, 'configure', '--with-samba-source=' + tree)
    assert_clear_error(rc, out, 'is not a prepared Samba tree',
                       'prepare-samba.sh')


def configure_refuses_a_missing_tree(tmp):
    rc, out = waf(tmp, 'configure',
                  '--with-samba-source=' + os.path.join(tmp, 'nowhere'))
    assert_clear_error(rc, out, 'is not a Samba source tree')


def configure_names_a_missing_package(tmp):
    rc, out = waf(tmp, 'configure', '--with-samba-source=' + samba_tree(),
                  env={'PKG_CONFIG_LIBDIR': os.path.join(tmp, 'empty'),
                       'PKG_CONFIG_PATH': ''})
    assert_clear_error(rc, out, 'missing: install libtalloc-dev')


def install_honours_destdir(tmp):
    rc, out = waf(tmp, 'configure', '--with-samba-source=' + samba_tree())
    assert rc == 0, out[-800:]
    dest = os.path.join(tmp, 'dest')
    rc, out = waf(tmp, 'install', '--destdir=' + dest)
    assert rc == 0, out[-800:]
    found = []
    for root, _, files in os.walk(dest):
        found += [os.path.relpath(os.path.join(root, f), dest)
                  for f in files]
    vfs = 'usr/lib/x86_64-linux-gnu/samba/vfs/'
    assert vfs + 'libasync_vfs_engine.so' in found, found
    assert vfs + 'async_uring.so' in found, found
    assert vfs + 'async_xattr.so' in found, found
    assert vfs + 'async_dosattr.so' in found, found
    assert vfs + 'async_brl.so' in found, found
    assert not [f for f in found if 'canary' in f], \
        'the test-only canary was installed: %s' % found
    assert not [f for f in found if '/unit/' in f or 'slowfs' in f], found
    if os.path.exists('/usr/bin/xsltproc'):
        assert 'usr/share/man/man7/samba-async-vfs.7' in found, found
        assert 'usr/share/man/man8/vfs_async_uring.8' in found, found
        assert 'usr/share/man/man8/vfs_async_xattr.8' in found, found
        assert 'usr/share/man/man8/vfs_async_dosattr.8' in found, found
        assert 'usr/share/man/man8/vfs_async_brl.8' in found, found


def samba_patches_apply_to_the_prepared_tree(tmp):
    """Each series in patches/<version>/ applies, in order, to a copy of
    the prepared Samba tree of that version (the files it touches)."""
    tree = samba_tree()
    version = re.search(r'samba-\d+_(\d+\.\d+)\.', tree)
    assert version, 'no Samba version in ' + tree
    series = os.path.join(TOP, 'patches', version.group(1))
    patches = sorted(f for f in os.listdir(series) if f.endswith('.patch'))
    assert patches, 'no patches in ' + series
    copy = os.path.join(tmp, 'samba')
    for name in patches:
        with open(os.path.join(series, name)) as f:
            text = f.read()
        for path in re.findall(r'^\+\+\+ b/(\S+)$', text, re.M):
            dst = os.path.join(copy, path)
            if not os.path.exists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                subprocess.run(['cp', os.path.join(tree, path), dst],
                               check=True)
    for name in patches:
        p = subprocess.run(['patch', '-p1', '--forward', '--batch', '-i',
                            os.path.join(series, name)], cwd=copy,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        assert p.returncode == 0, '%s does not apply: %s' % (
            name, p.stdout[-400:])
        assert 'offset' not in p.stdout and 'fuzz' not in p.stdout, \
            '%s applies only loosely: %s' % (name, p.stdout[-400:])


def patched_smbd_builds_and_runs(tmp):
    """smbd builds from the prepared tree with patches/ applied (cached),
    and runs: the open tests then run it (harness.patched_smbd())."""
    out = os.path.join(TOP, 'bin', 'patched-smbd')
    p = subprocess.run(['bash', os.path.join(TOP, 'buildtools',
                                             'build-patched-smbd.sh'), out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-600:]
    v = subprocess.run([os.path.join(out, 'smbd'), '-V'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    installed = subprocess.run(['smbd', '-V'], stdout=subprocess.PIPE,
                               universal_newlines=True).stdout
    assert v.returncode == 0 and v.stdout == installed, \
        'patched smbd says %r, installed %r' % (v.stdout, installed)


def series_is_current(tmp, tree, version):
    committed = os.path.join(TOP, 'patches', version, 'in-tree')
    fresh = os.path.join(tmp, 'in-tree-' + version)
    p = subprocess.run([PY, os.path.join(TOP, 'buildtools',
                                         'intree-series.py'),
                        '--samba-source', tree, '--out', fresh],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=300)
    assert p.returncode == 0, p.stdout[-600:]
    want = sorted(os.listdir(fresh))
    have = sorted(f for f in os.listdir(committed) if f.endswith('.patch'))
    stale = [f for f in want if f not in have or
             open(os.path.join(fresh, f)).read() !=
             open(os.path.join(committed, f)).read()]
    stale += [f for f in have if f not in want]
    assert not stale, ('the %s in-tree series is stale (%s): run '
                       'buildtools/intree-series.py and commit' %
                       (version, ', '.join(stale)))


def intree_series_is_current(tmp):
    """patches/<version>/in-tree/ is what buildtools/intree-series.py
    writes from today's modules/ and docs/manpages/: a module change
    without the series regenerated would send Samba stale code.  The
    installed release's series always; another release's (4.22) where
    its tree is prepared (make SAMBA=<series>)."""
    tree = samba_tree()
    version = re.search(r'samba-\d+_(\d+\.\d+)\.', tree).group(1)
    series_is_current(tmp, tree, version)
    for other in sorted(os.listdir(os.path.join(TOP, 'patches'))):
        if other == version or not os.path.isdir(
                os.path.join(TOP, 'patches', other, 'in-tree')):
            continue
        root = subprocess.run(
            ['bash', os.path.join(TOP, 'buildtools', 'prepare-chroot.sh'),
             '--samba', other, '--print-root'], stdout=subprocess.PIPE,
            universal_newlines=True, check=True).stdout.strip()
        try:
            with open(os.path.join(root, '.asvfs-samba-tree')) as f:
                other_tree = root + f.read().strip()
        except OSError:
            continue	# not prepared here: nothing to compare with
        series_is_current(tmp, other_tree, other)


def every_source_file_carries_a_licence_line(tmp):
    """Each file we ship or run carries its licence where a packager and
    Samba look for it: an SPDX line in its first lines (Samba's modules are
    GPLv3+).  Data files (lists, patches, docs, Debian control files) are
    exempt."""
    files = subprocess.run(['git', 'ls-files'], cwd=TOP,
                           stdout=subprocess.PIPE, universal_newlines=True,
                           check=True).stdout.split()
    source = re.compile(r'(\.(c|h|py|sh)$|(^|/)(wscript[^/]*|Makefile|'
                        r'configure|waf|rules|run|smoke)$)')
    missing = []
    for f in files:
        if not source.search(f) or f.startswith('patches/'):
            continue
        with open(os.path.join(TOP, f), errors='replace') as fh:
            head = ''.join(fh.readline() for _ in range(5))
        if 'SPDX-License-Identifier: GPL-3.0-or-later' not in head:
            missing.append(f)
    assert not missing, 'no SPDX licence line: ' + ', '.join(missing)


def intree_series_applies_and_builds(tmp):
    """The in-tree series applies to the prepared tree without offset or
    fuzz, and Samba's own build (configured again, so that the modules
    are among its default shared modules) builds the engine and the five
    modules (buildtools/build-intree.sh; cached by the series).  Under
    make test SAMBA=<series> it runs in that release's chroot, against
    the tree prepared there."""
    cmd = ['bash', os.path.join(TOP, 'buildtools', 'build-intree.sh')]
    if harness.SAMBA:
        cmd = ['bash', os.path.join(TOP, 'buildtools', 'in-runtime.sh'),
               '--samba', harness.SAMBA, '--', 'env',
               'SAMBA_ASYNC_VFS_CACHE=' + RELEASE_CACHE] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-600:]


TESTS = [
    configure_refuses_a_samba_version_mismatch,
    configure_refuses_an_unprepared_tree,
    configure_refuses_a_missing_tree,
    configure_names_a_missing_package,
    install_honours_destdir,
    samba_patches_apply_to_the_prepared_tree,
    patched_smbd_builds_and_runs,
    intree_series_is_current,
    intree_series_applies_and_builds,
    every_source_file_carries_a_licence_line,
]


def run_one(test):
    """None when the test passed, else the reason."""
    with tempfile.TemporaryDirectory(prefix='asvfs-build-') as tmp:
        try:
            test(tmp)
        except AssertionError as e:
            return str(e).replace('\n', ' | ')[:500]
        finally:
            if os.path.exists(os.path.join(TOP, WAFLOCK)):
                os.unlink(os.path.join(TOP, WAFLOCK))
    return None


# make test SAMBA=<series> (harness.SAMBA): where prepare-chroot.sh
# caches the release's tree inside its chroot.  Only the in-tree build
# runs there; the other build tests exercise the installed Samba's build.
RELEASE_CACHE = '/var/cache/samba-async-vfs'
RELEASE_TESTS = [intree_series_applies_and_builds]


def run_all(res):
    if harness.SAMBA:
        res.add('skip', 'build', 'but for the in-tree series: the other '
                'build tests exercise the installed Samba\'s build; plain '
                'make test runs them')
    for test in RELEASE_TESTS if harness.SAMBA else TESTS:
        why = run_one(test)
        res.add('fail' if why else 'pass', 'build.' + test.__name__,
                why or '')
