#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
# waf build of samba-async-vfs: out-of-tree Samba VFS modules built against
# the configured source of the very Samba that loads them.
#
# Run through buildtools/waf (or the Makefile); it uses the waf shipped in
# the Samba source tree.
import os
import re
import subprocess

from waflib import Errors
from waflib.Configure import conf

APPNAME = 'samba-async-vfs'
VERSION = '0.1.0'
top = '.'
# Another Samba release builds into its own out dir (bin-<series>, set by
# the Makefile for SAMBA=<series>), beside the installed release's bin.
out = os.environ.get('ASVFS_OUT', 'bin')

# Where a module may include from in a prepared Samba tree.  lib/util itself
# is left out on purpose: its signal.h shadows the system header.
SAMBA_INCLUDES = [
    'bin/default/include', 'bin/default', '.', 'include',
    'bin/default/source3', 'source3', 'bin/default/source3/include',
    'source3/include', 'source3/lib', 'bin/default/lib', 'lib',
    'lib/replace', 'bin/default/lib/replace', 'librpc', 'bin/default/librpc',
    'source4', 'bin/default/source4',
]

SAMBA_DEFINES = ['HAVE_CONFIG_H=1', '_SAMBA_BUILD_=4',
                 '__STDC_WANT_LIB_EXT1__=1']

ENGINE_LIB = 'async_vfs_engine'


def options(opt):
    opt.load('compiler_c')
    opt.add_option('--with-samba-source', dest='samba_source', default=None,
                   help='a prepared Samba source tree '
                        '(buildtools/prepare-samba.sh prints one)')
    opt.add_option('--smbd', dest='smbd', default='smbd',
                   help='the smbd whose VFS ABI to build for [smbd]')
    opt.add_option('--without-werror', dest='werror', default=True,
                   action='store_false', help='do not build with -Werror')
    opt.add_option('--sanitize', dest='sanitize', default=False,
                   action='store_true',
                   help='build the modules, the engine and their unit tests '
                        'with AddressSanitizer and UBSan (make '
                        'test-sanitize configures this in bin-sanitize)')


def _read_kv(path):
    kv = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'^([A-Z_]+)=(.*)$', line.strip())
            if m:
                kv[m.group(1)] = m.group(2)
    return kv


def samba_tree_version(tree):
    kv = _read_kv(os.path.join(tree, 'VERSION'))
    ver = '%s.%s.%s' % (kv['SAMBA_VERSION_MAJOR'], kv['SAMBA_VERSION_MINOR'],
                        kv['SAMBA_VERSION_RELEASE'])
    if kv.get('SAMBA_VERSION_VENDOR_SUFFIX'):
        ver += '-' + kv['SAMBA_VERSION_VENDOR_SUFFIX']
    return ver


def vfs_interface_version(tree):
    with open(os.path.join(tree, 'source3', 'include', 'vfs.h')) as f:
        m = re.search(r'#define\s+SMB_VFS_INTERFACE_VERSION\s+(\d+)',
                      f.read())
    if not m:
        raise Errors.ConfigurationError(
            'no SMB_VFS_INTERFACE_VERSION in %s/source3/include/vfs.h' % tree)
    return int(m.group(1))


def smbd_build_paths(smbd):
    try:
        out = subprocess.run([smbd, '-b'], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
        ver = subprocess.run([smbd, '--version'], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout
    except OSError:
        raise Errors.ConfigurationError(
            "'%s' not found: install Samba (buildtools/bootstrap.sh)" % smbd)
    paths = dict(re.findall(r'^\s+([A-Z_]+):\s+(\S+)$', out, re.M))
    m = re.match(r'Version\s+(\S+)', ver)
    if not m or 'MODULESDIR' not in paths:
        raise Errors.ConfigurationError(
            "'%s -b' did not report a version and MODULESDIR" % smbd)
    return m.group(1), paths


def check_samba_tree(conf):
    tree = conf.options.samba_source
    if not tree:
        conf.fatal('no Samba source: pass --with-samba-source=DIR '
                   '(buildtools/prepare-samba.sh prepares one)')
    tree = os.path.abspath(tree)
    need = ['source3/include/vfs.h', 'VERSION',
            'bin/default/include/config.h',
            'bin/default/source3/param/param_proto.h',
            'bin/default/librpc/gen_ndr/ndr_xattr.h']
    missing = [n for n in need if not os.path.exists(os.path.join(tree, n))]
    if missing:
        conf.fatal("'%s' is not a prepared Samba tree (missing %s): run "
                   "buildtools/prepare-samba.sh" % (tree, missing[0]))
    conf.env.SAMBA_SOURCE = tree
    conf.env.SAMBA_TREE_VERSION = samba_tree_version(tree)
    conf.env.VFS_INTERFACE_VERSION = vfs_interface_version(tree)
    conf.msg('Samba source', tree)
    conf.msg('Samba source version', conf.env.SAMBA_TREE_VERSION)
    conf.msg('SMB_VFS_INTERFACE_VERSION', conf.env.VFS_INTERFACE_VERSION)


def check_installed_smbd(conf):
    smbd_ver, paths = smbd_build_paths(conf.options.smbd)
    conf.msg('installed smbd version', smbd_ver)
    if smbd_ver != conf.env.SAMBA_TREE_VERSION:
        conf.fatal('Samba version mismatch: the installed smbd is %s but '
                   'the Samba source is %s (interface %d); the VFS ABI '
                   'differs between releases. Prepare the matching source '
                   '(buildtools/prepare-samba.sh) or pass --smbd.' %
                   (smbd_ver, conf.env.SAMBA_TREE_VERSION,
                    conf.env.VFS_INTERFACE_VERSION))
    conf.env.SMBD_VERSION = smbd_ver
    conf.env.SAMBA_MODULESDIR = paths['MODULESDIR']
    conf.env.VFSDIR = os.path.join(paths['MODULESDIR'], 'vfs')
    conf.env.SAMBA_PRIVATE_LIBDIR = paths['MODULESDIR']
    conf.env.LIB_SAMBA = [':' + samba_library(conf, name)
                          for name in SAMBA_LIBRARIES]
    conf.msg('Samba modules dir', conf.env.VFSDIR)


# The libraries of smbd a module links, by their 4.17 names: Samba 4.18
# renamed its private ones from lib<name>-samba4.so.0 to
# lib<name>-private-samba.so.0.
SAMBA_LIBRARIES = ['smbd-base-samba4', 'samba-debug-samba4', 'smbconf',
                   'samba-util', 'tevent-util', 'sys-rw-samba4',
                   'smbd-shim-samba4', 'samba3-util-samba4',
                   'messages-dgm-samba4', 'samba-security-samba4']


def samba_library(conf, name):
    """The file name of one of smbd's libraries; the private ones must be
    in smbd's private library dir, under one of their two names."""
    libdir = conf.env.SAMBA_PRIVATE_LIBDIR
    if not name.endswith('-samba4'):
        return 'lib%s.so.0' % name  # public: on the linker's path
    names = ['lib%s.so.0' % name,
             'lib%s-private-samba.so.0' % name[:-len('-samba4')]]
    for n in names:
        if os.path.exists(os.path.join(libdir, n)):
            return n
    conf.fatal('%s is missing in %s: is smbd installed completely?' %
               (' or '.join(names), libdir))


def check_libs(conf):
    for pkg, ver in (('talloc', '2.0'), ('tevent', '0.9'),
                     ('liburing', '2.0')):
        conf.check_cfg(package=pkg, atleast_version=ver,
                       args=['--cflags', '--libs'],
                       uselib_store=pkg.upper().replace('LIB', ''),
                       msg='Checking for %s >= %s' % (pkg, ver),
                       errmsg='missing: install lib%s-dev '
                              '(buildtools/bootstrap.sh)' %
                              pkg.replace('lib', ''))
    conf.check_cc(header_name='attr/attributes.h', uselib_store='ATTR',
                  errmsg='missing: install libattr1-dev')
    for op in ('IORING_OP_READ', 'IORING_OP_WRITE', 'IORING_OP_FSYNC',
               'IORING_OP_OPENAT', 'IORING_OP_GETXATTR',
               'IORING_OP_ASYNC_CANCEL'):
        conf.check_cc(fragment='#include <liburing.h>\n'
                               'int main(void) { return %s; }\n' % op,
                      use='URING', define_name='HAVE_' + op,
                      msg='Checking liburing for ' + op, mandatory=False)
    conf.check_cc(header_name='cmocka.h', use='',
                  fragment='#include <stdarg.h>\n#include <stddef.h>\n'
                           '#include <stdint.h>\n#include <setjmp.h>\n'
                           '#include <cmocka.h>\n'
                           'int main(void) { return 0; }\n',
                  lib='cmocka', uselib_store='CMOCKA', mandatory=False,
                  msg='Checking for cmocka (unit tests)')
    conf.find_program('xsltproc', var='XSLTPROC', mandatory=False)
    conf.check_cfg(package='fuse3', args=['--cflags', '--libs'],
                   uselib_store='FUSE3', mandatory=False,
                   msg='Checking for fuse3 (slowfs)')
    conf.check_cfg(package='smbclient', args=['--cflags', '--libs'],
                   uselib_store='SMBCLIENT', mandatory=False,
                   msg='Checking for libsmbclient (benchmark client)')
    conf.check_cfg(package='nettle', args=['--cflags', '--libs'],
                   uselib_store='NETTLE', mandatory=False,
                   msg='Checking for nettle (benchmark load generator)')


# Loaded into smbd (which is not built with them) before anything else, so
# that the runtimes come first, as ASan requires: see selftest/harness.py.
SANITIZER_RUNTIMES = ['libasan.so', 'libubsan.so']


def check_sanitize(conf):
    """ASan and UBSan for our own code only (the modules, the engine, the
    canary and the unit tests, through use='SANITIZE'); smbd gets the
    runtimes preloaded by the harness, which finds them in the out dir's
    file 'sanitize-preload'."""
    flags = ['-fsanitize=address,undefined', '-fno-omit-frame-pointer',
             '-O1']
    conf.check_cc(fragment='int main(void) { return 0; }\n',
                  cflags=flags, linkflags=flags[:1],
                  msg='Checking for -fsanitize=address,undefined',
                  errmsg='missing: install libasan8 and libubsan1 '
                         '(gcc ships them)')
    conf.env.CFLAGS_SANITIZE = flags
    conf.env.LINKFLAGS_SANITIZE = flags[:1]
    preload = []
    for lib in SANITIZER_RUNTIMES:
        path = conf.cmd_and_log(conf.env.CC + ['-print-file-name=' + lib],
                                quiet=True).strip()
        path = os.path.realpath(path)
        if not os.path.isabs(path) or not os.path.exists(path):
            conf.fatal('%s not found (gcc -print-file-name)' % lib)
        preload.append(path)
    conf.env.SANITIZE_PRELOAD = preload
    conf.msg('Sanitizer runtimes preloaded into smbd', ' '.join(preload))


def configure(conf):
    conf.load('compiler_c')
    check_samba_tree(conf)
    check_installed_smbd(conf)
    check_libs(conf)
    if conf.options.sanitize:
        check_sanitize(conf)
    conf.env.MANDIR = conf.env.MANDIR or '/usr/share/man'
    conf.env.append_value('CFLAGS', ['-g', '-O2', '-fPIC', '-Wall',
                                     '-Wextra', '-Wno-unused-parameter',
                                     '-Wno-missing-field-initializers'])
    if conf.options.werror:
        conf.env.append_value('CFLAGS', ['-Werror'])
    tree = conf.env.SAMBA_SOURCE
    conf.env.INCLUDES_SAMBA = [os.path.join(tree, d) for d in SAMBA_INCLUDES]
    conf.env.DEFINES_SAMBA = SAMBA_DEFINES
    libdir = conf.env.SAMBA_PRIVATE_LIBDIR
    # Link against smbd's private base library and find it (and our engine,
    # which lives next to the modules) at run time, as Debian's modules do.
    conf.env.LIBPATH_SAMBA = [libdir]
    conf.env.RPATH_SAMBA = ['$ORIGIN', libdir]
    conf.env.LINKFLAGS_SAMBA = ['-Wl,--enable-new-dtags', '-Wl,-z,defs',
                                '-Wl,--as-needed']
    os.makedirs(conf.bldnode.abspath(), exist_ok=True)
    with open(os.path.join(conf.bldnode.abspath(), 'samba-source'), 'w') as f:
        f.write(tree + '\n')
    preload = os.path.join(conf.bldnode.abspath(), 'sanitize-preload')
    if conf.env.SANITIZE_PRELOAD:
        with open(preload, 'w') as f:
            f.write(' '.join(conf.env.SANITIZE_PRELOAD) + '\n')
    elif os.path.exists(preload):
        os.unlink(preload)
    conf.write_config_header('config-asvfs.h')


def build(bld):
    bld.recurse('modules')
    bld.recurse('selftest')
    bld.recurse('docs')


@conf
def vfs_module(bld, name, source, install):
    """Build a VFS module as <name>.so, loadable by name from the vfs dir."""
    env = bld.env.derive()
    env.cshlib_PATTERN = '%s.so'
    bld.shlib(target=name, source=source, env=env,
              use='async_vfs_engine SAMBA TALLOC TEVENT URING SANITIZE',
              install_path=bld.env.VFSDIR if install else None)
