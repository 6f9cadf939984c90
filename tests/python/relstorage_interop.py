"""Python RelStorage 4.3 on a PostgreSQL database that bbru's PgStorage shares,
for crates/zodb-pg/tests/it/relstorage.rs. Every command opens the database
with RelStorage, history-preserving (keep-history true, the default), and
prints one JSON object per line.

    python relstorage_interop.py write DSN
        root['py'] = PersistentMapping(n=1), committed by user 'py-user'
        (ZODB records '/ py-user'); prints py's oid and the tid
    python relstorage_interop.py read DSN
        what a Python application sees: root's keys, py['n'], the mapping
        bbru added under root['rust'], the newest transaction's user and
        description (undoLog), and root's history length
    python relstorage_interop.py bump DSN N
        py['n'] = N, committed; prints the tid
    python relstorage_interop.py watch DSN
        reads py['n'] in a transaction and prints it, then waits for a line
        on stdin (the other side commits py meanwhile); changes py['n'] in the
        same transaction and commits: prints the ConflictError; then begins a
        new transaction and prints py['n'] as RelStorage's poll lets it see it
    python relstorage_interop.py pack DSN
        packs (with GC) to now; prints the tid of the newest transaction
    python relstorage_interop.py blob-write DSN BLOB_CACHE_DIR
        root['blob'] = a Blob of 'written by RelStorage' * 1000, kept in the
        database (shared-blob-dir false); prints its oid and tid
    python relstorage_interop.py blob-read DSN BLOB_CACHE_DIR
        reads root['blob'] (downloaded from the database into an empty
        cache); prints its serial, size and md5
"""
import hashlib
import json
import sys
import time

import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from psycopg2.extensions import parse_dsn
from relstorage.adapters.postgresql import PostgreSQLAdapter
from relstorage.options import Options
from relstorage.storage import RelStorage
from ZODB.POSException import ConflictError
from ZODB.utils import u64


def open_db(dsn, blob_dir=None):
    # RelStorage appends `application_name=...` to the DSN, so it must be in
    # libpq's key=value form, not a URL.
    dsn = ' '.join('%s=%s' % kv for kv in parse_dsn(dsn).items())
    blobs = {} if blob_dir is None else dict(blob_dir=blob_dir,
                                              shared_blob_dir=False)
    options = Options(keep_history=True, create_schema=True, **blobs)
    adapter = PostgreSQLAdapter(dsn=dsn, options=options)
    return ZODB.DB(RelStorage(adapter, options=options))


def out(**kw):
    print(json.dumps(kw), flush=True)


def main():
    cmd, dsn = sys.argv[1], sys.argv[2]
    db = open_db(dsn, sys.argv[3] if cmd.startswith('blob-') else None)
    try:
        conn = db.open()
        root = conn.root()
        if cmd == 'write':
            txn = transaction.begin()
            txn.setUser('py-user')
            txn.note('from python')
            root['py'] = PersistentMapping(n=1)
            transaction.commit()
            out(root_serial=u64(root._p_serial), py_oid=u64(root['py']._p_oid),
                tid=u64(root['py']._p_serial))
        elif cmd == 'read':
            transaction.begin()
            rust = root.get('rust')
            logs = db.storage.undoLog(0, 1)
            # After a pack to now nothing is undoable.
            log = logs[0] if logs else {'user_name': '', 'description': ''}
            out(keys=sorted(root.keys()), n=root['py']['n'],
                rust=dict(rust) if rust is not None else None,
                rust_oid=u64(rust._p_oid) if rust is not None else None,
                user=log['user_name'].decode() if isinstance(log['user_name'], bytes)
                else log['user_name'],
                description=log['description'].decode()
                if isinstance(log['description'], bytes) else log['description'],
                root_history=len(db.storage.history(root._p_oid, size=100)))
        elif cmd == 'bump':
            transaction.begin()
            root['py']['n'] = int(sys.argv[3])
            transaction.commit()
            out(tid=u64(root['py']._p_serial))
        elif cmd == 'watch':
            transaction.begin()
            py = root['py']
            out(n=py['n'], serial=u64(py._p_serial))
            sys.stdin.readline()
            py['n'] = -1
            try:
                transaction.commit()
                out(conflict=False)
            except ConflictError as e:
                transaction.abort()
                out(conflict=True, oid=u64(e.oid), serials=[u64(s) for s in e.serials])
            transaction.begin()
            out(n=root['py']['n'], serial=u64(root['py']._p_serial))
        elif cmd == 'blob-write':
            transaction.begin()
            blob = Blob(b'written by RelStorage' * 1000)
            root['blob'] = blob
            transaction.commit()
            out(oid=u64(blob._p_oid), tid=u64(db.storage.lastTransaction()))
        elif cmd == 'blob-read':
            transaction.begin()
            blob = root['blob']
            with blob.open('r') as f:
                data = f.read()
            out(serial=u64(blob._p_serial), size=len(data),
                md5=hashlib.md5(data).hexdigest())
        elif cmd == 'pack':
            db.pack(time.time() + 1)
            out(last=u64(db.storage.lastTransaction()))
        else:
            raise SystemExit('unknown command ' + cmd)
        transaction.abort()
        conn.close()
    finally:
        db.close()


if __name__ == '__main__':
    main()
