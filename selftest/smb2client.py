#!/usr/bin/python3
"""A small SMB2/3 client on impacket (Debian's python3-impacket), for what
smbclient cannot do: reads and writes at chosen offsets, SMB2 byte-range
locks, many concurrent requests."""
from impacket import smb3structs
from impacket.smbconnection import SMBConnection, SessionError

FILE_READ_DATA = 0x1
FILE_WRITE_DATA = 0x2
GENERIC_READ_WRITE = 0xC0000000
FILE_OPEN = 1
FILE_OVERWRITE_IF = 5


class Client:
    def __init__(self, smbd, share, user=None, password=None):
        # impacket signs SMB 3.1.1 in a way smbd refuses; 3.0 works
        self.conn = SMBConnection('127.0.0.1', '127.0.0.1',
                                  sess_port=smbd.port,
                                  preferredDialect=smb3structs.SMB2_DIALECT_30)
        creds = smbd.creds(user).split('%', 1)
        self.conn.login(creds[0], password or creds[1])
        self.tid = self.conn.connectTree(share)

    def create(self, name):
        return self.conn.createFile(self.tid, name,
                                    desiredAccess=GENERIC_READ_WRITE,
                                    creationDisposition=FILE_OVERWRITE_IF)

    def open(self, name, write=False):
        access = FILE_READ_DATA | (FILE_WRITE_DATA if write else 0)
        return self.conn.openFile(self.tid, name, desiredAccess=access,
                                  creationDisposition=FILE_OPEN)

    def read(self, fid, offset, length):
        return self.conn.readFile(self.tid, fid, offset, length)

    def write(self, fid, data, offset):
        return self.conn.writeFile(self.tid, fid, data, offset)

    def close(self, fid):
        self.conn.closeFile(self.tid, fid)

    def logoff(self):
        try:
            self.conn.logoff()
        except Exception:
            pass


def status_name(err):
    """'STATUS_END_OF_FILE' from an impacket SessionError."""
    try:
        return err.getErrorString()[0]
    except Exception:
        return str(err)


__all__ = ['Client', 'SessionError', 'status_name']
