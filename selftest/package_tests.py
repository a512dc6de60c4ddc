#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the Debian package, as a distribution ships it: make deb's
package is lintian clean and depends on exactly the Samba it was built
for; installed into a throwaway Debian root that has that Samba
(buildtools/prepare-install-root.sh, cached), that root's own smbd loads
the modules by name from its modules dir with an ordinary smb.conf
(debian/tests/smoke), and dpkg --purge leaves nothing behind
(selftest/package/run_in_root.sh).
"""
import os
import re
import subprocess
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(TOP, 'bin', 'deb')


def sh(cmd, timeout=1800):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=timeout)
    return p.returncode, p.stdout


def installed_samba():
    return subprocess.run(['dpkg-query', '-W', '-f=${Version}', 'samba'],
                          stdout=subprocess.PIPE, universal_newlines=True,
                          check=True).stdout


def build(res):
    """The package, built as make deb builds it (lintian included)."""
    start = time.time()
    rc, out = sh(['bash', os.path.join(TOP, 'buildtools', 'build-deb.sh'),
                  OUT])
    secs = time.time() - start
    deb = out.strip().splitlines()[-1] if out.strip() else ''
    if rc != 0 or not deb.endswith('.deb'):
        res.add('fail', 'package.builds_lintian_clean', out[-600:])
        return None
    res.add('pass', 'package.builds_lintian_clean')
    print('package: built and checked in %.0f s' % secs, flush=True)
    return deb


def depends_on_the_exact_samba(deb):
    depends = subprocess.run(['dpkg-deb', '-f', deb, 'Depends'],
                             stdout=subprocess.PIPE, universal_newlines=True,
                             check=True).stdout
    v = installed_samba()
    for pkg in ('samba', 'samba-libs'):
        assert '%s (= %s)' % (pkg, v) in depends, \
            'no "%s (= %s)" in Depends: %s' % (pkg, v, depends)


def package_of(lib):
    """The packages that install a library of that file name."""
    p = subprocess.run(['dpkg', '-S', '*/' + lib], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True)
    owners = set()
    for line in p.stdout.splitlines():
        for pkg in line.split(': ')[0].split(', '):
            owners.add(pkg.split(':')[0])
    return owners


def links_only_libraries_it_depends_on(deb):
    """Every library a shipped .so needs is its own or comes from a
    package in its Depends: a module that starts to link a library of
    another Samba package must lock that one too."""
    depends = subprocess.run(['dpkg-deb', '-f', deb, 'Depends'],
                             stdout=subprocess.PIPE, universal_newlines=True,
                             check=True).stdout
    deps = set(re.findall(r'([a-z0-9][a-z0-9.+-]+)(?:\s*\(|,|$)', depends))
    files = subprocess.run(['dpkg-deb', '-c', deb], stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout
    shipped = set(os.path.basename(ln.split()[-1])
                  for ln in files.splitlines() if ln.endswith('.so'))
    tmp = os.path.join(OUT, 'unpacked')
    subprocess.run(['rm', '-rf', tmp], check=True)
    subprocess.run(['dpkg-deb', '-x', deb, tmp], check=True)
    strays = []
    owners_of = {}
    for root, _, names in os.walk(tmp):
        for name in names:
            if not name.endswith('.so'):
                continue
            dump = subprocess.run(['objdump', '-p', os.path.join(root, name)],
                                  stdout=subprocess.PIPE,
                                  universal_newlines=True, check=True).stdout
            for lib in re.findall(r'NEEDED\s+(\S+)', dump):
                if lib in shipped:
                    continue
                if lib not in owners_of:
                    owners_of[lib] = package_of(lib)
                owners = owners_of[lib]
                if not owners & deps:
                    strays.append('%s needs %s (from %s)' %
                                  (name, lib, ','.join(owners) or '?'))
    assert not strays, '; '.join(strays)


def run_checks(res, deb):
    for test in (depends_on_the_exact_samba,
                 links_only_libraries_it_depends_on):
        try:
            test(deb)
            res.add('pass', 'package.' + test.__name__)
        except (AssertionError, subprocess.CalledProcessError) as e:
            res.add('fail', 'package.' + test.__name__, str(e)[:500])


def run_in_root(res, deb):
    start = time.time()
    rc, out = sh(['bash', os.path.join(TOP, 'buildtools',
                                       'prepare-install-root.sh')])
    root = out.strip().splitlines()[-1] if out.strip() else ''
    if rc != 0 or not os.path.isdir(root):
        res.add('fail', 'package.root', out[-600:])
        return
    print('package: root with samba %s ready in %.0f s' %
          (installed_samba(), time.time() - start), flush=True)
    src = os.path.dirname(deb)
    srcdir = [os.path.join(src, d) for d in os.listdir(src)
              if os.path.isdir(os.path.join(src, d, 'debian'))]
    start = time.time()
    rc, out = sh(['bash', os.path.join(TOP, 'selftest', 'package',
                                       'run_in_root.sh'), root, deb,
                  srcdir[0]], timeout=600)
    print('package: installed, tested and purged in the root in %.0f s' %
          (time.time() - start), flush=True)
    seen = 0
    for line in out.splitlines():
        m = re.match(r'^(ok|FAIL|skip): (\S+)(?:\s*(.*))?$', line)
        if not m:
            continue
        seen += 1
        status = {'ok': 'pass', 'FAIL': 'fail', 'skip': 'skip'}[m.group(1)]
        detail = (m.group(3) or '').lstrip(':').strip()
        res.add(status, 'package.root.' + m.group(2).rstrip(':'),
                detail if status != 'pass' else '')
    if rc != 0 and seen == 0:
        res.add('fail', 'package.root', out[-600:])


def run_all(res):
    deb = build(res)
    if deb is None:
        return
    run_checks(res, deb)
    run_in_root(res, deb)
