"""Pack a FileStorage file with real Python ZODB 6.4.

    python pack_datafs.py PATH UNIX_SECONDS [--no-gc]

The Rust interop tests run this on a copy of a file and compare the result
with a Rust pack at the same time, or check that the Rust engine reads a
Python-packed file. Opens PATH read-write, calls
storage.pack(UNIX_SECONDS, referencesf) (with gc=False for --no-gc) and
closes. Python leaves the pre-pack file as PATH.old (when something was
packed) and writes PATH.index; PATH.lock and PATH.tmp are removed.
Prints nothing on success; on failure Python's traceback goes to stderr and
the exit code is 1.
"""
import argparse
import os

from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf


def main():
    parser = argparse.ArgumentParser(
        description='Pack a FileStorage file with Python ZODB.')
    parser.add_argument('path', help='the Data.fs to pack in place')
    parser.add_argument('time', type=float, metavar='UNIX_SECONDS',
                        help='pack time (float seconds since the epoch, UTC)')
    parser.add_argument('--no-gc', action='store_true',
                        help='keep unreachable objects (gc=False)')
    args = parser.parse_args()
    if not os.path.isfile(args.path):
        parser.error(f'no such file: {args.path}')
    storage = FileStorage(args.path)
    try:
        storage.pack(args.time, referencesf, gc=not args.no_gc)
    finally:
        storage.close()
    for suffix in ('.lock', '.tmp'):
        if os.path.exists(args.path + suffix):
            os.remove(args.path + suffix)


if __name__ == '__main__':
    main()
