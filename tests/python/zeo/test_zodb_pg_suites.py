"""ZODB's and ZEO's generic storage suites through ClientStorage against
bbru-zeo serving a PostgreSQL database (RelStorage 4.3's history-preserving
tables), each server on a fresh database:

    ZEO_SERVER_KIND=bbru-pg BBRU_ZEO=... BBRU_PG_URL=... \\
        python tests/python/zeo/run_suites.py test_zodb_pg_suites

The test classes are test_zodb_storage_suites' (ZEO's FileStorageTests with
HistoryStorage, and FileStorageRecoveryTests), run as they are: BasicStorage
with its MVCC race tests, Synchronization, History, Iterator, Packable (and
PackableUndo), TransactionalUndo, ConflictResolution (and its undo form),
RevisionStorage, MTStorage, ReadOnlyStorage, RecoveryStorage and ZEO's
client-side tests. Not run here: the TLS classes, and the blob classes
(test_blob_doctests runs ZODB's blob suite against bbru-pg). The tests
that cannot pass on RelStorage's design are skipped below, each with its reason, as RelStorage's own test suite does for
its adapters; the three of test_zodb_storage_suites that need server-side
conflict resolution of undos stay skipped (RelStorage skips them too: it
"does not support conflict-resolving undo").
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_zodb_storage_suites as suites  # noqa: E402

# Why each skipped test cannot pass on RelStorage's tables.
NOT_ON_RELSTORAGE = {
    # RelStorage's own hptestbase replaces this test by its
    # checkTransactionalUndoIterator, which expects what we give.
    'testTransactionalUndoIterator':
        'RelStorage keeps no backpointers: an undo copies the old state '
        'forward, so an undo record\'s data_txn is None, not the tid whose '
        'data it reuses (RelStorage 4.3 fails this test the same way)',
}



def _skipping(cls):
    """A subclass of `cls` with the tests of NOT_ON_RELSTORAGE skipped."""
    attrs = {}
    for name, why in NOT_ON_RELSTORAGE.items():
        method = getattr(cls, name, None)
        if method is not None:
            attrs[name] = unittest.skip(why)(method)
    return type(cls.__name__ + 'OnPostgreSQL', (cls,), attrs)


PgStorageTests = _skipping(suites.ZEOServerStorageTests)
PgRecoveryTests = _skipping(suites.ZEOServerRecoveryTests)


def load_tests(loader, standard_tests, pattern):
    suite = unittest.TestSuite()
    for prefix in ('check', 'test'):
        prefixed = unittest.TestLoader()
        prefixed.testMethodPrefix = prefix
        prefixed.testNamePatterns = loader.testNamePatterns
        for case in (PgStorageTests, PgRecoveryTests):
            suite.addTests(prefixed.loadTestsFromTestCase(case))
    return suite
