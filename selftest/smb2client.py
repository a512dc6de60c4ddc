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


# --- SMB2 byte-range locks, one request at a time, sent and answered
# separately so that a test can cancel, close or measure in between -------

LOCK_SHARED = smb3structs.SMB2_LOCKFLAG_SHARED_LOCK
LOCK_EXCLUSIVE = smb3structs.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
LOCK_UNLOCK = smb3structs.SMB2_LOCKFLAG_UNLOCK
LOCK_FAIL_IMMEDIATELY = smb3structs.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
STATUS_NAMES = {
    0x00000000: 'STATUS_SUCCESS',
    0xC0000054: 'STATUS_FILE_LOCK_CONFLICT',
    0xC0000055: 'STATUS_LOCK_NOT_GRANTED',
    0xC000007E: 'STATUS_RANGE_NOT_LOCKED',
    0xC0000120: 'STATUS_CANCELLED',
}


def lock_send(client, fid, offset, length, flags):
    """Send one SMB2 LOCK element; returns the message id."""
    smb = client.conn.getSMBServer()
    packet = smb.SMB_PACKET()
    packet['Command'] = smb3structs.SMB2_LOCK
    packet['TreeID'] = client.tid
    element = smb3structs.SMB2_LOCK_ELEMENT()
    element['Offset'] = offset
    element['Length'] = length
    element['Flags'] = flags
    request = smb3structs.SMB2Lock()
    request['FileID'] = fid
    request['LockCount'] = 1
    request['LockSequence'] = 0
    request['Locks'] = element.getData()
    packet['Data'] = request
    return smb.sendSMB(packet)


def lock_recv(client, msgid, timeout=None):
    """The final answer to lock_send() (interim STATUS_PENDING skipped),
    as a status name."""
    smb = client.conn.getSMBServer()
    old = smb._timeout
    if timeout is not None:
        smb._timeout = timeout
    try:
        ans = smb.recvSMB(msgid)
    finally:
        smb._timeout = old
    return STATUS_NAMES.get(ans['Status'], '0x%08x' % ans['Status'])


def lock(client, fid, offset, length, flags, timeout=None):
    return lock_recv(client, lock_send(client, fid, offset, length, flags),
                     timeout)


def cancel(client, msgid):
    """SMB2 CANCEL of a request sent earlier on this connection."""
    client.conn.getSMBServer().cancel(msgid)


def close_send(client, fid):
    """SMB2 CLOSE without waiting for its answer; returns the message id.
    """
    smb = client.conn.getSMBServer()
    packet = smb.SMB_PACKET()
    packet['Command'] = smb3structs.SMB2_CLOSE
    packet['TreeID'] = client.tid
    request = smb3structs.SMB2Close()
    request['Flags'] = 0
    request['FileID'] = fid
    packet['Data'] = request
    return smb.sendSMB(packet)


def recv_status(client, msgid, timeout=None):
    """The status of the answer to any request sent earlier."""
    return lock_recv(client, msgid, timeout)


def open_shared(client, name, create=False):
    """Read/write open that lets other opens read, write and delete (the
    Client methods ask for impacket's default sharing)."""
    return client.conn.createFile(
        client.tid, name, desiredAccess=GENERIC_READ_WRITE, shareMode=7,
        creationDisposition=FILE_OVERWRITE_IF if create else FILE_OPEN)


def echo_send(client):
    """SMB2 ECHO without waiting for its answer; returns the message id
    (answered by smbd's main loop: shows whether it is blocked)."""
    smb = client.conn.getSMBServer()
    packet = smb.SMB_PACKET()
    packet['Command'] = smb3structs.SMB2_ECHO
    packet['Data'] = smb3structs.SMB2Echo()
    return smb.sendSMB(packet)
