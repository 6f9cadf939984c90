"""Check that Python ZODB 6.4 fully accepts a FileStorage file.

    python verify_datafs.py PATH [--blob-dir DIR]

The Rust interop tests run this on files the Rust engine wrote (and after
Rust packs) and assert that it prints "ok" and exits 0. It works on
copies in a temporary directory (PATH.index is copied too when present,
so Python also reads the Rust-written index); nothing is written next to
PATH (nor in DIR, the blob directory of a file with blobs, which is copied
too). Steps, on the copy:

  1. python -m ZODB.scripts.fstest COPY        must exit 0
  2. python -m ZODB.scripts.fsrefs COPY        must print nothing
  3. ZODB.DB(FileStorage(COPY)): load the root and every oid of the index
     (conn.get + _p_activate; unknown classes load as broken objects,
     which is fine; an oid whose creation was undone raises POSKeyError
     on load and is skipped), then commit root['python_was_here'] = True
  4. fstest and fsrefs again
  5. pack a second copy with GC at time.time(), then fstest and fsrefs

Prints "ok" and exits 0, or prints "FAILED at <step>: <details>" (and a
traceback on stderr) and exits 1. Out of scope: files with cross-database
references (loading them needs the other database; fstest and fsrefs
accept them).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import transaction

import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf


class StepFailed(Exception):
    pass


def copy(src, dst, blob_src, blob_dst):
    shutil.copyfile(src, dst)
    if os.path.exists(src + '.index'):
        shutil.copyfile(src + '.index', dst + '.index')
    if blob_src:
        # Writable copy even of a read-only tree (copytree copies dir modes).
        shutil.copytree(blob_src, blob_dst, copy_function=shutil.copyfile)
        for directory, _, _ in os.walk(blob_dst):
            os.chmod(directory, 0o755)


def run_script(module, path, expect_silent):
    proc = subprocess.run([sys.executable, '-m', module, path],
                          capture_output=True, text=True)
    if proc.returncode != 0 or (expect_silent and proc.stdout.strip()):
        raise StepFailed(
            f'{module} exited {proc.returncode}\n'
            f'--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}')


def check_scripts(path):
    run_script('ZODB.scripts.fstest', path, expect_silent=False)
    run_script('ZODB.scripts.fsrefs', path, expect_silent=True)


def load_everything_and_commit(path, blob_dir):
    storage = FileStorage(path, blob_dir=blob_dir)
    db = ZODB.DB(storage)
    try:
        conn = db.open()
        root = conn.root()
        for oid in sorted(storage._index.keys()):
            try:
                storage.load(oid)
            except POSKeyError:
                continue  # current record undoes the object's creation
            conn.get(oid)._p_activate()
        root['python_was_here'] = True
        transaction.commit()
        conn.close()
    finally:
        db.close()


def pack_with_gc(path, blob_dir):
    storage = FileStorage(path, blob_dir=blob_dir)
    try:
        storage.pack(time.time(), referencesf)
    finally:
        storage.close()


def steps(path, blob_dir, tmp):
    work = os.path.join(tmp, 'work.fs')
    packed = os.path.join(tmp, 'packed.fs')
    work_blobs = os.path.join(tmp, 'work.blobs') if blob_dir else None
    packed_blobs = os.path.join(tmp, 'packed.blobs') if blob_dir else None
    return [
        ('copy to a temporary directory',
         lambda: copy(path, work, blob_dir, work_blobs)),
        ('fstest/fsrefs of the file', lambda: check_scripts(work)),
        ('load every object and commit on top',
         lambda: load_everything_and_commit(work, work_blobs)),
        ('fstest/fsrefs after the Python commit', lambda: check_scripts(work)),
        ('copy for the pack',
         lambda: copy(work, packed, work_blobs, packed_blobs)),
        ('GC pack at time.time()', lambda: pack_with_gc(packed, packed_blobs)),
        ('fstest/fsrefs after the pack', lambda: check_scripts(packed)),
    ]


def main(argv):
    parser = argparse.ArgumentParser(
        description='Check that Python ZODB accepts a FileStorage file.')
    parser.add_argument('path', help='the Data.fs to check (never modified)')
    parser.add_argument('--blob-dir', help='its blob directory (never modified)')
    args = parser.parse_args(argv[1:])
    if not os.path.isfile(args.path):
        parser.error(f'no such file: {args.path}')
    if args.blob_dir and not os.path.isdir(args.blob_dir):
        parser.error(f'no such directory: {args.blob_dir}')
    with tempfile.TemporaryDirectory(prefix='verify_datafs.') as tmp:
        for step, action in steps(args.path, args.blob_dir, tmp):
            try:
                action()
            except StepFailed as e:
                print(f'FAILED at {step}: {e}')
                sys.exit(1)
            except Exception as e:
                traceback.print_exc()
                print(f'FAILED at {step}: {type(e).__name__}: {e}')
                sys.exit(1)
    print('ok')


if __name__ == '__main__':
    main(sys.argv)
