"""Raw loadBefore round trips against a ZEO server, from P client processes.

    python load_probe.py collect HOST:PORT OIDS_FILE [MAX_OIDS]
    python load_probe.py load HOST:PORT PROCESSES OIDS_FILE

The storage must hold what bench/zeo/workload.py leaves (root['zeo-bench'],
one OOBTree per client). `collect` writes the oids of the objects in those
trees (up to MAX_OIDS, default 10000) to OIDS_FILE, through ZODB. `load`
starts P processes; each opens a new ClientStorage (empty cache) and calls
storage.loadBefore(oid, maxtid) for every oid of the file: one server round
trip each, with no ZODB object machinery on the client. It prints the
loads and the rate on stdout. bench/zeo/probe.sh runs `load` under perf or
strace attached to the server (after `collect`, whose loads it leaves out),
to see what one load costs the server.
"""
import multiprocessing
import sys
import time


def work(address, oids, barrier, results):
    import ZEO.ClientStorage
    from ZODB.utils import maxtid
    storage = ZEO.ClientStorage.ClientStorage(address, wait=True)
    barrier.wait(600)
    start = time.perf_counter()
    loaded = 0
    for oid in oids:
        loaded += storage.loadBefore(oid, maxtid) is not None
    results.put((start, time.perf_counter(), loaded))
    storage.close()


def object_oids(address, limit):
    import ZEO.ClientStorage
    import ZODB
    db = ZODB.DB(ZEO.ClientStorage.ClientStorage(address, wait=True))
    conn = db.open()
    oids = []
    for tree in conn.root()['zeo-bench'].values():
        oids += [obj._p_oid for obj in tree.values()]
    db.close()
    return oids[:limit]


def main():
    command = sys.argv[1]
    host, _, port = sys.argv[2].rpartition(':')
    address = (host, int(port))
    if command == 'collect':
        limit = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
        with open(sys.argv[3], 'w') as f:
            f.write('\n'.join(oid.hex() for oid in object_oids(address, limit)))
        return
    if command != 'load':
        sys.exit(f'load_probe.py: unknown command {command}')
    processes = int(sys.argv[3])
    with open(sys.argv[4]) as f:
        oids = [bytes.fromhex(line) for line in f.read().split()]
    ctx = multiprocessing.get_context('spawn')
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=work, args=(address, oids, barrier, results))
             for _ in range(processes)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in rows) - min(r[0] for r in rows)
    loads = sum(r[2] for r in rows)
    print(f'{processes} process(es): {loads} loads in {wall:.3f} s = {loads / wall:,.0f}/s')


if __name__ == '__main__':
    main()
