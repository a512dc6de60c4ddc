#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""make run: serve a demo share from a private smbd with this project's
modules stacked, until Ctrl-C."""
import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


# Stacking order of our modules, left is top (README, "smb.conf recipes").
STACK_ORDER = ['async_open', 'async_brl', 'async_dosattr', 'async_xattr',
               'async_uring']


def built_modules():
    """Names of the modules this build installs (modules/vfs_<name>.c),
    in stacking order."""
    d = os.path.join(harness.BIN, 'modules')
    if not os.path.isdir(d):
        return []
    built = [f[:-3] for f in os.listdir(d) if f.endswith('.so')]
    return sorted(built, key=lambda m: (STACK_ORDER.index(m)
                                        if m in STACK_ORDER else 99, m))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--port', type=int, default=44445)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('make run: must run as root (or through sudo): it creates '
                 'test users and a private mount namespace')
    modules = built_modules()
    opts = {}
    if 'async_xattr' in modules:
        # listings then read DOS attributes through getxattrat
        opts['smbd async dosmode'] = 'yes'
    smbd = harness.Smbd(envs={'demo': (' '.join(modules), opts)},
                        port=args.port)
    smbd.start()
    print('\nsmbd (pid %d) serves [demo] on 127.0.0.1:%d' %
          (smbd.proc.pid, smbd.port))
    print('  vfs objects = %s %s' % (harness.BASE_VFS, ' '.join(modules)))
    print('  share dir:   %s' % smbd.share_path('demo'))
    print('  log:         %s' % smbd.log)
    print('\nConnect with:\n  smbclient //127.0.0.1/demo -p %d -U %s\n' %
          (smbd.port, smbd.creds()))
    print('Users: %s (password %s); %s is refused.' %
          (', '.join(harness.USERS), harness.PASSWORD, harness.OUTSIDER))
    print('Press Ctrl-C to stop.', flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        smbd.proc.wait()
        print('smbd exited with status %d' % smbd.proc.returncode)
    except KeyboardInterrupt:
        print('\nstopping smbd')
    finally:
        smbd.stop()
        for line in smbd.panics():
            print(line)
        smbd.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
