"""ZEO client workload: zodbshootout's measures, from C concurrent processes.

    python workload.py --address HOST:PORT [--clients C] [--objects N]
                       [--per-txn K] [--repeat R] [--server-pid PID]

Runs against a ZEO 5 server that serves an empty (or not yet benchmarked)
storage "1", with ZODB.DB(ZEO.ClientStorage.ClientStorage(...)), and prints
one JSON object on stdout (keys at the end of this docstring). Run it with
the project's venv python (ZODB 6.4, ZEO 6.2). bench/zeo/run.sh drives it;
zodbshootout itself is not used (see BENCHMARKS.md, section "ZEO server",
for why).

Setup (untimed, driver process): root['zeo-bench'] = PersistentMapping with
one OOBTree per client, root['zeo-bench'][i] for i in 0..C-1, committed in
one transaction. Every client then works only on its own tree: there are no
conflicts, but every commit's invalidations still go to all C clients.

Objects: PersistentMapping({'n': k, 'v': version, 'text': '%08d' % k}),
about 112 bytes pickled (ZODB's ObjectWriter), keys 0..N-1 of the tree.

Phases, in this order. Each phase starts in all C processes at once (a
multiprocessing.Barrier of C workers + the driver); its wall time runs from
the earliest start to the latest end over the C processes, and its rate is
(total objects handled by the C processes) / wall time:

  add     one process per client, one DB and connection: N new objects
          into its tree, K per transaction (N/K commits). Like
          zodbshootout's "add" (which puts 1000 objects per transaction
          into a PersistentMapping); here the container is an OOBTree, so
          its buckets are rewritten too.
  update  the same connection: set obj['v'] on all N objects, K per
          transaction (N/K commits). zodbshootout's "update".
  cold    new processes, a new ClientStorage (empty in-memory ZEO client
          cache, default size 20 MB) and DB: one connection reads the N
          objects through the tree (one server round trip per object and
          per tree bucket). zodbshootout's "read cold objects".
  warm    the same DB: the connection's object cache is emptied
          (cacheMinimize) and the N objects are read again, R times; every
          load is served by the ZEO client cache, not by the server.
          zodbshootout calls this "hot" (storage cache warm, pickle cache
          empty); here it counts N*R objects.
  hot     the same connection, objects already loaded, read R times (N*R
          objects): no storage access at all. zodbshootout's "steamin".

A read touches obj['n'] and obj['v']; every phase checks what it read
(values and counts) and fails the run on a mismatch.

JSON keys: "clients", "objects" (N), "per_txn" (K), "repeat" (R),
"record_bytes" (pickle length of object 0), and "phases": {name: {
"objects" (total over clients), "wall_s", "per_s" (objects/s),
"client_s" (list of each process's own phase time), "server_cpu_s" (CPU
time of --server-pid, all threads, during the phase, from /proc; null
without --server-pid), "server_cpu_us_per_object", "client_cpu_s" (CPU
time of the C client processes in the phase, summed: time.process_time()),
"client_cpu_us_per_object"}}.
"""
import argparse
import json
import multiprocessing
import os
import sys
import time

BARRIER_TIMEOUT = 600  # seconds: a stuck or dead worker fails the run
WRITE_PHASES = ('add', 'update')
READ_PHASES = ('cold', 'warm', 'hot')
ROOT_KEY = 'zeo-bench'
OBJECT_CACHE_SIZE = 1_000_000  # objects, per connection


def parse_address(text):
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f'expected HOST:PORT, got {text!r}')
    return host, int(port)


def open_db(address):
    # Imported here so that the driver imports ZEO only where it uses it.
    import ZEO.ClientStorage
    import ZODB
    storage = ZEO.ClientStorage.ClientStorage(address, wait=True, wait_timeout=60)
    # An object cache large enough for all objects of a process (ZODB's
    # default, 400, would ghostify most of them at each transaction end).
    return ZODB.DB(storage, cache_size=OBJECT_CACHE_SIZE)


def make_object(k, version):
    from persistent.mapping import PersistentMapping
    return PersistentMapping({'n': k, 'v': version, 'text': '%08d' % k})


def read_all(tree, n, version):
    """Touch every object of the tree; check keys, values and count."""
    count = 0
    total = 0
    for k, obj in tree.items():
        if obj['v'] != version:
            raise AssertionError(f'object {k}: v = {obj["v"]}, expected {version}')
        total += obj['n']
        count += 1
    if count != n or total != n * (n - 1) // 2:
        raise AssertionError(f'read {count} objects (sum of n {total}), expected {n}')
    return count


def phase(barrier, results, worker, name, func):
    """Run func() between two barrier waits; report its times and objects."""
    barrier.wait(BARRIER_TIMEOUT)
    start = time.perf_counter()
    cpu = time.process_time()  # this process, all threads (ZEO's I/O thread too)
    count = func()
    cpu = time.process_time() - cpu
    end = time.perf_counter()
    results.put((worker, name, start, end, count, cpu))
    barrier.wait(BARRIER_TIMEOUT)


def worker_main(body, worker, *args):
    """Process entry: on any failure, break the barrier so nobody waits."""
    barrier = args[-2]
    try:
        body(worker, *args)
    except BaseException:
        barrier.abort()
        raise


def write_worker(worker, address, n, per_txn, barrier, results):
    import transaction
    db = open_db(address)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(tm)
    tm.begin()
    tree = conn.root()[ROOT_KEY][worker]
    tm.abort()

    def add():
        for first in range(0, n, per_txn):
            tm.begin()
            for k in range(first, min(first + per_txn, n)):
                tree[k] = make_object(k, 0)
            tm.commit()
        return n

    def update():
        keys = list(range(n))
        for first in range(0, n, per_txn):
            tm.begin()
            for k in keys[first:first + per_txn]:
                tree[k]['v'] = 1
            tm.commit()
        return n

    phase(barrier, results, worker, 'add', add)
    phase(barrier, results, worker, 'update', update)
    conn.close()
    db.close()


def read_worker(worker, address, n, repeat, barrier, results):
    import transaction
    db = open_db(address)  # a new ClientStorage: empty ZEO client cache
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(tm)

    def tree():
        return conn.root()[ROOT_KEY][worker]

    def cold():
        tm.begin()
        loads_before, _ = conn.getTransferCounts(True)
        count = read_all(tree(), n, 1)
        loads, _ = conn.getTransferCounts(True)
        if loads < n:
            raise AssertionError(f'cold read loaded {loads} records, expected >= {n}')
        tm.abort()
        return count

    def warm():
        count = 0
        for _ in range(repeat):
            conn.cacheMinimize()  # ghosts every object; the ZEO cache stays
            tm.begin()
            count += read_all(tree(), n, 1)
            tm.abort()
        return count

    def hot():
        tm.begin()
        t = tree()
        count = 0
        conn.getTransferCounts(True)
        for _ in range(repeat):
            count += read_all(t, n, 1)
        loads, _ = conn.getTransferCounts(True)
        tm.abort()
        if loads:
            raise AssertionError(f'hot read loaded {loads} records, expected 0')
        return count

    phase(barrier, results, worker, 'cold', cold)
    phase(barrier, results, worker, 'warm', warm)
    phase(barrier, results, worker, 'hot', hot)
    conn.close()
    db.close()


def cpu_seconds(pid):
    """CPU time (user + system, all threads) of pid so far, or None.

    Returns (threads, schedstat_s, stat_s): the sum of the first field of
    /proc/PID/task/*/schedstat (nanoseconds on CPU, live threads only) and
    utime + stime of /proc/PID/stat (clock ticks, dead threads included).
    """
    if pid is None:
        return None
    tasks = frozenset(os.listdir(f'/proc/{pid}/task'))
    on_cpu_ns = 0
    for tid in tasks:
        try:
            with open(f'/proc/{pid}/task/{tid}/schedstat') as f:
                on_cpu_ns += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    ticks = int(fields[11]) + int(fields[12])
    return tasks, on_cpu_ns / 1e9, ticks / os.sysconf('SC_CLK_TCK')


def cpu_delta(before, after):
    """Seconds of CPU between two cpu_seconds() readings: the nanosecond
    schedstat sum when the same threads lived at both ends, else the
    tick-precision /proc/PID/stat difference."""
    if before is None or after is None:
        return None
    if before[0] == after[0]:
        return after[1] - before[1]
    return after[2] - before[2]


def setup(address, clients):
    import transaction
    from BTrees.OOBTree import OOBTree
    from persistent.mapping import PersistentMapping
    db = open_db(address)
    tm = transaction.TransactionManager(explicit=True)
    conn = db.open(tm)
    tm.begin()
    root = conn.root()
    if ROOT_KEY in root:
        sys.exit('workload.py: the storage already holds a benchmark run; '
                 'start the server on a fresh Data.fs')
    root[ROOT_KEY] = PersistentMapping({i: OOBTree() for i in range(clients)})
    tm.commit()
    conn.close()
    db.close()


def run_group(ctx, target, args, clients, names, server_pid):
    """Start one process per client, drive the phases, collect results."""
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(target, i, *args, barrier, results))
             for i in range(clients)]
    for p in procs:
        p.start()
    phases = {}
    try:
        for name in names:
            barrier.wait(BARRIER_TIMEOUT)  # all connected; go
            cpu0 = cpu_seconds(server_pid)
            barrier.wait(BARRIER_TIMEOUT)  # all done
            cpu1 = cpu_seconds(server_pid)
            rows = [results.get(timeout=BARRIER_TIMEOUT) for _ in range(clients)]
            assert all(row[1] == name for row in rows), rows
            wall = max(r[3] for r in rows) - min(r[2] for r in rows)
            objects = sum(r[4] for r in rows)
            server_cpu = cpu_delta(cpu0, cpu1)
            client_cpu = sum(r[5] for r in rows)
            phases[name] = {
                'objects': objects,
                'wall_s': wall,
                'per_s': objects / wall,
                'client_s': [round(r[3] - r[2], 6) for r in sorted(rows)],
                'server_cpu_s': server_cpu,
                'server_cpu_us_per_object':
                    None if server_cpu is None else server_cpu / objects * 1e6,
                'client_cpu_s': client_cpu,
                'client_cpu_us_per_object': client_cpu / objects * 1e6,
            }
            print(f'workload.py: {clients} client(s) {name}: {objects} objects '
                  f'in {wall:.3f} s = {objects / wall:,.0f}/s'
                  + ('' if server_cpu is None else
                     f', server CPU {server_cpu:.2f} s'), file=sys.stderr)
    except BaseException:
        barrier.abort()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
        raise
    for p in procs:
        p.join(BARRIER_TIMEOUT)
        if p.exitcode != 0:
            raise SystemExit(f'workload.py: a client process exited with {p.exitcode}')
    return phases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--address', type=parse_address, required=True)
    parser.add_argument('--clients', type=int, default=1)
    parser.add_argument('--objects', type=int, default=2000,
                        help='objects per client process (N)')
    parser.add_argument('--per-txn', type=int, default=100,
                        help='objects per transaction in add and update (K)')
    parser.add_argument('--repeat', type=int, default=10,
                        help='passes of the warm and hot reads (R)')
    parser.add_argument('--server-pid', type=int,
                        help='measure this process\'s CPU time per phase')
    args = parser.parse_args()
    if min(args.clients, args.objects, args.per_txn, args.repeat) < 1:
        parser.error('sizes must be >= 1')

    from ZODB.serialize import ObjectWriter
    record_bytes = len(ObjectWriter().serialize(make_object(0, 0)))

    # spawn: every client starts as a fresh interpreter, with no state
    # (sockets, threads, caches) inherited from the driver's setup.
    ctx = multiprocessing.get_context('spawn')
    setup(args.address, args.clients)
    phases = run_group(ctx, write_worker,
                       (args.address, args.objects, args.per_txn),
                       args.clients, WRITE_PHASES, args.server_pid)
    phases.update(run_group(ctx, read_worker,
                            (args.address, args.objects, args.repeat),
                            args.clients, READ_PHASES, args.server_pid))
    json.dump({
        'clients': args.clients,
        'objects': args.objects,
        'per_txn': args.per_txn,
        'repeat': args.repeat,
        'record_bytes': record_bytes,
        'phases': phases,
    }, sys.stdout, indent=1)
    print()


if __name__ == '__main__':
    main()
