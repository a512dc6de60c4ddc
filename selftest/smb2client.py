#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small SMB2/3 client on impacket (Debian's python3-impacket), for what
smbclient cannot do: reads and writes at chosen offsets, SMB2 byte-range
locks, many concurrent requests."""
from impacket import smb3structs
from impacket import smb, smb3
from impacket.nt_errors import STATUS_NO_MORE_FILES
from impacket.smbconnection import SMBConnection, SessionError

FILE_READ_DATA = 0x1
FILE_WRITE_DATA = 0x2
GENERIC_READ_WRITE = 0xC0000000
FILE_OPEN = 1
FILE_OVERWRITE_IF = 5


class Client:
    def __init__(self, smbd, share, user=None, password=None):
        # impacket signs SMB 3.1.1 in a way smbd refuses; 3.0 works
        host = getattr(smbd, 'address', '127.0.0.1')
        self.conn = SMBConnection(host, host, sess_port=smbd.port,
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

# --- raw requests on one connection (pipelining, several sessions) ---------

import copy as _copy
import struct as _struct
import time as _time

from impacket import smb3structs as _s3s
from impacket.smb3structs import SMB2Packet as _SMB2Packet

STATUS_PENDING = 0x00000103
FILE_SUPERSEDE = 0
FILE_CREATE = 2
FILE_OPEN_IF = 3
FILE_OVERWRITE = 4
NON_DIRECTORY_FILE = 0x40
SHARE_ALL = 7


class RawConn:
    """One TCP connection on which requests are sent without waiting and
    responses collected by message id; several sessions may share it
    (login() again switches to a new session on the same connection)."""

    def __init__(self, smbd, share=None):
        host = getattr(smbd, 'address', '127.0.0.1')
        self.conn = SMBConnection(host, host, sess_port=smbd.port,
                                  preferredDialect=_s3s.SMB2_DIALECT_30)
        self.s3 = self.conn.getSMBServer()
        self.smbd = smbd
        self._fresh = _copy.deepcopy(self.s3._Session)
        self.sessions = {}	# user -> (session dict, tid)
        self.responses = {}
        self.share = share

    def login(self, user, share=None):
        if self.sessions:
            self.s3._Session = _copy.deepcopy(self._fresh)
        creds = self.smbd.creds(user).split('%', 1)
        self.conn.login(creds[0], creds[1])
        tid = self.conn.connectTree(share or self.share)
        self.sessions[user] = (self.s3._Session, tid)
        return tid

    def use(self, user):
        self.s3._Session = self.sessions[user][0]
        return self.sessions[user][1]

    def _send(self, user, command, body):
        tid = self.use(user)
        packet = self.s3.SMB_PACKET()
        packet['Command'] = command
        packet['TreeID'] = tid
        packet['Data'] = body
        return self.s3.sendSMB(packet)

    def send_create(self, user, name, disposition, access=GENERIC_READ_WRITE,
                    options=NON_DIRECTORY_FILE, share=SHARE_ALL, oplock=0):
        c = _s3s.SMB2Create()
        c['SecurityFlags'] = 0
        c['RequestedOplockLevel'] = oplock
        c['ImpersonationLevel'] = _s3s.SMB2_IL_IMPERSONATION
        c['DesiredAccess'] = access
        c['FileAttributes'] = 0
        c['ShareAccess'] = share
        c['CreateDisposition'] = disposition
        c['CreateOptions'] = options
        c['NameLength'] = len(name) * 2
        c['Buffer'] = name.encode('utf-16le') if name else b'\x00'
        c['CreateContextsOffset'] = 0
        c['CreateContextsLength'] = 0
        return self._send(user, _s3s.SMB2_CREATE, c)

    def send_echo(self, user):
        return self._send(user, _s3s.SMB2_ECHO, _struct.pack('<HH', 4, 0))

    def send_close(self, user, fid):
        return self._send(user, _s3s.SMB2_CLOSE,
                          _struct.pack('<HHL', 24, 0, 0) + fid)

    def send_logoff(self, user):
        return self._send(user, _s3s.SMB2_LOGOFF, _struct.pack('<HH', 4, 0))

    def send_tree_disconnect(self, user):
        return self._send(user, _s3s.SMB2_TREE_DISCONNECT,
                          _struct.pack('<HH', 4, 0))

    # Each request below carries one credit (impacket's sendSMB counts one
    # message id per request): 64 KiB at most.
    def send_read(self, user, fid, offset, length):
        r = _s3s.SMB2Read()
        r['Padding'] = 0x50
        r['FileID'] = fid
        r['Length'] = length
        r['Offset'] = offset
        return self._send(user, _s3s.SMB2_READ, r)

    def send_write(self, user, fid, offset, data):
        w = _s3s.SMB2Write()
        w['FileID'] = fid
        w['Length'] = len(data)
        w['Offset'] = offset
        w['Buffer'] = data
        return self._send(user, _s3s.SMB2_WRITE, w)

    def send_query_directory(self, user, fid, length=65536):
        """One QUERY_DIRECTORY of everything (FULL_DIRECTORY_INFO,
        restarted from the first entry)."""
        q = _s3s.SMB2QueryDirectory()
        q['FileInformationClass'] = _s3s.FILE_FULL_DIRECTORY_INFORMATION
        q['Flags'] = _s3s.SMB2_RESTART_SCANS
        q['FileID'] = fid
        q['OutputBufferLength'] = length
        q['FileNameLength'] = 2
        q['Buffer'] = '*'.encode('utf-16le')
        return self._send(user, _s3s.SMB2_QUERY_DIRECTORY, q)

    def send_cancel(self, user, mid):
        tid = self.use(user)
        packet = self.s3.SMB_PACKET()
        packet['Command'] = _s3s.SMB2_CANCEL
        packet['MessageID'] = mid
        packet['TreeID'] = tid
        packet['Data'] = _struct.pack('<HH', 4, 0)
        self.s3.sendSMB(packet)

    def wait(self, mid, timeout=60):
        """The final response to mid (interim STATUS_PENDING skipped), as
        (status, body bytes, seconds waited)."""
        start = _time.monotonic()
        while mid not in self.responses:
            data = self.s3._NetBIOSSession.recv_packet(timeout)
            pkt = _SMB2Packet(self._plain(data.get_trailer()))
            if pkt['Status'] == STATUS_PENDING and \
                    pkt['Flags'] & _s3s.SMB2_FLAGS_ASYNC_COMMAND:
                continue
            self.responses[pkt['MessageID']] = (pkt['Status'],
                                                bytes(pkt['Data']))
        status, body = self.responses.pop(mid)
        return status, body, _time.monotonic() - start

    def _plain(self, raw):
        """Decrypt an SMB3 transform (the server encrypts when the
        session asks for it) with the key of the session it names."""
        if not raw.startswith(b'\xfdSMB'):
            return raw
        from Cryptodome.Cipher import AES
        th = _s3s.SMB2_TRANSFORM_HEADER(raw)
        sess = [d for d, _ in self.sessions.values()
                if d['SessionID'] == th['SessionID']]
        key = (sess[0] if sess else self.s3._Session)['DecryptionKey']
        cipher = AES.new(key, AES.MODE_CCM, th['Nonce'][:11])
        cipher.update(th.getData()[20:])
        return cipher.decrypt(raw[len(_s3s.SMB2_TRANSFORM_HEADER()):])

    def create(self, user, name, disposition, **kw):
        """(status, create action, fid or None)."""
        status, body, _ = self.wait(self.send_create(user, name, disposition,
                                                     **kw))
        return create_result(status, body)

    def close(self, user, fid):
        return self.wait(self.send_close(user, fid))[0]

    def listing(self, user, path):
        """The whole listing of directory path in user's session, through
        impacket's own QUERY_DIRECTORY: name -> (attributes, EaSize)."""
        tid = self.use(user)
        fid = self.s3.create(tid, path, _s3s.FILE_READ_ATTRIBUTES |
                             FILE_READ_DATA, SHARE_ALL,
                             _s3s.FILE_DIRECTORY_FILE, FILE_OPEN, 0)
        try:
            return rest_of_listing(self.s3, tid, fid)
        finally:
            self.use(user)
            self.s3.close(tid, fid)

    def disconnect(self):
        try:
            self.s3._NetBIOSSession.close()
        except Exception:
            pass


# --- directory listings (impacket's SMB3 object of a session) --------------

FULL_DIRECTORY_INFO = smb3structs.FILE_FULL_DIRECTORY_INFORMATION


def query_step(conn, tid, fid):
    """One QUERY_DIRECTORY with a small buffer: name -> (attributes,
    EaSize)."""
    out = {}
    try:
        data = conn.queryDirectory(
            tid, fid, '*', maxBufferSize=2048,
            informationClass=FULL_DIRECTORY_INFO)
    except smb3.SessionError as e:
        if e.get_error_code() == STATUS_NO_MORE_FILES:
            return None
        raise
    while data:
        info = smb.SMBFindFileFullDirectoryInfo(smb.SMB.FLAGS2_UNICODE)
        info.fromString(data)
        name = info['FileName'].decode('utf-16le')
        if name not in ('.', '..'):
            out[name] = (info['ExtFileAttributes'], info['EaSize'])
        if info['NextEntryOffset'] == 0:
            break
        data = data[info['NextEntryOffset']:]
    return out


def open_dir(client, path):
    """(impacket's SMB3 object, fid) of directory path, for query_step."""
    conn = client.conn.getSMBServer()
    fid = conn.create(client.tid, path,
                      smb3structs.FILE_READ_ATTRIBUTES | FILE_READ_DATA,
                      smb3structs.FILE_SHARE_READ |
                      smb3structs.FILE_SHARE_WRITE |
                      smb3structs.FILE_SHARE_DELETE,
                      smb3structs.FILE_DIRECTORY_FILE, FILE_OPEN, 0)
    return conn, fid


def rest_of_listing(conn, tid, fid):
    """QUERY_DIRECTORY steps until no more files."""
    out = {}
    while True:
        step = query_step(conn, tid, fid)
        if step is None:
            return out
        out.update(step)


def create_result(status, body):
    if status != 0:
        return status, None, None
    action = _struct.unpack_from('<L', body, 4)[0]
    return status, action, body[64:80]
