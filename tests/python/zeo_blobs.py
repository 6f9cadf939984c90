"""Blobs through a real ZEO ClientStorage, for the Rust server's blob tests.

    python zeo_blobs.py write HOST:PORT BLOB_DIR MODE SIZE
        commits root['b'] = a Blob of SIZE bytes (a fixed pattern), then
        prints "sha1 SIZE" of what it wrote
    python zeo_blobs.py read HOST:PORT BLOB_DIR MODE
        prints "sha1 SIZE" of root['b']'s bytes, read through the client

MODE is "cache" (BLOB_DIR is the client's own blob cache: files travel
over the connection) or "shared" (BLOB_DIR is the server's blob directory,
which the client reads and writes itself).  A fourth command reads the same
object from a Data.fs and blob directory with ZODB's own FileStorage:

    python zeo_blobs.py local DATA_FS BLOB_DIR
"""
import hashlib
import sys

import transaction
import ZEO
import ZODB
import ZODB.blob
import ZODB.FileStorage


def address(text):
    host, port = text.rsplit(':', 1)
    return (host, int(port))


def open_db(addr, blob_dir, mode):
    return ZEO.DB(address(addr), blob_dir=blob_dir,
                  shared_blob_dir=(mode == 'shared'), wait_timeout=10)


def pattern(size):
    unit = bytes(range(256)) * 16
    return (unit * (size // len(unit) + 1))[:size]


def report(data):
    print(hashlib.sha1(data).hexdigest(), len(data))


def write(addr, blob_dir, mode, size):
    db = open_db(addr, blob_dir, mode)
    conn = db.open()
    data = pattern(int(size))
    blob = ZODB.blob.Blob()
    with blob.open('w') as f:
        f.write(data)
    conn.root()['b'] = blob
    transaction.commit()
    report(data)
    db.close()


def read_root_blob(db):
    conn = db.open()
    with conn.root()['b'].open('r') as f:
        data = f.read()
    report(data)
    db.close()


def read(addr, blob_dir, mode):
    read_root_blob(open_db(addr, blob_dir, mode))


def local(data_fs, blob_dir):
    read_root_blob(ZODB.DB(ZODB.FileStorage.FileStorage(data_fs, blob_dir=blob_dir)))


if __name__ == '__main__':
    {'write': write, 'read': read, 'local': local}[sys.argv[1]](*sys.argv[2:])
