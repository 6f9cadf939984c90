"""Commit through a real ZEO ClientStorage in lock step with another process.

    python zeo_lockstep.py HOST:PORT COUNT

Commits root['n'] = 1 .. COUNT, one transaction each.  After each commit has
returned (the server acknowledged it) it prints the transaction's tid in hex
and waits for a line on stdin before the next: the other process checks, in
between, that it sees the commit.  Prints "done" at the end.
"""
import sys

import transaction
import ZEO


def main(addr, count):
    host, port = addr.rsplit(':', 1)
    db = ZEO.DB((host, int(port)), wait_timeout=10)
    conn = db.open()
    root = conn.root()
    for n in range(1, count + 1):
        root['n'] = n
        transaction.commit()
        print(db.lastTransaction().hex(), flush=True)
        if not sys.stdin.readline():
            break
    print('done', flush=True)
    db.close()


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]))
