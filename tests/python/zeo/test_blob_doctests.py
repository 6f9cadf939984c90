"""ZODB's blob doctests through ClientStorage against the server under test.

ZEO's own test suite judges its server with ZODB's reusable blob suite
(ZODB.tests.testblob.storage_reusable_suite: the blob_connection,
blob_importexport and blob_transaction doctests, testblob's own doctests and
BlobUndoTests), given a storage factory that starts a server with a blob
directory and connects a ClientStorage to it, once with a client blob cache
(files travel over the connection) and once with the server's blob directory
shared. This module does the same with the server of ZEO_SERVER_KIND (see
server.py), and adds blob_packing with the shared directory, where the
doctest can look at the server's files.

unittest ignores zope.testrunner's layers; Layered runs each suite inside its
layer (a clock that always moves forward, as the doctests expect), except
blob_packing: it packs to times read from the client's clock, which must then
be the real one the server stamps its transactions with (ZEO's suite leaves
blob_packing out for that reason; with the real clock it holds against
Python's server and ours alike).

As root, opening a read-only file for writing succeeds, so blob_transaction's
check that a committed blob cannot be opened for writing (and the example
after it, which reads the file that open truncated) cannot hold for any
server; as root that one example is replaced by a check of the file's mode
(no write permission for anyone), which is what the open would have tested.
"""
import doctest
import fnmatch
import os
import unittest

import ZEO.ClientStorage
import ZODB.tests.testblob
import zope.testing.setupstack

from run_suites import iter_tests
from server import server_kind, start_server


class ServerManagingClientStorage(ZEO.ClientStorage.ClientStorage):
    """A ClientStorage with a server of its own, stopped when it closes."""

    def __init__(self, name, blob_dir, shared=False):
        server_blobs = blob_dir if shared else 'server-' + blob_dir
        server = start_server(server_kind(), name + '.fs',
                              blob_dir=os.path.abspath(server_blobs))
        zope.testing.setupstack.register(self, server.stop)
        super().__init__(server.address, blob_dir=blob_dir,
                         shared_blob_dir=shared, wait_timeout=30)

    def close(self):
        super().close()
        zope.testing.setupstack.tearDown(self)


def shared(name, blob_dir):
    return ServerManagingClientStorage(name, blob_dir, shared=True)


class Layered(unittest.TestSuite):
    """The tests of `suite`, run inside `suite.layer`."""

    def __init__(self, suite):
        super().__init__(list(iter_tests(suite)))
        self.layer = suite.layer

    def run(self, result, debug=False):
        layer = self.layer
        layer.setUp()
        try:
            for test in self:
                if result.shouldStop:
                    break
                if 'blob_packing' in test.id():
                    test(result)
                    continue
                layer.testSetUp()
                try:
                    test(result)
                finally:
                    layer.testTearDown()
        finally:
            layer.tearDown()
        return result


def for_root(test):
    """Replaces, when running as root, the example of blob_transaction.txt that
    opens a committed blob for writing by a check of its mode."""
    dt = getattr(test, '_dt_test', None)
    if os.geteuid() != 0 or dt is None:
        return test
    for i, example in enumerate(dt.examples):
        if "open(blob.committed(), 'w')" in example.source:
            dt.examples[i] = doctest.Example(
                "__import__('os').stat(blob.committed()).st_mode & 0o222\n",
                "0\n", lineno=example.lineno)
    return test


def load_tests(loader, standard_tests, pattern):
    suites = [
        ZODB.tests.testblob.storage_reusable_suite(
            'ClientStorageNonSharedBlobs', ServerManagingClientStorage),
        ZODB.tests.testblob.storage_reusable_suite(
            'ClientStorageSharedBlobs', shared, test_packing=True),
    ]
    out = unittest.TestSuite()
    for suite in suites:
        tests = [for_root(t) for t in iter_tests(suite)
                 if not loader.testNamePatterns
                 or any(fnmatch.fnmatchcase(t.id(), p)
                        for p in loader.testNamePatterns)]
        filtered = unittest.TestSuite(tests)
        filtered.layer = suite.layer
        out.addTest(Layered(filtered))
    return out
