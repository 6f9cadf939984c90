"""Copies of a whole database through ZEO, for the Rust server's copy tests.

    python zeo_copy.py make DATA_FS BLOB_DIR
        writes a history with Python's FileStorage: objects, transactions with
        users, descriptions and extensions of several kinds, blobs, an undo
        (whose records are backpointers) after a pack
    python zeo_copy.py copy SRC_FS HOST:PORT
        ClientStorage(HOST:PORT).copyTransactionsFrom(FileStorage(SRC_FS)), what
        zodbconvert does with a ZEO destination
    python zeo_copy.py fetch HOST:PORT CACHE_DIR DEST_FS DEST_BLOBS
        FileStorage(DEST_FS, blob_dir=DEST_BLOBS).copyTransactionsFrom(a
        ClientStorage with a blob cache): a copy out of the server that carries
        the blobs (each revision's file is sent by the server)
    python zeo_copy.py blobs DATA_FS BLOB_DIR
        prints "oid tid sha1" for every blob revision the file's history holds
        and "records N" with the number of data records read back, so two
        databases can be compared by their output
"""
import hashlib
import sys

import transaction
import ZEO.ClientStorage
import ZODB
import ZODB.blob
import ZODB.FileStorage
from persistent.mapping import PersistentMapping
from ZODB.utils import u64


def address(text):
    host, port = text.rsplit(':', 1)
    return (host, int(port))


def commit(user, note, **extension):
    txn = transaction.get()
    txn.user = user
    txn.note(note)
    for key, value in extension.items():
        txn.setExtendedInfo(key, value)
    txn.commit()


def write_blob(blob, data):
    with blob.open('w') as f:
        f.write(data)


def make(data_fs, blob_dir):
    storage = ZODB.FileStorage.FileStorage(data_fs, blob_dir=blob_dir)
    db = ZODB.DB(storage)
    conn = db.open()
    root = conn.root()
    root['pages'] = PersistentMapping()
    commit('admin', 'set up', tags=['a', 'b', 'a'], empty='', again='')
    for i in range(20):
        root['pages'][i] = PersistentMapping(title='page %d' % i, n=i)
        if i % 5 == 0:
            commit('editor %d' % i, 'pages up to %d' % i,
                   request='/@@add', size=i, ratio=i / 3.0, big=2 ** 40 + i,
                   nested={'k': 'v', 'n': [1, 2]}, ru='привет')
    commit('editor', 'the rest')
    db.pack()
    root['file'] = ZODB.blob.Blob()
    write_blob(root['file'], b'first version ' * 1000)
    commit('uploader', 'a file')
    write_blob(root['file'], b'second version ' * 2000)
    commit('uploader', 'a new version of the file')
    root['pages'][3]['title'] = 'changed'
    root['pages'][4]['title'] = 'changed too'
    commit('editor', 'titles')
    # Undoing "titles" writes backpointers to the records of the transaction
    # before it.
    last = db.undoLog(0, 1)[0]['id']
    db.undo(last)
    commit('admin', 'undo titles')
    root['pages'][5]['title'] = 'after the pack'
    commit('', '', only='extension')
    commit('nobody', 'nothing changed but the note')
    db.close()


def copy(src, addr):
    source = ZODB.FileStorage.FileStorage(src, read_only=True)
    dest = ZEO.ClientStorage.ClientStorage(address(addr), wait_timeout=30)
    dest.copyTransactionsFrom(source)
    dest.close()
    source.close()


def fetch(addr, cache, dest_fs, dest_blobs):
    source = ZEO.ClientStorage.ClientStorage(address(addr), blob_dir=cache,
                                             wait_timeout=30)
    dest = ZODB.FileStorage.FileStorage(dest_fs, blob_dir=dest_blobs)
    dest.copyTransactionsFrom(source)
    dest.close()
    source.close()


def blobs(data_fs, blob_dir):
    storage = ZODB.FileStorage.FileStorage(data_fs, blob_dir=blob_dir,
                                           read_only=True)
    records = 0
    for txn in storage.iterator():
        for record in txn:
            records += 1
            if not ZODB.blob.is_blob_record(record.data):
                continue
            path = storage.loadBlob(record.oid, record.tid)
            with open(path, 'rb') as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            print(u64(record.oid), u64(record.tid), digest)
    print('records', records)
    storage.close()


def main(argv):
    commands = {'make': make, 'copy': copy, 'fetch': fetch, 'blobs': blobs}
    commands[argv[1]](*argv[2:])


if __name__ == '__main__':
    main(sys.argv)
