"""Blob throughput through ZEO: Python's runzeo and bbru-zeo, same client, same run.

    python bench/zeo/blobs.py BBRU_ZEO [--count N] [--mib M] [--rounds R] [--dir DIR]

For each server and each of ZEO's two blob modes, one Python ZODB client
(ZEO 6.2 ClientStorage through ZODB.DB):

  store  commits N blobs of M MiB, one transaction each (cache mode: the
         client uploads each file in chunks, storeBlobStart/Chunk/End;
         shared mode: it writes into the server's blob directory and sends
         storeBlobShared)
  load   a second client with an empty blob cache reads every blob to the
         end (cache mode: the server streams each file, sendBlob; shared
         mode: the client opens the server's file itself)

and prints MB/s (10^6 bytes per second of wall time) and the server's CPU time
per MB (/proc/PID/stat utime+stime) per phase, the median of R rounds, servers
interleaved (python, bbru, python, bbru, ...) so a slow spell hits both.
Ratio > 1: bbru-zeo is faster. Each round gets fresh files and servers on free
ports; the servers run from tests/python/zeo/server.py.
"""
import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'python', 'zeo'))

import transaction  # noqa: E402
import ZEO  # noqa: E402
import ZODB.blob  # noqa: E402

from server import start_server  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')
CHUNK = 1 << 20


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pattern(mib, seed):
    unit = bytes((i * 31 + seed) % 256 for i in range(256)) * 4096
    return unit * mib


def open_db(server, blob_dir, shared):
    return ZEO.DB(server.address, blob_dir=blob_dir, shared_blob_dir=shared,
                  wait_timeout=30, blob_cache_size=1 << 40)


def run_round(kind, mode, work, count, mib):
    """One server, one mode: (store MB/s, load MB/s, store CPU s/MB,
    load CPU s/MB)."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    server_blobs = os.path.join(work, 'server-blobs')
    server = start_server(kind, os.path.join(work, 'Data.fs'),
                          blob_dir=server_blobs)
    shared = mode == 'shared'
    try:
        total = count * mib * CHUNK
        db = open_db(server, server_blobs if shared else
                     os.path.join(work, 'cache-writer'), shared)
        conn = db.open()
        root = conn.root()
        cpu0, t0 = cpu_seconds(server.process.pid), time.perf_counter()
        for i in range(count):
            blob = ZODB.blob.Blob()
            with blob.open('w') as f:
                f.write(pattern(mib, i))
            root[i] = blob
            transaction.commit()
        store_s = time.perf_counter() - t0
        store_cpu = cpu_seconds(server.process.pid) - cpu0
        db.close()

        db = open_db(server, server_blobs if shared else
                     os.path.join(work, 'cache-reader'), shared)
        conn = db.open()
        root = conn.root()
        cpu0, t0 = cpu_seconds(server.process.pid), time.perf_counter()
        read = 0
        for i in range(count):
            with root[i].open('r') as f:
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    read += len(chunk)
        load_s = time.perf_counter() - t0
        load_cpu = cpu_seconds(server.process.pid) - cpu0
        db.close()
        assert read == total, (read, total)
    finally:
        server.stop()
    mb = total / 1e6
    return mb / store_s, mb / load_s, store_cpu / mb, load_cpu / mb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('bbru_zeo')
    parser.add_argument('--count', type=int, default=16)
    parser.add_argument('--mib', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--dir', default=os.path.join(
        HERE, '..', '..', 'target', 'bench-zeo-blobs'))
    args = parser.parse_args()
    os.environ['BBRU_ZEO'] = os.path.abspath(args.bbru_zeo)
    results = {}
    for mode in ('cache', 'shared'):
        for _ in range(args.rounds):
            for kind in ('python', 'bbru'):
                r = run_round(kind, mode, os.path.join(args.dir, kind),
                              args.count, args.mib)
                results.setdefault((mode, kind), []).append(r)
    print(f'{args.count} blobs of {args.mib} MiB per phase, '
          f'median of {args.rounds} rounds')
    print()
    print('| mode | phase | Python MB/s | bbru MB/s | ratio '
          '| Python server CPU ms/MB | bbru | ratio |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for mode in ('cache', 'shared'):
        for phase, (rate, cpu) in (('store', (0, 2)), ('load', (1, 3))):
            py = [r for r in results[(mode, 'python')]]
            bb = [r for r in results[(mode, 'bbru')]]
            py_rate = statistics.median(r[rate] for r in py)
            bb_rate = statistics.median(r[rate] for r in bb)
            py_cpu = statistics.median(r[cpu] for r in py) * 1000
            bb_cpu = statistics.median(r[cpu] for r in bb) * 1000
            cpu_ratio = (f'{py_cpu / bb_cpu:.2f}x' if bb_cpu > 0 else '-')
            print(f'| {mode} | {phase} | {py_rate:,.0f} | {bb_rate:,.0f} '
                  f'| {bb_rate / py_rate:.2f}x | {py_cpu:.2f} | {bb_cpu:.2f} '
                  f'| {cpu_ratio} |')


if __name__ == '__main__':
    main()
