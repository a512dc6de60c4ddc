#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""An SMB3 POSIX client's append-only writes (Samba 4.22 and later).

Runs with the Python bindings of the Samba under test (inside its chroot,
harness.runtime_cmd): the host's 4.17 clients have no SMB3 POSIX.
Creates NAME through a POSIX handle asking FILE_APPEND_DATA without
FILE_WRITE_DATA, which smbd opens O_APPEND and whose writes carry the
offset "at the end" (VFS_PWRITE_APPEND_OFFSET, -1), writes each PART that
way, and prints what the file then holds, read back through the handle.

Usage: LD_PRELOAD=.../libsmb_port.so ASVFS_SMB_PORT=PORT \
       smb3_posix_append.py SHARE USER PASSWORD NAME PART...
Exit 0 with "data: <repr>" on stdout, else 1 with the error.
"""
import sys

from samba import credentials, param
from samba.dcerpc import security
from samba.samba3 import libsmb_samba_internal as libsmb
from samba.samba3 import param as s3param


def main(share, user, password, name, *parts):
    lp = param.LoadParm()
    # libsmb.Conn connects to port 445 (or 139) only: smb_port.so, in
    # LD_PRELOAD, sends 445 to the port in $ASVFS_SMB_PORT; no 139
    s3param.get_context().set('disable netbios', 'yes')
    lp.set('client min protocol', 'SMB3_11')
    creds = credentials.Credentials()
    creds.guess(lp)
    creds.set_username(user)
    creds.set_password(password)
    conn = libsmb.Conn('127.0.0.1', share, lp, creds, posix=True)
    if not conn.have_posix():
        print('no SMB3 POSIX negotiated')
        return 1
    mode = libsmb.unix_mode_to_wire(0o644)
    fnum, *_ = conn.create_ex(
        '\\' + name,
        DesiredAccess=(security.SEC_FILE_APPEND_DATA |
                       security.SEC_FILE_READ_DATA),
        CreateDisposition=libsmb.FILE_CREATE,
        ShareAccess=libsmb.FILE_SHARE_READ | libsmb.FILE_SHARE_WRITE,
        CreateContexts=[(libsmb.SMB2_CREATE_TAG_POSIX,
                         mode.to_bytes(4, 'little'))])
    try:
        for part in parts:
            conn.write(fnum, buffer=part.encode(),
                       offset=libsmb.VFS_PWRITE_APPEND_OFFSET)
        total = sum(len(p) for p in parts)
        print('data: %r' % conn.read(fnum, 0, total + 16))
    finally:
        conn.close(fnum)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(*sys.argv[1:]))
    except Exception as e:  # the status of a failed call, on one line
        print('error: %s' % (e,))
        sys.exit(1)
