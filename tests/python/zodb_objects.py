"""Python ZODB 6.4's view of a database the Rust persistence layer wrote.

    python zodb_objects.py read PATH     print a JSON summary of the objects
    python zodb_objects.py write PATH    commit changes made with Python's own classes
    python zodb_objects.py pack PATH     pack with garbage collection at time.time()

The database layout is the one the Rust test `persistence::python` writes: root['site'] a
`bbru.content.Folder` (unknown to Python: a broken object) whose state holds a title and
'items', a reference to a real `BTrees.OOBTree.OOBTree` of page id -> `bbru.content.Page`
(broken objects too), root['list'] a PersistentList, root['counts'] a PersistentMapping.

`read` also runs `BTrees.check.check` on the tree, `fstest` and `fsrefs` on the file, and
prints their verdicts in the summary; the Rust test compares the summary with what it
wrote. `write` inserts a page id into the tree with Python's BTrees code and appends to
the list, so the Rust side then reads records Python wrote into its structures.
"""
import json
import subprocess
import sys
import time

import transaction
import ZODB
from BTrees.check import check
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf


def broken_state(obj):
    # Unknown classes load as ZODB.broken objects keeping their state.
    obj._p_activate()
    return obj.__Broken_state__


def read(path):
    db = ZODB.DB(FileStorage(path, read_only=True))
    conn = db.open()
    root = conn.root()
    site = root['site']
    state = broken_state(site)
    tree = state['items']
    check(tree)          # raises AssertionError on any structural fault
    tree._check()
    pages = {}
    for key, page in tree.items():
        pages[key] = broken_state(page)['title']
    summary = {
        'root_keys': sorted(root.keys()),
        'site_class': type(site).__module__ + '.' + type(site).__name__,
        'site_title': state['title'],
        'tree_class': type(tree).__module__ + '.' + type(tree).__name__,
        'tree_len': len(tree),
        'pages': pages,
        'list': list(root['list']),
        'counts': dict(root['counts']),
    }
    conn.close()
    db.close()
    for module in ('ZODB.scripts.fstest', 'ZODB.scripts.fsrefs'):
        proc = subprocess.run([sys.executable, '-m', module, path],
                              capture_output=True, text=True)
        summary[module.rsplit('.', 1)[1]] = [proc.returncode, proc.stdout + proc.stderr]
    print(json.dumps(summary, sort_keys=True))


def write(path):
    db = ZODB.DB(FileStorage(path))
    conn = db.open()
    root = conn.root()
    tree = broken_state(root['site'])['items']
    # A reference to an existing page under a new key: Python writes the bucket.
    tree['zz-python'] = tree[min(tree.keys())]
    root['list'].append('from python')
    transaction.get().note('python was here')
    transaction.commit()
    conn.close()
    db.close()
    print('ok')


def pack(path):
    storage = FileStorage(path)
    storage.pack(time.time(), referencesf)
    storage.close()
    print('ok')


if __name__ == '__main__':
    {'read': read, 'write': write, 'pack': pack}[sys.argv[1]](sys.argv[2])
