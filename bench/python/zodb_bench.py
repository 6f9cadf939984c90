"""Python half of the side-by-side persistence-layer benchmark: zodbshootout's
measures for ZODB 6.4 (DB, Connection, persistent objects) on FileStorage.

    python zodb_bench.py --dir DIR [--objects N] [--rounds R] [--postgres DSN]

With --postgres the storage is RelStorage 4.3 (history-preserving, no blobs,
its default caches) on the PostgreSQL database DSN names, emptied at the
start (zap_all), instead of a FileStorage: "open a FileStorage" below reads
"open a RelStorage", whose caches start empty each time (no persistent
cache is configured), so cold loads come from the database. The Rust half
then runs on PgStorage (bench/pg/run.sh).

The Rust half (the zodb-bench binary, crate `zodb` on bbru's FileStorage)
does the same work and prints the same JSON keys; bench/zodb/run.sh runs
both and compares them. zodbshootout itself is not used (see the "ZEO
server" section of BENCHMARKS.md for why); this is its workload for one
client, on an embedded FileStorage.

Objects. Both classes are pickled as module `bbru.bench` (this script
registers a module of that name so that ZODB's pickler and unpickler find
the classes), so the class pickles are the same on both sides:

  bbru.bench.PObject  a Persistent with state {'attr': 1, 'data': '%032d' % k}
                      (k = the object's number, unique over the run)
  bbru.bench.Holder   a Persistent with state {'items': [PObject, ...]}: a
                      plain list of N persistent references ((oid, class)
                      form); the container of one round's objects

The states are the same dicts on both sides; the records differ only by
the pickle memo opcodes Python's pickler writes (BINPUT/BINGET) and bbru's
encoder does not (so Python's PObject records are a few bytes longer, and
its Holder records shorter: the class of each reference is a BINGET).
object_record_bytes and holder_record_bytes report the lengths.

Each DB is ZODB.DB(FileStorage(path), cache_size=100000): an object cache
holding every object of the run (ZODB's default of 400 would ghostify most
of them at each transaction boundary); the Rust half sets the same
cache_objects. The storage file is DIR/zodb-bench.fs, new at the start
(removed at the end); the OS page cache is never dropped.

R rounds (default 10), each on N fresh objects (default 1000, zodbshootout's
objects per transaction). One round, with the phase timings in [brackets]
(time.perf_counter around exactly the bracketed work):

  1. open a FileStorage and a DB on the file (untimed)
  2. add     [open a connection, begin, create N PObjects (attr = 1, data
             strings prepared before the timer) and a Holder of them, set
             root['round-%03d' % r] = holder, commit]  (the root, the
             holder and the N objects are stored: N + 2 records, one sync)
  3. update  [begin, root -> holder, set attr = 2 on each of the N objects,
             commit]  (N records, one sync); then close the connection,
             the DB and the storage (untimed)
  4. cold    open a new FileStorage and a new DB on the file (untimed: it
             reads the .index); then [open a connection, begin, root ->
             holder -> read attr of each of the N objects, end the
             transaction]: N + 2 loads and unpicklings, empty object cache
  5. warm    empty the connection's object cache (conn.cacheMinimize():
             every object becomes a ghost; Rust: clear_cache), then
             [begin, root -> holder -> read attr of each object, end]:
             N + 2 loads again, from the OS page cache (FileStorage has no
             cache of its own)
  6. hot     [begin, root -> holder -> read attr of each object, end]: all
             objects are in the connection's cache; no storage access
  7. close the connection, the DB and the storage (untimed)

Every read phase checks that it read N objects with attr == 2 each (the
sum must be 2 N) and fails otherwise.

Prints ONE JSON object on stdout:

  implementation        "python ZODB 6.4" (the Rust half: "bbru-rust")
  objects, rounds       N and R
  object_record_bytes   mean record length of round 1's N PObjects (after update)
  holder_record_bytes   record length of round 1's Holder
  <phase>_us_per_object for phase in add, update, cold, warm, hot: the median
                        over the R rounds of (phase time / N), microseconds
  <phase>_per_s         N / (median phase time): objects per second
  samples_us_per_object {phase: [the R per-round values, in round order]}
"""
import argparse
import json
import os
import statistics
import sys
import time
import types

import transaction
import ZODB
from persistent import Persistent
from ZODB.FileStorage import FileStorage

PHASES = ('add', 'update', 'cold', 'warm', 'hot')
CACHE_OBJECTS = 100_000
MODULE = 'bbru.bench'


class PObject(Persistent):
    def __init__(self, attr, data):
        self.attr = attr
        self.data = data


class Holder(Persistent):
    def __init__(self, items):
        self.items = items


def register_module():
    """Make `bbru.bench` importable and the home of PObject and Holder, so the
    records name the same classes as the Rust half's."""
    package = sys.modules.setdefault('bbru', types.ModuleType('bbru'))
    module = types.ModuleType(MODULE)
    for cls in (PObject, Holder):
        cls.__module__ = MODULE
        setattr(module, cls.__name__, cls)
    package.bench = module
    sys.modules[MODULE] = module


def remove_storage_files(path):
    for suffix in ('', '.index', '.lock', '.tmp', '.old'):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


POSTGRES = None


def open_db(path):
    if POSTGRES is not None:
        return ZODB.DB(open_relstorage(POSTGRES), cache_size=CACHE_OBJECTS)
    return ZODB.DB(FileStorage(path), cache_size=CACHE_OBJECTS)


def open_relstorage(dsn):
    from psycopg2.extensions import parse_dsn
    from relstorage.adapters.postgresql import PostgreSQLAdapter
    from relstorage.options import Options
    from relstorage.storage import RelStorage
    # RelStorage appends to the DSN: libpq's key=value form, not a URL.
    dsn = ' '.join('%s=%s' % kv for kv in parse_dsn(dsn).items())
    options = Options(keep_history=True, create_schema=True)
    return RelStorage(PostgreSQLAdapter(dsn=dsn, options=options), options=options)


def read_all(conn, tm, key, n):
    """One read transaction over the round's objects; returns the count."""
    tm.begin()
    total = 0
    count = 0
    for obj in conn.root()[key].items:
        total += obj.attr
        count += 1
    tm.abort()
    if count != n or total != 2 * n:
        raise AssertionError(f'{key}: read {count} objects with attr sum {total}, '
                             f'expected {n} and {2 * n}')
    return count


def one_round(path, r, n, first_k, times, sizes):
    key = 'round-%03d' % r
    data = ['%032d' % k for k in range(first_k, first_k + n)]

    db = open_db(path)
    try:
        tm = transaction.TransactionManager(explicit=True)
        start = time.perf_counter()
        conn = db.open(tm)
        tm.begin()
        holder = Holder([PObject(1, d) for d in data])
        conn.root()[key] = holder
        tm.commit()
        times['add'].append(time.perf_counter() - start)

        start = time.perf_counter()
        tm.begin()
        for obj in conn.root()[key].items:
            obj.attr = 2
        tm.commit()
        times['update'].append(time.perf_counter() - start)

        if not sizes:
            storage = db.storage
            sizes['holder'] = len(storage.load(holder._p_oid)[0])
            sizes['object'] = sum(len(storage.load(o._p_oid)[0])
                                  for o in holder.items) / n
        del holder
        conn.close()
    finally:
        db.close()

    db = open_db(path)
    try:
        tm = transaction.TransactionManager(explicit=True)
        start = time.perf_counter()
        conn = db.open(tm)
        read_all(conn, tm, key, n)
        times['cold'].append(time.perf_counter() - start)

        conn.cacheMinimize()
        start = time.perf_counter()
        read_all(conn, tm, key, n)
        times['warm'].append(time.perf_counter() - start)

        start = time.perf_counter()
        read_all(conn, tm, key, n)
        times['hot'].append(time.perf_counter() - start)
        conn.close()
    finally:
        db.close()


def main():
    parser = argparse.ArgumentParser(
        description='ZODB 6.4 persistence-layer benchmark (see the docstring).')
    parser.add_argument('--dir', required=True, help='directory for the storage file')
    parser.add_argument('--objects', type=int, default=1000,
                        help='objects per round (default 1000)')
    parser.add_argument('--rounds', type=int, default=10,
                        help='rounds; the medians are over them (default 10)')
    parser.add_argument('--postgres', help='RelStorage on this PostgreSQL DSN')
    args = parser.parse_args()
    global POSTGRES
    POSTGRES = args.postgres
    if POSTGRES is not None:
        storage = open_relstorage(POSTGRES)
        storage.zap_all()
        storage.close()
    if args.objects < 1 or args.rounds < 1:
        parser.error('--objects and --rounds must be >= 1')
    register_module()

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, 'zodb-bench.fs')
    remove_storage_files(path)
    times = {phase: [] for phase in PHASES}
    sizes = {}
    try:
        for r in range(args.rounds):
            one_round(path, r, args.objects, r * args.objects + 1, times, sizes)
    finally:
        remove_storage_files(path)

    n = args.objects
    results = {
        'implementation': 'python ZODB 6.4' + (' on RelStorage 4.3' if POSTGRES else ''),
        'objects': n,
        'rounds': args.rounds,
        'object_record_bytes': sizes['object'],
        'holder_record_bytes': sizes['holder'],
    }
    for phase in PHASES:
        median = statistics.median(times[phase])
        results[f'{phase}_us_per_object'] = median / n * 1e6
        results[f'{phase}_per_s'] = n / median
    results['samples_us_per_object'] = {
        phase: [t / n * 1e6 for t in times[phase]] for phase in PHASES}
    print(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
