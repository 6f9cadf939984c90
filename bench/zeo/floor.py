"""Python processes talking to `zeo-floor serve` the way Python ZEO clients talk to a
ZEO server in bench/zeo/workload.py, to measure what a server that does no work costs
per message (see bench/src/bin/zeo_floor.rs).

    python floor.py HOST:PORT SERVER_PID PROCESSES [--loads N] [--work-us US]

Each process sends a 40-byte frame, waits for the reply, then works for --work-us
(default 240: a Python client's CPU per object in the cold phase of workload.py), N
times: a cold `loadBefore` each. The work is unpickling a dict of 300 entries until the time has passed, so that, as
in a real client, the interpreter's memory traffic goes through the caches the server
shares. Prints one JSON line: the loads, their rate, and the server's CPU time per
load, all its threads (`/proc/PID/task/*/schedstat`, nanoseconds).
"""
import argparse
import json
import multiprocessing
import os
import pickle
import socket
import struct
import time

LOAD = struct.pack('>I', 40) + b'q' * 40
BLOB = pickle.dumps({f'key{i}': [i, str(i) * 3] for i in range(300)})


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/schedstat') as f:
            total += int(f.read().split()[0])
    return total


def work(us):
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pickle.loads(BLOB)


def round_trip(sock, frame):
    sock.sendall(frame)
    header = b''
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    left = struct.unpack('>I', header)[0]
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError('the server closed the connection')
        left -= len(chunk)


def client(address, loads, work_us, barrier):
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(100):
        round_trip(sock, LOAD)
    barrier.wait(600)
    for _ in range(loads):
        round_trip(sock, LOAD)
        work(work_us)
    round_trip(sock, LOAD)
    barrier.wait(600)
    sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('address')
    parser.add_argument('server_pid', type=int)
    parser.add_argument('processes', type=int)
    parser.add_argument('--loads', type=int, default=3000)
    parser.add_argument('--work-us', type=float, default=240)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(':')
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(args.processes + 1)
    procs = [ctx.Process(target=client,
                         args=((host, int(port)), args.loads, args.work_us, barrier))
             for _ in range(args.processes)]
    for p in procs:
        p.start()
    barrier.wait(600)
    cpu0, t0 = cpu_ns(args.server_pid), time.perf_counter()
    barrier.wait(600)
    cpu1, t1 = cpu_ns(args.server_pid), time.perf_counter()
    for p in procs:
        p.join()
    # The final round trip of each process is in the CPU time, and is noise.
    loads = args.loads * args.processes
    print(json.dumps({
        'pattern': 'python',
        'connections': args.processes,
        'work_us': args.work_us,
        'loads': loads,
        'loads_per_s': loads / (t1 - t0),
        'server_cpu_us_per_load': (cpu1 - cpu0) / 1e3 / loads,
    }))


if __name__ == '__main__':
    main()
