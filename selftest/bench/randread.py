#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""One benchmark client: N random 4 KiB reads of one file over SMB3.

Usage: randread.py PORT USER PASSWORD SHARE FILE COUNT SEED
Prints the seconds the reads took (connection set-up excluded).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from impacket import smb3structs  # noqa: E402
from impacket.smbconnection import SMBConnection  # noqa: E402


def main():
    port, user, password, share, name, count, seed = sys.argv[1:8]
    conn = SMBConnection('127.0.0.1', '127.0.0.1', sess_port=int(port),
                         preferredDialect=smb3structs.SMB2_DIALECT_30)
    conn.login(user, password)
    tid = conn.connectTree(share)
    fid = conn.openFile(tid, name, desiredAccess=0x1, creationDisposition=1)
    size = conn.queryInfo(tid, fid)['EndOfFile']
    rng = random.Random(int(seed))
    blocks = max(1, size // 4096)
    start = time.monotonic()
    for _ in range(int(count)):
        conn.readFile(tid, fid, rng.randrange(blocks) * 4096, 4096)
    elapsed = time.monotonic() - start
    conn.closeFile(tid, fid)
    conn.logoff()
    print('%.6f' % elapsed)


if __name__ == '__main__':
    main()
