"""Commit in a loop through a real ZEO ClientStorage, logging every
acknowledged commit; or check such logs against a server.

    python zeo_commit_loop.py init HOST:PORT NAME...
    python zeo_commit_loop.py commit HOST:PORT NAME LOG
    python zeo_commit_loop.py verify HOST:PORT LOG...

`init` creates the database and a PersistentMapping root[NAME] per client
(before the clients start, so they do not race to create the root).
`commit` keeps committing root[NAME] (a mapping of its own, so clients do
not conflict) with an increasing counter, and appends the
counter to LOG (flushed) each time `transaction.commit()` has returned: a
line in LOG is a commit the server acknowledged. It runs until killed or
disconnected.

`verify` connects and checks, for each LOG (named after its client), that
the committed counter is at least the last acknowledged one; prints "ok"
and exits 0, or prints what was lost and exits 1.

The Rust crash test kills the server with SIGKILL during `commit` loops,
restarts it on the same Data.fs and runs `verify`.
"""
import os
import sys

import transaction
import ZEO
from persistent.mapping import PersistentMapping


def address(text):
    host, port = text.rsplit(':', 1)
    return (host, int(port))


def init(addr, names):
    """Creates the root and each client's mapping, before the loops start."""
    db = ZEO.DB(address(addr), wait_timeout=10)
    root = db.open().root()
    for name in names:
        root[name] = PersistentMapping(counter=0)
    transaction.commit()
    db.close()


def commit_loop(addr, name, log_path):
    db = ZEO.DB(address(addr), wait_timeout=10)
    conn = db.open()
    root = conn.root()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    counter = root[name]['counter']
    while True:
        counter += 1
        root[name]['counter'] = counter
        transaction.get().note(f'{name} {counter}')
        transaction.commit()
        os.write(fd, f'{counter}\n'.encode())


def verify(addr, logs):
    db = ZEO.DB(address(addr), wait_timeout=10)
    root = db.open().root()
    lost = []
    for log in logs:
        name = os.path.basename(log).rsplit('.', 1)[0]
        with open(log) as f:
            acked = [int(line) for line in f if line.strip()]
        if not acked:
            continue
        have = root[name]['counter'] if name in root else 0
        if have < acked[-1]:
            lost.append(f'{name}: acknowledged {acked[-1]}, found {have}')
    db.close()
    if lost:
        print('LOST: ' + '; '.join(lost))
        return 1
    print('ok')
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == 'init':
        init(argv[2], argv[3:])
        return 0
    if len(argv) >= 5 and argv[1] == 'commit':
        commit_loop(argv[2], argv[3], argv[4])
        return 0
    if len(argv) >= 4 and argv[1] == 'verify':
        return verify(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
