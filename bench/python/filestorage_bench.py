"""Python half of the side-by-side FileStorage benchmark (ZODB 6.4).

    python filestorage_bench.py --dir DIR [--objects N] [--commits N] [--samples N]

Measures real ZODB 6.4 FileStorage at the storage level (no DB or
Connection): every commit is tpc_begin(TransactionMetaData()), store(oid,
z64, data, '', txn) per object (all objects new), tpc_vote, tpc_finish
(Python's one fsync per transaction happens there, after the status byte
is written). Every record is the same ~100-byte 2-pickle record:

    b'\\x80\\x03cbbru.bench\\nItem\\n.' + pickle.dumps({'n': i, 'text': 'x' * 44}, 3)

(i = the object's number; 100 bytes for i = 1, stdlib pickle, memo opcodes
included). Prints ONE JSON object on stdout; the Rust half prints the same
keys. Results:

  commit_1_per_s          (a) transactions/s, 1 new object each (--commits txns)
  commit_100_per_s        (b) transactions/s, 100 new objects each (--commits txns)
  objects_100_per_s       (b) objects/s of the same run
  load_before_warm_per_s  (c) loadBefore(oid, last tid + 1)/s over --samples
                          random distinct oids of the big file, second and
                          third pass in the same open storage
  load_before_cold_per_s  (c) the first pass: fresh process, fresh read-only
                          open, first touch of those oids (see cold_cache)
  open_with_index_s       (d) read-only open of the big file (--objects
                          objects, 1000 per transaction) with its .index,
                          in a fresh process
  open_without_index_s    (d) the same without the .index (full file scan)
  index_bytes_per_object  (e) resident-memory growth of the open with
                          .index divided by --objects

Context keys: implementation, objects, commits, samples, record_bytes
(mean record data length), build_big_s (writing the big file), cold_cache
("dropped" when `sync; echo 1 > /proc/sys/vm/drop_caches` worked before
each fresh open, else "not dropped: <reason>", i.e. the file may be in the
OS page cache), index_memory_method.

All files are written in DIR (created if missing; the ones this script
makes are deleted at the end; the big file needs ~150 MB). The default
sizes take about 15 s on a 2-core VM with fast fsync; fsync latency
dominates (a) and (b) on slower disks.
"""
import argparse
import gc
import json
import os
import pickle
import random
import subprocess
import sys
import time

from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64, u64, z64

CLASS_PICKLE = b'\x80\x03cbbru.bench\nItem\n.'
OBJECTS_PER_BIG_TXN = 1000
INDEX_MEMORY_METHOD = ('RSS growth (/proc/self/statm) across FileStorage(path, '
                       'read_only=True) with .index, after gc.collect(), in a '
                       'fresh process')


def record(n):
    return CLASS_PICKLE + pickle.dumps({'n': n, 'text': 'x' * 44}, 3)


def commit(storage, records):
    """One transaction storing `records` (a list of data) as new objects."""
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    for data in records:
        storage.store(storage.new_oid(), z64, data, '', txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)


def remove_storage_files(path):
    for suffix in ('', '.index', '.lock', '.tmp', '.old'):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def commit_rate(path, commits, per_txn):
    """Transactions per second for `commits` transactions of `per_txn`
    new objects each, in a new storage."""
    remove_storage_files(path)
    storage = FileStorage(path, create=True)
    try:
        batches = [[record(i * per_txn + j + 1) for j in range(per_txn)]
                   for i in range(commits)]
        start = time.perf_counter()
        for batch in batches:
            commit(storage, batch)
        elapsed = time.perf_counter() - start
    finally:
        storage.close()
        remove_storage_files(path)
    return commits / elapsed


def build_big(path, objects):
    """Write `objects` new objects, OBJECTS_PER_BIG_TXN per transaction;
    closing saves the .index. Returns (seconds, mean record length)."""
    remove_storage_files(path)
    storage = FileStorage(path, create=True)
    total = 0
    start = time.perf_counter()
    try:
        for first in range(1, objects + 1, OBJECTS_PER_BIG_TXN):
            last = min(first + OBJECTS_PER_BIG_TXN, objects + 1)
            batch = [record(n) for n in range(first, last)]
            total += sum(map(len, batch))
            commit(storage, batch)
    finally:
        storage.close()
    return time.perf_counter() - start, total / objects


def drop_os_cache():
    """Try to empty the OS page cache; returns the cold_cache value."""
    try:
        os.sync()
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('1\n')
        return 'dropped'
    except OSError as e:
        return f'not dropped: {e}'


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def probe(path, objects, samples):
    """Runs in a fresh process: open time, RSS growth, and loadBefore rates
    (first pass = cold, next two passes = warm)."""
    gc.collect()
    rss0 = rss_bytes()
    start = time.perf_counter()
    storage = FileStorage(path, read_only=True)
    open_s = time.perf_counter() - start
    gc.collect()
    result = {'open_s': open_s, 'rss_growth': rss_bytes() - rss0}
    if samples:
        oids = [p64(n) for n in
                random.Random(42).sample(range(1, objects + 1), samples)]
        before = p64(u64(storage.lastTransaction()) + 1)
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            for oid in oids:
                storage.loadBefore(oid, before)
            rates.append(samples / (time.perf_counter() - start))
        result['cold_per_s'] = rates[0]
        result['warm_per_s'] = 2 / (1 / rates[1] + 1 / rates[2])
    storage.close()
    return result


def run_probe(path, objects, samples):
    cmd = [sys.executable, os.path.abspath(__file__), '--probe', path,
           '--dir', os.path.dirname(path),
           '--objects', str(objects), '--samples', str(samples)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'probe process failed ({proc.returncode}): {" ".join(cmd)}\n'
                 f'{proc.stderr}')
    return json.loads(proc.stdout)


def main():
    parser = argparse.ArgumentParser(
        description='Python ZODB 6.4 FileStorage benchmark (see the docstring).')
    parser.add_argument('--dir', required=True,
                        help='directory for the benchmark files')
    parser.add_argument('--objects', type=int, default=1_000_000,
                        help='objects in the big file (default 1000000)')
    parser.add_argument('--commits', type=int, default=5000,
                        help='transactions in each commit test (default 5000)')
    parser.add_argument('--samples', type=int, default=100_000,
                        help='distinct random oids for loadBefore (default '
                             '100000, at most --objects)')
    # Internal: the fresh process that run_probe starts.
    parser.add_argument('--probe', metavar='PATH', help=argparse.SUPPRESS)
    args = parser.parse_args()
    samples = min(args.samples, args.objects)
    if args.probe:
        print(json.dumps(probe(args.probe, args.objects, samples)))
        return
    if min(args.objects, args.commits, args.samples) < 1:
        parser.error('--objects, --commits and --samples must be >= 1')

    os.makedirs(args.dir, exist_ok=True)
    results = {
        'implementation': 'python ZODB 6.4 FileStorage',
        'objects': args.objects,
        'commits': args.commits,
        'samples': samples,
    }
    results['commit_1_per_s'] = commit_rate(
        os.path.join(args.dir, 'commit1.fs'), args.commits, 1)
    rate = commit_rate(os.path.join(args.dir, 'commit100.fs'), args.commits, 100)
    results['commit_100_per_s'] = rate
    results['objects_100_per_s'] = rate * 100

    big = os.path.join(args.dir, 'big.fs')
    try:
        results['build_big_s'], results['record_bytes'] = build_big(
            big, args.objects)

        results['cold_cache'] = drop_os_cache()
        with_index = run_probe(big, args.objects, samples)
        results['open_with_index_s'] = with_index['open_s']
        results['load_before_cold_per_s'] = with_index['cold_per_s']
        results['load_before_warm_per_s'] = with_index['warm_per_s']
        results['index_bytes_per_object'] = with_index['rss_growth'] / args.objects
        results['index_memory_method'] = INDEX_MEMORY_METHOD

        os.remove(big + '.index')
        drop_os_cache()
        results['open_without_index_s'] = run_probe(big, args.objects, 0)['open_s']
    finally:
        remove_storage_files(big)

    print(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
