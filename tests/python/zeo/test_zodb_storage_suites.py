"""ZODB's and ZEO's own storage test suites over a ZEO server process.

    python tests/python/zeo/run_suites.py test_zodb_storage_suites [-k PAT]
    python -m unittest tests/python/zeo/test_zodb_storage_suites.py

Runs the storage test mixins of ZODB 6.4 (BasicStorage with its MVCC race
tests, HistoryStorage, IteratorStorage, PackableStorage +
PackableUndoStorage, SynchronizedStorage, ConflictResolvingStorage +
ConflictResolvingTransUndoStorage, RevisionStorage, MTStorage,
ReadOnlyStorage, TransactionalUndoStorage, RecoveryStorage) and the ZEO
6.2 client-side ones (CommitLockVoteTests, ThreadTests, IterationTests,
MiscZEOTests with checkZEOInvalidation, Cache.TransUndoStorageWithCache)
through an unmodified ZEO.ClientStorage against the server chosen by env
ZEO_SERVER_KIND ('python' = ZEO 6.2's runzeo, the baseline; 'bbru' =
$BBRU_ZEO; see server.py). The Rust CI runs it with ZEO_SERVER_KIND=bbru
to check that bbru-zeo is a drop-in ZEO server.

The test classes reuse ZEO's own ZEO.tests.testZEO.FileStorageTests and
FileStorageRecoveryTests (the classes ZEO's test suite runs these mixins
with) and only replace how servers are started: each test gets fresh
server processes on fresh empty Data.fs files in its own temporary
directory (spec zeo-protocol.md §8.3) instead of ZEO's in-process forker.
The Python server runs with client-conflict-resolution (see server.py),
the only mode bbru-zeo has; the three tests that need server-side conflict
resolution (resolving the conflicts of an *undo*, which never reach the
client) are skipped, with the reason.

ZODB >= 6 mixins name their tests test*, ZEO's check*: load_tests below
collects both (as ZEO's own test_suite() does), honouring unittest's -k.

ZEOServerSSLStorageTests is ZEO's FileStorageSSLTests: every test of
ZEOServerStorageTests again, over TLS with ZEO's own test certificates
(the server authenticates the client's certificate).
ZEOServerBlobStorageTests and ZEOServerBlobSharedTests are ZEO's
BlobAdaptedFileStorageTests and BlobWritableCacheTests: every generic test
and the blob tests, with a server blob directory and a client blob cache,
or with that directory shared by the client.
"""
import os
import sys
import unittest

import ZEO.tests.testZEO
from ZEO.ClientStorage import ClientStorage
from ZODB.tests import HistoryStorage
from ZODB.tests import StorageTestBase

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import server_kind  # noqa: E402
from server import start_server  # noqa: E402

NEEDS_SERVER_SIDE_RESOLUTION = (
    'undo conflicts are resolved by the server storage; in '
    'client-conflict-resolution mode (the only one bbru-zeo has) the '
    'server refuses them')


def _skip_server_side_resolution(method):
    return unittest.skip(NEEDS_SERVER_SIDE_RESOLUTION)(method)


class ExternalServer:
    """Replaces ZEO's in-process test servers by server processes of kind
    ZEO_SERVER_KIND, one per storage, each on a fresh empty Data<n>.fs in
    the test's temporary directory (StorageTestBase.setUp chdirs there).
    ZEO's tearDown closes the client storages and calls self._servers."""

    ssl = False
    # Blob classes: the server's blob directory (relative to the test's
    # directory) and whether the client shares it.
    server_blob_dir = None

    def _client_options(self):
        """ClientStorage options of every client (the SSL class's differ)."""
        return {}

    def _new_storage(self):
        blob_dir = (os.path.abspath(self.server_blob_dir)
                    if self.server_blob_dir else None)
        server = start_server(
            server_kind(), os.path.abspath(f'Data{len(self._servers)}.fs'),
            ssl=self.ssl, blob_dir=blob_dir)
        self._servers.append(server.stop)
        options = dict(self._client_options())
        if blob_dir:
            # Relative, as ZEO's tests give it (they compare paths).
            options.update(blob_dir=self.blob_cache_dir,
                           shared_blob_dir=self.shared_blob_dir)
        storage = ClientStorage(server.address, '1', wait=1, wait_timeout=30,
                                **options)
        storage.registerDB(ZEO.tests.testZEO.DummyDB())
        return storage

    def _start_servers(self, *attributes):
        """setUp: one server + ClientStorage per attribute name. On failure
        stop what was started (unittest skips tearDown then)."""
        StorageTestBase.StorageTestBase.setUp(self)
        self._servers = []
        try:
            for name in attributes:
                setattr(self, name, self._new_storage())
        except BaseException:
            for stop in self._servers:
                stop()
            StorageTestBase.StorageTestBase.tearDown(self)
            raise


class ZEOServerStorageTests(ExternalServer,
                            ZEO.tests.testZEO.FileStorageTests,
                            HistoryStorage.HistoryStorage):
    """Every storage test of ZEO's FileStorageTests, plus HistoryStorage."""

    def setUp(self):
        self._start_servers('_storage')

    # FullGenericTests disables ZODB's testPackUndoLog (it runs it as
    # checkPackUndoLog without the time.sleep patching that cannot reach a
    # server process) with an empty method; don't count that as a test.
    testPackUndoLog = None

    testUndoConflictResolution = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests.testUndoConflictResolution)
    testUndoMultipleConflictResolution = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests.testUndoMultipleConflictResolution)
    testUndoMultipleConflictResolutionReversed = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests
        .testUndoMultipleConflictResolutionReversed)


class ZEOServerSSLStorageTests(ZEOServerStorageTests):
    """ZEO's FileStorageSSLTests: the same tests over TLS; every client
    (including the extra ones tests open) gets ZEO's test SSL context."""

    ssl = True
    getZEOConfig = ZEO.tests.testZEO.FileStorageSSLTests.getZEOConfig
    _client_options = ZEO.tests.testZEO.FileStorageSSLTests._client_options


class ZEOServerBlobStorageTests(ExternalServer,
                                ZEO.tests.testZEO.BlobAdaptedFileStorageTests):
    """ZEO's BlobAdaptedFileStorageTests: every generic test, and the blob
    tests, with a server blob directory and a client blob cache (blobs
    travel over the connection)."""

    server_blob_dir = 'blobs'
    blob_cache_dir = 'blob_cache'

    def setUp(self):
        self._start_servers('_storage')

    testPackUndoLog = None
    testUndoConflictResolution = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests.testUndoConflictResolution)
    testUndoMultipleConflictResolution = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests.testUndoMultipleConflictResolution)
    testUndoMultipleConflictResolutionReversed = _skip_server_side_resolution(
        ZEO.tests.testZEO.FileStorageTests
        .testUndoMultipleConflictResolutionReversed)


class ZEOServerBlobSharedTests(ZEOServerBlobStorageTests):
    """ZEO's BlobWritableCacheTests: the same with the server's blob
    directory shared by the client."""

    blob_cache_dir = 'blobs'
    shared_blob_dir = True
    checkStoreAndLoadBlob = None


class ZEOServerRecoveryTests(ExternalServer,
                             ZEO.tests.testZEO.FileStorageRecoveryTests):
    """ZODB's RecoveryStorage (copyTransactionsFrom: tpc_begin with an
    explicit tid, restorea) from one server process to another, as ZEO's
    FileStorageRecoveryTests runs it; new_dest() starts more servers."""

    def setUp(self):
        self._start_servers('_storage', '_dst')


def load_tests(loader, standard_tests, pattern):
    suite = unittest.TestSuite()
    for prefix in ('check', 'test'):
        prefixed = unittest.TestLoader()
        prefixed.testMethodPrefix = prefix
        prefixed.testNamePatterns = loader.testNamePatterns
        for case in (ZEOServerStorageTests, ZEOServerSSLStorageTests,
                     ZEOServerBlobStorageTests, ZEOServerBlobSharedTests,
                     ZEOServerRecoveryTests):
            suite.addTests(prefixed.loadTestsFromTestCase(case))
    return suite
