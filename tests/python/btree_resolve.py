"""Judges conflict-resolution cases with Python's own BTrees, for the Rust cross-check
(crates/zodb/tests/persistence/btree_python.rs).

argv[1]: a file of one case per line, `KIND OLD COMMITTED NEW` with KIND `bucket`, `tree` or
`length` and each state a pickle in hex (`-` for a state of None).  Each case is
unpickled as ZODB's conflict resolution does (one reference factory for its three
states, so references compare as `PersistentReference`s) and resolved by a fresh
`OOBucket`, `OOBTree` or `Length`.

stdout: one line per case: `ok HEX` (the merged state pickled as ZODB stores it),
`conflict P1 P2 P3 REASON` (a `BTreesConflictError`) or `error NAME` (any other
exception, which ZODB turns into a conflict too).
"""

import io
import sys

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from BTrees.OOBTree import OOBucket
from BTrees.OOBTree import OOBucketPy
from ZODB._compat import PersistentPickler
from ZODB._compat import PersistentUnpickler
from ZODB.ConflictResolution import PersistentReferenceFactory
from ZODB.ConflictResolution import find_global
from ZODB.ConflictResolution import persistent_id
from ZODB.POSException import BTreesConflictError


KINDS = {'bucket': OOBucket, 'tree': OOBTree, 'length': Length}


def load(text, factory):
    if text == '-':
        return None
    unpickler = PersistentUnpickler(
        find_global, factory.persistent_load, io.BytesIO(bytes.fromhex(text)))
    return unpickler.load()


def judge(line):
    kind, old, committed, new = line.split()
    factory = PersistentReferenceFactory()
    states = [load(s, factory) for s in (old, committed, new)]
    obj = KINDS[kind]()
    try:
        merged = obj._p_resolveConflict(*states)
    except BTreesConflictError as e:
        return 'conflict %d %d %d %d' % (e.p1, e.p2, e.p3, e.reason)
    except Exception as e:  # noqa: B902 any failure is a refusal; say which
        return 'error %s' % type(e).__name__
    out = io.BytesIO()
    PersistentPickler(persistent_id, out, 3).dump(merged)
    return 'ok ' + out.getvalue().hex()


def main():
    # The C code is what Python clients and servers run; the pure-Python fallback
    # (PURE_PYTHON=1) compares values with `==` only and differs on some cases.
    if OOBucket is OOBucketPy:
        sys.exit("BTrees' C extension is not in use")
    with open(sys.argv[1]) as cases:
        for line in cases:
            if line.strip():
                print(judge(line))


if __name__ == '__main__':
    main()
