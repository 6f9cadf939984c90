"""Print Python ZODB's reading of a FileStorage file as JSON lines.

    python dump_datafs.py PATH                 # transactions (default)
    python dump_datafs.py --history PATH       # history() of every oid
    python dump_datafs.py --load-before PATH   # loadBefore() of every oid/tid

The Rust interop tests print the same lines from the Rust engine and
compare them with this script's output byte for byte, so the shapes below
are a contract. The file is opened read-only (FileStorage(path,
read_only=True)): nothing is written next to it; an existing PATH.index
is used as Python would use it.

Every line is json.dumps(obj, ensure_ascii=False, separators=(',', ':'))
with keys in the order shown; oids and tids are 16 lower-case hex digits;
user and description are the raw bytes decoded as UTF-8 with
errors='replace'.

Default: one line per transaction of the storage iterator (which stops at
a 'c' or truncated tail transaction), in file order:

    {"tid":..,"status":" ","user":..,"description":..,
     "extension":"<hex of the raw extension bytes>",
     "records":[{"oid":..,"data_sha1":"<hex>"|null},..]}

data_sha1 is the SHA-1 of the record's data as the iterator yields it: a
backpointer record yields its target's data; null is a record that undoes
an object's creation (backpointer 0).

--history: for every oid in the storage's index, in ascending order,

    {"oid":..,"history":[{"tid":..,"user":..,"description":..,"size":N},..]}

from storage.history(oid, size=1000), newest first; size is the record's
data length (0 for backpointer records).

--load-before: for every oid in the index (ascending) and every tid of the
iterator plus 7fffffffffffffff (ascending), the result of
storage.loadBefore(oid, tid):

    {"oid":..,"before":..,"result":null}              no older revision
    {"oid":..,"before":..,"result":"poskey"}          POSKeyError
    {"oid":..,"before":..,"result":{"sha1":..,"start":..,"end":..|null}}
"""
import hashlib
import json
import sys

from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.utils import p64

USAGE = 'usage: dump_datafs.py [--history | --load-before] PATH'


def line(obj):
    print(json.dumps(obj, ensure_ascii=False, separators=(',', ':')))


def text(raw):
    return raw.decode('utf-8', errors='replace')


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def dump_transactions(storage):
    for txn in storage.iterator():
        line({
            'tid': txn.tid.hex(),
            'status': txn.status,
            'user': text(txn.user),
            'description': text(txn.description),
            # The iterator builds its records from the raw header bytes, so
            # extension_bytes is exactly what is in the file (not re-pickled).
            'extension': txn.extension_bytes.hex(),
            'records': [
                {'oid': rec.oid.hex(),
                 'data_sha1': None if rec.data is None else sha1(rec.data)}
                for rec in txn
            ],
        })


def dump_history(storage):
    for oid in sorted(storage._index.keys()):
        line({
            'oid': oid.hex(),
            'history': [
                {'tid': h['tid'].hex(),
                 'user': text(h['user_name']),
                 'description': text(h['description']),
                 'size': h['size']}
                for h in storage.history(oid, size=1000)
            ],
        })


def load_before(storage, oid, before):
    try:
        result = storage.loadBefore(oid, before)
    except POSKeyError:
        return 'poskey'
    if result is None:
        return None
    data, start, end = result
    return {'sha1': sha1(data), 'start': start.hex(),
            'end': None if end is None else end.hex()}


def dump_load_before(storage):
    tids = [txn.tid for txn in storage.iterator()]
    tids.append(p64(0x7fffffffffffffff))
    for oid in sorted(storage._index.keys()):
        for before in tids:
            line({'oid': oid.hex(), 'before': before.hex(),
                  'result': load_before(storage, oid, before)})


MODES = {
    '--history': dump_history,
    '--load-before': dump_load_before,
}


def main(argv):
    args = argv[1:]
    mode = dump_transactions
    if args and args[0] in MODES:
        mode = MODES[args.pop(0)]
    if len(args) != 1 or args[0].startswith('--'):
        sys.exit(USAGE)
    storage = FileStorage(args[0], read_only=True)
    try:
        mode(storage)
    finally:
        storage.close()


if __name__ == '__main__':
    main(sys.argv)
