#!/usr/bin/python3
"""smbprobe: precise SMB3 calls for dsh's end-to-end tests, through Debian's python3-impacket.

smbclient covers listing and copying; what it cannot do (byte-range locks, share modes,
holding a handle open across a revocation, reading one block on demand) this does. It reads
one command per line on stdin and answers one line each: "ok ..." or "err STATUS_NAME".

  conn C USER PASSWORD       a new connection (SMB 3.0, encrypted as the server asks)
  tree C SHARE               tree connect on C
  open C F PATH ACCESS SHARING [create]
                             ACCESS from r w d (read, write, delete); SHARING from r w d
                             or -; "create" opens or creates
  read F OFF LEN             answers ok and the bytes read, as text (line breaks as \\n)
  write F OFF TEXT           answers ok and the count written
  lock F OFF LEN x|s         exclusive or shared, failing at once on a conflict
  unlock F OFF LEN
  close F
  quit
"""
import sys

from impacket import smb3, smb3structs as s3
from impacket.smbconnection import SMBConnection, SessionError

ACCESS = {'r': s3.FILE_READ_DATA | s3.FILE_READ_ATTRIBUTES,
          'w': s3.FILE_WRITE_DATA | s3.FILE_APPEND_DATA | s3.FILE_WRITE_ATTRIBUTES,
          'd': s3.DELETE}
SHARING = {'r': s3.FILE_SHARE_READ, 'w': s3.FILE_SHARE_WRITE, 'd': s3.FILE_SHARE_DELETE, '-': 0}


COMMANDS = {'conn', 'tree', 'open', 'read', 'write', 'lock', 'unlock', 'close'}


def status(e):
    """The NT status name of an impacket error, as smbclient prints it."""
    code = e.get_error_code() if hasattr(e, 'get_error_code') else e.getErrorCode()
    from impacket.nt_errors import ERROR_MESSAGES
    return ERROR_MESSAGES.get(code, ('0x%08x' % code,))[0]


class Probe:
    def __init__(self, host, port):
        self.host, self.port = host, int(port)
        self.conns, self.trees, self.files = {}, {}, {}

    def conn(self, c, user, password):
        # impacket speaks SMB 3.0 at most; dsh's smb.conf allows 3.0 and later.
        k = SMBConnection(self.host, self.host, sess_port=self.port, preferredDialect=s3.SMB2_DIALECT_30)
        k.login(user, password)
        self.conns[c] = k
        return 'ok'

    def tree(self, c, share):
        self.trees[c] = self.conns[c].connectTree(share)
        return 'ok'

    def open(self, c, f, path, access, sharing, *mode):
        desired = 0
        for ch in access:
            desired |= ACCESS[ch]
        share = 0
        for ch in sharing:
            share |= SHARING[ch]
        disposition = s3.FILE_OPEN_IF if mode == ('create',) else s3.FILE_OPEN
        fid = self.conns[c].openFile(self.trees[c], path.replace('/', '\\'), desiredAccess=desired,
                                     shareMode=share, creationDisposition=disposition,
                                     creationOption=s3.FILE_NON_DIRECTORY_FILE)
        self.files[f] = (c, fid)
        return 'ok'

    def read(self, f, off, n):
        c, fid = self.files[f]
        data = self.conns[c].readFile(self.trees[c], fid, int(off), int(n))
        # One answer is one line: line breaks in the data are written as \\n.
        return 'ok ' + data.decode('utf-8', 'replace').replace('\n', '\\n')

    def write(self, f, off, text):
        c, fid = self.files[f]
        n = self.conns[c].writeFile(self.trees[c], fid, text.encode(), int(off))
        return 'ok %d' % n

    def _lock(self, f, off, n, flags):
        # impacket's own lock() joins the elements as str, which Python 3 refuses: the
        # request is built here from its structures.
        c, fid = self.files[f]
        srv = self.conns[c].getSMBServer()
        el = s3.SMB2_LOCK_ELEMENT()
        el['Offset'], el['Length'], el['Flags'] = int(off), int(n), flags
        req = s3.SMB2Lock()
        req['FileID'], req['LockCount'], req['LockSequence'], req['Locks'] = fid, 1, 0, el.getData()
        pkt = srv.SMB_PACKET()
        pkt['Command'], pkt['TreeID'], pkt['Data'] = s3.SMB2_LOCK, self.trees[c], req
        srv.recvSMB(srv.sendSMB(pkt)).isValidAnswer(0)
        return 'ok'

    def lock(self, f, off, n, kind):
        flags = s3.SMB2_LOCKFLAG_EXCLUSIVE_LOCK if kind == 'x' else s3.SMB2_LOCKFLAG_SHARED_LOCK
        return self._lock(f, off, n, flags | s3.SMB2_LOCKFLAG_FAIL_IMMEDIATELY)

    def unlock(self, f, off, n):
        return self._lock(f, off, n, s3.SMB2_LOCKFLAG_UNLOCK)

    def close(self, f):
        c, fid = self.files.pop(f)
        self.conns[c].closeFile(self.trees[c], fid)
        return 'ok'


def main():
    p = Probe(sys.argv[1], sys.argv[2])
    for line in sys.stdin:
        words = line.rstrip('\n').split(' ')
        if words == ['quit']:
            break
        try:
            if words[0] == 'write':
                # The text may hold spaces: it is the rest of the line.
                words = words[:3] + [' '.join(words[3:])]
            if words[0] not in COMMANDS:
                raise ValueError('unknown command ' + words[0])
            out = getattr(p, words[0])(*words[1:])
        except (SessionError, smb3.SessionError) as e:
            out = 'err ' + status(e)
        except Exception as e:  # a broken connection or a bad command: say so, go on
            out = 'err %s %s' % (type(e).__name__, str(e).replace('\n', ' '))
        print(out, flush=True)


if __name__ == '__main__':
    main()
