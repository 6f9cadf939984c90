"""Write a deterministic Data.fs with real Python ZODB 6.4.

    python make_datafs.py OUT_PATH

The Rust interop tests run this to get a file Python wrote and then read,
dump, pack and extend it with the Rust engine, comparing against
dump_datafs.py. Only stock classes are used (PersistentMapping,
PersistentList, OOBTree), so Python can load every object afterwards.

Transaction ids are deterministic: the clock that ZODB.BaseStorage and
ZODB.FileStorage read is replaced by a fake one (start 2026-03-04
05:06:07.25 UTC, advanced 60.25 s before each commit), so the same ZODB
versions write the same bytes every time.

Content, in commit order:

  T1   'initial database creation' (root PersistentMapping, oid 0)
  T2   user 'Jürgen 日本', description 'änderung ✓', an extension dict:
       root['config'] = PersistentMapping holding a PersistentList,
       root['tree'] = OOBTree of 300 keys (split into many OOBuckets)
  T3   config and its list changed, some tree keys (first buckets) changed
  T4   root['scratch'] = new PersistentList, config changed
  T5   undo of T4 (backpointer records; scratch's creation undone)
  T6   root['garbage'] = PersistentMapping holding a PersistentList
  T7   root['garbage'] deleted: both objects are now unreachable
       -- pack time (T7 + 1 s) --
  T8   config changed (after the pack time, before the pack runs)
  pack with GC at the pack time: T1, old revisions, the undone and the
       garbage objects go; T8 is copied unchanged
  T9   tree keys deleted (middle buckets) and one added (last bucket)
  T10  root['late'] = a new PersistentMapping
  T11  undo of T10: after the pack too, so the final file still has a
       backpointer record (root) and an undone creation ('late': no data,
       loadBefore raises POSKeyError)

OUT_PATH must not exist. Leaves OUT_PATH and OUT_PATH.index (no .old,
.lock or .tmp). Prints one JSON line: {"pack_time": <unix seconds>}.
"""
import json
import os
import sys
import time as _realtime

import transaction
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

import ZODB
import ZODB.BaseStorage
import ZODB.FileStorage.FileStorage as FSmod
from ZODB.FileStorage import FileStorage


class FakeClock:
    """Stands in for the `time` module in ZODB.BaseStorage/FileStorage."""

    gmtime = staticmethod(_realtime.gmtime)
    localtime = staticmethod(_realtime.localtime)
    sleep = staticmethod(_realtime.sleep)

    def __init__(self, start):
        self.now = start

    def time(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


CLOCK = FakeClock(1772600767.25)  # 2026-03-04 05:06:07.25 UTC


def commit(user='', description='', ext=None):
    CLOCK.advance(60.25)
    txn = transaction.get()
    txn.user = user
    txn.description = description
    for key, value in (ext or {}).items():
        txn.setExtendedInfo(key, value)
    txn.commit()


def make(path):
    db = ZODB.DB(FileStorage(path, pack_keep_old=False))  # T1
    conn = db.open()
    root = conn.root()

    root['config'] = config = PersistentMapping({'title': 'Grüße'})
    config['list'] = PersistentList([1, 2, 3])
    root['tree'] = tree = OOBTree()
    for i in range(300):
        tree['key%04d' % i] = 'value %d' % i
    commit('Jürgen 日本', 'änderung ✓',
           {'note': 'bbru interop ✓', 'n': 2, 'tags': ['a', 'ü']})

    config['title'] = 'Grüße, Welt'
    config['list'].append(4)
    for i in range(0, 40, 3):
        tree['key%04d' % i] = 'changed %d' % i
    commit('bob', 'T3 changes config, list, tree')

    root['scratch'] = PersistentList(['temporary'])
    config['title'] = 'changed in T4'
    commit('carol', 'T4 adds scratch')

    db.undo(db.undoLog(0, 1)[0]['id'])
    commit('dave', 'undo T4')

    root['garbage'] = PersistentMapping({'junk': PersistentList(['x' * 40])})
    commit('erin', 'T6 adds garbage')
    del root['garbage']
    commit('erin', 'T7 drops garbage')
    pack_time = CLOCK.now + 1.0

    CLOCK.advance(10)
    config['title'] = 'after the pack time'
    commit('frank', 'T8 after the pack time')

    db.pack(pack_time)

    for i in range(100, 200, 11):
        del tree['key%04d' % i]
    tree['zzz'] = 'added after the pack'
    commit('gina', 'T9 after the pack')
    root['late'] = PersistentMapping({'when': 'after the pack'})
    commit('hugo', 'T10 after the pack')
    db.undo(db.undoLog(0, 1)[0]['id'])
    commit('hugo', 'T11 undo T10')

    conn.close()
    db.close()
    return pack_time


def main(argv):
    if len(argv) != 2:
        sys.exit('usage: make_datafs.py OUT_PATH')
    path = argv[1]
    if os.path.exists(path):
        sys.exit(f'make_datafs.py: {path} already exists; refusing to overwrite it')
    ZODB.BaseStorage.time = CLOCK
    FSmod.time = CLOCK
    pack_time = make(path)
    for suffix in ('.lock', '.tmp'):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    print(json.dumps({'pack_time': pack_time}))


if __name__ == '__main__':
    main(sys.argv)
