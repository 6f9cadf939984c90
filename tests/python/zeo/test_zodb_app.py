"""Application-level ZODB interop over a ZEO server process.

    python tests/python/zeo/run_suites.py test_zodb_app [-k PAT]
    python -m unittest tests/python/zeo/test_zodb_app.py

What an application does through ZODB.DB(ClientStorage(...)) with
PersistentMapping and OOBTree objects, against the server chosen by env
ZEO_SERVER_KIND ('python' = ZEO 6.2's runzeo, the baseline; 'bbru' =
$BBRU_ZEO; see server.py): commit and load back, invalidations and MVCC
between two clients, conflicts, BTrees conflict resolution on the client,
undo, pack, history, iteration, read-only clients and servers, restart
after SIGTERM and SIGKILL. Every test gets a fresh server on a fresh
Data.fs; after each test the server is stopped (SIGTERM; it must exit
with code 0) and `python -m ZODB.scripts.fstest` must accept the Data.fs
it leaves. The
Rust CI runs this with ZEO_SERVER_KIND=bbru to check bbru-zeo as a
drop-in ZEO server for real ZODB applications.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZEO.ClientStorage import ClientStorage
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError
from ZODB.POSException import POSKeyError
from ZODB.POSException import ReadOnlyError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import server_kind  # noqa: E402
from server import start_server  # noqa: E402

WAIT = 10.0  # seconds to wait for an invalidation to reach another client


def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'waited {WAIT} s in vain for {what}')
        time.sleep(0.01)


class ZODBAppTests(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='zeo-app-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_fs = os.path.join(self.dir, 'Data.fs')
        self.closers = []  # close the clients opened so far, newest first
        self.start()
        self.addCleanup(self.stop_and_fstest)
        self.addCleanup(self.close_clients)

    def start(self, read_only=False):
        self.server = start_server(server_kind(), self.data_fs,
                                   read_only=read_only)

    def stop_and_fstest(self):
        """Stop the server; Python's fstest must accept its Data.fs."""
        self.assertEqual(self.server.stop(), 0, self.server.log())
        check = subprocess.run(
            [sys.executable, '-m', 'ZODB.scripts.fstest', self.data_fs],
            capture_output=True, text=True)
        self.assertEqual(check.returncode, 0,
                         f'fstest failed:\n{check.stdout}{check.stderr}')

    def close_clients(self):
        while self.closers:
            self.closers.pop()()

    def connect(self, **options):
        """A new ClientStorage (a new client connection to the server)."""
        options = {'wait': 1, 'wait_timeout': 30, **options}
        return ClientStorage(self.server.address, '1', **options)

    def storage(self, **options):
        storage = self.connect(**options)
        self.closers.append(storage.close)
        return storage

    def db(self, **options):
        """A ZODB.DB over a new ClientStorage (closing it closes both)."""
        db = ZODB.DB(self.connect(**options))
        self.closers.append(db.close)
        return db

    def open(self, db):
        """A connection with its own transaction manager."""
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        self.closers.append(conn.close)
        self.closers.append(tm.abort)
        return conn, tm

    def commit(self, tm, description='', user=None, **extension):
        txn = tm.get()
        if description:
            txn.note(description)
        if user:
            txn.setUser(user)
        txn.extension.update(extension)
        tm.commit()

    def test_commit_and_load_in_new_connection(self):
        """Objects committed load back in another connection and client."""
        db = self.db()
        conn, tm = self.open(db)
        root = conn.root()
        root['config'] = PersistentMapping({'name': 'bbru', 'n': 42})
        root['config']['nested'] = PersistentMapping({'x': [1, 2, 3]})
        root['tree'] = tree = OOBTree()
        for i in range(1000):
            tree[f'key{i:04d}'] = i
        self.commit(tm, 'populate')

        conn2, _ = self.open(db)
        self.assertEqual(conn2.root()['config']['n'], 42)

        # A second client has an empty cache: everything comes from the server.
        conn3, _ = self.open(self.db())
        root3 = conn3.root()
        self.assertEqual(root3['config']['name'], 'bbru')
        self.assertEqual(root3['config']['nested']['x'], [1, 2, 3])
        self.assertEqual(len(root3['tree']), 1000)
        self.assertEqual(root3['tree']['key0999'], 999)
        self.assertEqual(list(root3['tree'].keys()[:2]),
                         ['key0000', 'key0001'])

    def test_invalidation_and_mvcc_between_two_clients(self):
        """A commit by one client invalidates the other, which still sees
        the old state until its next transaction (MVCC)."""
        db1, db2 = self.db(), self.db()
        conn1, tm1 = self.open(db1)
        conn1.root()['a'] = PersistentMapping(v=1)
        conn1.root()['b'] = PersistentMapping(v=1)
        self.commit(tm1)
        first = db1.storage.lastTransaction()
        wait_for(lambda: db2.storage.lastTransaction() == first,
                 'the first commit to reach client 2')

        conn2, tm2 = self.open(db2)
        tm2.begin()
        root2 = conn2.root()
        self.assertEqual(root2['a']['v'], 1)  # 'a' loaded; 'b' not yet

        conn1.root()['a']['v'] = 2
        conn1.root()['b']['v'] = 2
        self.commit(tm1)
        second = db1.storage.lastTransaction()
        wait_for(lambda: db2.storage.lastTransaction() == second,
                 'invalidateTransaction to reach client 2')

        # Still in the transaction begun before the commit: the old state,
        # both for the cached object and for the one loaded only now
        # (loadBefore the transaction's start).
        self.assertEqual(root2['a']['v'], 1)
        self.assertEqual(root2['b']['v'], 1)

        tm2.begin()
        self.assertEqual(root2['a']['v'], 2)
        self.assertEqual(root2['b']['v'], 2)

        conn1.root()['b']['v'] = 3
        self.commit(tm1)
        third = db1.storage.lastTransaction()
        wait_for(lambda: db2.storage.lastTransaction() == third,
                 'invalidateTransaction to reach client 2')
        self.assertEqual(root2['b']['v'], 2)
        conn2.sync()
        self.assertEqual(root2['b']['v'], 3)

    def test_conflicting_writes_from_two_clients(self):
        """A write based on an outdated revision raises ConflictError."""
        db1, db2 = self.db(), self.db()
        conn1, tm1 = self.open(db1)
        conn1.root()['c'] = PersistentMapping(v=0)
        self.commit(tm1)
        wait_for(lambda: db2.storage.lastTransaction()
                 == db1.storage.lastTransaction(), 'client 2 to catch up')

        conn2, tm2 = self.open(db2)
        tm2.begin()
        c2 = conn2.root()['c']
        self.assertEqual(c2['v'], 0)

        conn1.root()['c']['v'] = 1
        self.commit(tm1)

        c2['v'] = 2
        with self.assertRaises(ConflictError) as caught:
            tm2.commit()
        self.assertEqual(caught.exception.oid, c2._p_oid)
        tm2.abort()

        tm2.begin()
        self.assertEqual(conn2.root()['c']['v'], 1)

    def test_btree_conflict_resolved_by_the_client(self):
        """Concurrent inserts into one OOBTree bucket both commit: the
        server returns the conflict, the second client resolves it."""
        db1, db2 = self.db(), self.db()
        conn1, tm1 = self.open(db1)
        conn1.root()['tree'] = tree = OOBTree()
        for i in range(0, 2000, 2):  # many buckets
            tree[i] = 'initial'
        self.commit(tm1)
        wait_for(lambda: db2.storage.lastTransaction()
                 == db1.storage.lastTransaction(), 'client 2 to catch up')

        conn2, tm2 = self.open(db2)
        tm2.begin()
        tree2 = conn2.root()['tree']
        self.assertEqual(tree2[1000], 'initial')

        # Neighbouring new keys: the same bucket, which neither commit splits.
        tree[1001] = 'from client 1'
        self.commit(tm1)

        resolutions = []
        resolve = db2.storage.tryToResolveConflict

        def counting_resolve(*args, **kw):
            resolutions.append(args[0])
            return resolve(*args, **kw)

        db2.storage.tryToResolveConflict = counting_resolve
        tree2[1003] = 'from client 2'
        tm2.commit()  # the server reports the conflict; the client resolves
        self.assertEqual(len(resolutions), 1)

        conn3, _ = self.open(self.db())
        tree3 = conn3.root()['tree']
        self.assertEqual(tree3[1001], 'from client 1')
        self.assertEqual(tree3[1003], 'from client 2')
        self.assertEqual(len(tree3), 1002)

    def test_undo_restores_previous_value(self):
        """db.undo of the last transaction restores the previous value."""
        db = self.db()
        conn, tm = self.open(db)
        conn.root()['u'] = PersistentMapping(v=1)
        self.commit(tm, 'set v=1')
        conn.root()['u']['v'] = 2
        self.commit(tm, 'set v=2', user='undoer')

        log = db.undoLog(0, 20)  # ZODB.DB decodes user and description
        self.assertEqual([entry['description'] for entry in log],
                         ['set v=2', 'set v=1', 'initial database creation'])
        self.assertEqual(log[0]['user_name'], '/ undoer')
        db.undo(log[0]['id'], tm.get())
        self.commit(tm, 'undo v=2')

        tm.begin()
        self.assertEqual(conn.root()['u']['v'], 1)
        conn2, _ = self.open(self.db())
        self.assertEqual(conn2.root()['u']['v'], 1)

    def test_pack_removes_old_revisions_and_garbage(self):
        """After db.pack() the current data stays; old revisions and
        unreachable objects are gone."""
        db = self.db()
        conn, tm = self.open(db)
        root = conn.root()
        root['p'] = PersistentMapping(v=1)
        root['garbage'] = PersistentMapping(v='unreachable after the next txn')
        self.commit(tm)
        oid = root['p']._p_oid
        garbage_oid = root['garbage']._p_oid
        old_serial = root['p']._p_serial
        root['p']['v'] = 2
        del root['garbage']
        self.commit(tm)
        new_serial = root['p']._p_serial

        db.pack()

        # A new client: this one has the garbage object in its cache.
        storage = self.storage()
        with self.assertRaises(POSKeyError):
            storage.loadSerial(oid, old_serial)
        self.assertTrue(storage.loadSerial(oid, new_serial))
        with self.assertRaises(POSKeyError):
            storage.load(garbage_oid)
        self.assertEqual(len(storage.history(oid, 10)), 1)
        tm.begin()
        self.assertEqual(root['p']['v'], 2)

    def test_history_lists_revisions_with_user_and_description(self):
        """history() lists the revisions newest first with their metadata."""
        db = self.db()
        conn, tm = self.open(db)
        conn.root()['h'] = obj = PersistentMapping()
        serials = []
        for i in range(3):
            obj['v'] = i
            self.commit(tm, f'revision {i}', user=f'user{i}')
            serials.append(obj._p_serial)

        history = db.storage.history(obj._p_oid, 10)
        self.assertEqual([h['tid'] for h in history], serials[::-1])
        self.assertEqual([h['description'] for h in history],
                         [b'revision 2', b'revision 1', b'revision 0'])
        self.assertEqual([h['user_name'] for h in history],
                         [b'/ user2', b'/ user1', b'/ user0'])
        for h in history:
            self.assertGreater(h['size'], 0)
        self.assertEqual(len(db.storage.history(obj._p_oid)), 1)

    def test_iterator_yields_all_transactions_and_records(self):
        """iterator() yields every transaction with metadata and records."""
        db = self.db()
        conn, tm = self.open(db)
        root = conn.root()
        root['it'] = PersistentMapping(x=1)
        self.commit(tm, 'create it', user='iter', app='bbru', n=1)
        root['it']['x'] = 2
        self.commit(tm, 'change it')
        root_oid, it_oid = root._p_oid, root['it']._p_oid

        storage = db.storage
        seen = []
        for txn in storage.iterator():
            records = {}
            for record in txn:
                self.assertEqual(record.tid, txn.tid)
                self.assertEqual(record.data,
                                 storage.loadSerial(record.oid, record.tid))
                records[record.oid] = record
            seen.append((txn.status, txn.user, txn.description,
                         txn.extension, set(records)))
        self.assertEqual(seen, [
            (' ', b'', b'initial database creation', {}, {root_oid}),
            (' ', b'/ iter', b'create it', {'app': 'bbru', 'n': 1},
             {root_oid, it_oid}),
            (' ', b'', b'change it', {}, {it_oid}),
        ])
        tids = [txn.tid for txn in storage.iterator()]
        self.assertEqual(tids, sorted(tids))
        self.assertEqual(tids[-1], storage.lastTransaction())
        self.assertEqual(
            [txn.tid for txn in storage.iterator(tids[1], tids[1])], [tids[1]])

    def test_read_only_client_reads_and_cannot_commit(self):
        """A read_only=True client reads; its commits raise ReadOnlyError."""
        conn, tm = self.open(self.db())
        conn.root()['r'] = PersistentMapping(v='visible')
        self.commit(tm)

        ro_db = self.db(read_only=True)
        self.assertTrue(ro_db.storage.isReadOnly())
        ro_conn, ro_tm = self.open(ro_db)
        self.assertEqual(ro_conn.root()['r']['v'], 'visible')
        ro_conn.root()['r']['v'] = 'changed'
        with self.assertRaises(ReadOnlyError):
            ro_tm.commit()

    def test_read_only_server(self):
        """A server started read-only serves reads and refuses writes."""
        conn, tm = self.open(self.db())
        conn.root()['r'] = PersistentMapping(v='written before -r')
        self.commit(tm)
        self.close_clients()
        self.stop_and_fstest()
        self.start(read_only=True)

        # A writable client cannot register (it keeps retrying until its
        # wait_timeout); a read_only_fallback one registers read-only.
        with self.assertRaises(ClientDisconnected):
            self.connect(wait_timeout=1)
        db = self.db(read_only_fallback=True)
        self.assertTrue(db.storage.isReadOnly())
        conn2, tm2 = self.open(db)
        self.assertEqual(conn2.root()['r']['v'], 'written before -r')
        conn2.root()['r']['v'] = 'changed'
        with self.assertRaises(ReadOnlyError):
            tm2.commit()

    def test_restart_after_stop_serves_the_same_data(self):
        """After a clean stop (fstest passes) a new server on the same
        Data.fs serves the same data."""
        db = self.db()
        conn, tm = self.open(db)
        root = conn.root()
        root['tree'] = tree = OOBTree()
        for i in range(300):
            tree[i] = str(i)
        self.commit(tm, 'tree')
        root['m'] = PersistentMapping(v=1)
        self.commit(tm, 'm=1')
        root['m']['v'] = 2
        self.commit(tm, 'm=2')
        db.undo(db.undoLog(0, 1)[0]['id'], tm.get())
        self.commit(tm, 'undo m=2')
        db.pack()
        last = db.storage.lastTransaction()
        self.close_clients()
        self.stop_and_fstest()

        self.start()
        db2 = self.db()
        self.assertEqual(db2.storage.lastTransaction(), last)
        conn2, _ = self.open(db2)
        self.assertEqual(conn2.root()['m']['v'], 1)
        self.assertEqual(len(conn2.root()['tree']), 300)

    def test_committed_data_survives_kill9(self):
        """Committed data survives SIGKILL of the server."""
        db = self.db()
        conn, tm = self.open(db)
        conn.root()['k'] = PersistentMapping(v='durable')
        self.commit(tm)
        last = db.storage.lastTransaction()
        self.close_clients()
        self.server.kill9()

        self.start()
        db2 = self.db()
        self.assertEqual(db2.storage.lastTransaction(), last)
        conn2, _ = self.open(db2)
        self.assertEqual(conn2.root()['k']['v'], 'durable')
