"""Python ZEO clients of a bbru-zeo that serves a PostgreSQL database, while
other writers commit to that database directly, for
crates/zeo/tests/it/pg_serve.rs. The database holds root['py'] =
PersistentMapping(n=...) (relstorage_interop.py write made it). Each command
prints one JSON object; tids and oids as integers.

    python zeo_pg_invalidation.py stale ADDR DSN
        (the server polls rarely) a ZEO client reads py; RelStorage commits
        py['n'] = 2; a second ZEO client, connected after that commit, loads
        py; then the first client commits root['zeo'] through the server.
        Prints what each client saw and the invalidations each received.
    python zeo_pg_invalidation.py watch ADDR DSN N
        a ZEO client reads py; RelStorage commits py['n'] = N; waits (10 s at
        most) for the invalidation; prints it, the seconds it took, and n as
        a new transaction of the client sees it.
    python zeo_pg_invalidation.py across ADDR_A ADDR_B N
        a client of server B reads py; a client of server A commits
        py['n'] = N; B's client waits for the invalidation, as in watch.

ADDR is HOST:PORT. Invalidations are recorded where ClientStorage hands
them to the DB (its MVCC adapter's invalidate), in the order they arrive.
"""
import json
import os
import sys
import time

import transaction
import ZODB
from ZEO.ClientStorage import ClientStorage
from ZODB.utils import u64

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relstorage_interop import open_db as open_relstorage  # noqa: E402

WAIT_SECONDS = 10.0


def address(text):
    host, port = text.rsplit(':', 1)
    return (host, int(port))


class Client:
    """A ZEO client (its own DB, connection and transaction manager) that
    records the invalidations it receives."""

    def __init__(self, addr):
        self.db = ZODB.DB(ClientStorage(address(addr), wait=1,
                                        wait_timeout=30))
        self.heard = []
        # What ClientStorage hands invalidations to (ZODB's MVCC adapter,
        # which registered itself as the storage's DB).
        receiver = self.db.storage._db
        receiver_invalidate = receiver.invalidate

        def invalidate(tid, oids, *args, **kw):
            self.heard.append([u64(tid), sorted(u64(o) for o in oids)])
            return receiver_invalidate(tid, oids, *args, **kw)

        receiver.invalidate = invalidate
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(self.tm)

    def root(self):
        return self.conn.root()

    def n(self):
        """py['n'] in a new transaction."""
        self.tm.begin()
        return self.root()['py']['n']

    def last(self):
        return u64(self.db.storage.lastTransaction())

    def wait_for(self, tid):
        """Seconds until the invalidation of `tid` arrived; fails after
        WAIT_SECONDS."""
        start = time.monotonic()
        while not any(t == tid for t, _ in self.heard):
            if time.monotonic() - start > WAIT_SECONDS:
                raise SystemExit(
                    f'no invalidation for {tid} within {WAIT_SECONDS} s; '
                    f'heard {self.heard}')
            time.sleep(0.01)
        return time.monotonic() - start

    def close(self):
        self.tm.abort()
        self.conn.close()
        self.db.close()


def relstorage_bump(dsn, n):
    db = open_relstorage(dsn)
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        tm.begin()
        py = conn.root()['py']
        py['n'] = n
        tm.commit()
        tid, oid = u64(py._p_serial), u64(py._p_oid)
        conn.close()
        return tid, oid
    finally:
        db.close()


def main():
    cmd = sys.argv[1]
    out = {}
    if cmd == 'stale':
        addr, dsn = sys.argv[2], sys.argv[3]
        first = Client(addr)
        out['first_n'] = first.n()
        out['relstorage_tid'], out['py_oid'] = relstorage_bump(dsn, 2)
        fresh = Client(addr)
        out['fresh_last'] = fresh.last()
        out['fresh_n'] = fresh.n()
        first.tm.begin()
        first.root()['zeo'] = 1
        first.tm.commit()
        out['own_tid'] = u64(first.root()._p_serial)
        # The own commit's reply came after the invalidations before it.
        out['first_heard'] = list(first.heard)
        fresh.wait_for(out['own_tid'])
        out['fresh_heard'] = list(fresh.heard)
        out['first_after'] = first.n()
        out['fresh_after'] = fresh.n()
        first.close()
        fresh.close()
    elif cmd == 'watch':
        addr, dsn, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        client = Client(addr)
        out['before'] = client.n()
        client.tm.abort()
        out['relstorage_tid'], out['py_oid'] = relstorage_bump(dsn, n)
        out['seconds'] = client.wait_for(out['relstorage_tid'])
        out['heard'] = client.heard
        out['after'] = client.n()
        client.close()
    elif cmd == 'across':
        addr_a, addr_b, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        b = Client(addr_b)
        out['before'] = b.n()
        b.tm.abort()
        a = Client(addr_a)
        a.tm.begin()
        py = a.root()['py']
        py['n'] = n
        a.tm.commit()
        out['tid'], out['py_oid'] = u64(py._p_serial), u64(py._p_oid)
        out['seconds'] = b.wait_for(out['tid'])
        out['heard'] = b.heard
        out['after'] = b.n()
        a.close()
        b.close()
    else:
        raise SystemExit('unknown command ' + cmd)
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
