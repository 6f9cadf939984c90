"""Blobs through Python ZODB's own FileStorage, for the Rust blob tests.

    python blobs.py write DATA_FS BLOB_DIR   commits root['b'] = Blob(b'first'),
                                             then rewrites it to b'second';
                                             prints "OID SERIAL1 SERIAL2" in hex
    python blobs.py read DATA_FS BLOB_DIR    prints the current bytes of
                                             root['b'] and of every revision
                                             in its history, one a line,
                                             newest first, as
                                             "SERIAL_HEX BYTES_REPR"
"""
import sys

import transaction
import ZODB
import ZODB.blob
import ZODB.FileStorage


def open_db(data_fs, blob_dir):
    storage = ZODB.FileStorage.FileStorage(data_fs, blob_dir=blob_dir)
    return ZODB.DB(storage), storage


def write(data_fs, blob_dir):
    db, storage = open_db(data_fs, blob_dir)
    conn = db.open()
    blob = ZODB.blob.Blob(b'first')
    conn.root()['b'] = blob
    transaction.commit()
    with blob.open('w') as f:
        f.write(b'second')
    transaction.commit()
    second, first = [h['tid'] for h in storage.history(blob._p_oid, size=2)]
    print(blob._p_oid.hex(), first.hex(), second.hex())
    db.close()


def read(data_fs, blob_dir):
    db, storage = open_db(data_fs, blob_dir)
    conn = db.open()
    blob = conn.root()['b']
    with blob.open('r') as f:
        print('current', repr(f.read()))
    for h in storage.history(blob._p_oid, size=10):
        with open(storage.loadBlob(blob._p_oid, h['tid']), 'rb') as f:
            print(h['tid'].hex(), repr(f.read()))
    db.close()


if __name__ == '__main__':
    {'write': write, 'read': read}[sys.argv[1]](*sys.argv[2:])
