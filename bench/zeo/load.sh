#!/usr/bin/env bash
# ZEO server capacity: the Rust load generator (bench/src/bin/zeo_load.rs:
# many connections from one process, the crate's own codec) against
# Python's ZEO 6.2 server (`python -m ZEO.runzeo`) and against bbru-zeo, in
# one invocation, at 8, 32 and 128 connections: cold loads (loadBefore of
# populated objects, one request in flight per connection) and commits
# (transactions of new objects). Prints a table of rates, p99 latencies and
# server CPU per object, and the single round trip of loadBefore against a
# bare TCP ping-pong on loopback (to an echo process, which like a server must
# be woken per request, and within the generator's own process).
#
#   bench/zeo/load.sh [--quick] [--connections 8,32,128] [--seconds S]
#                     [--objects N] [--per-commit K] [--dir DIR]
#
#   --quick            1 s phases, 8 and 32 connections, 1000 objects
#   --connections L    comma-separated numbers of connections (default 8,32,128)
#   --seconds S        duration of each phase (default 5)
#   --objects N        objects populated before the loads (default 5000)
#   --per-commit K     new objects per commit (default 10)
#   --dir DIR          scratch directory (default <repo>/target/bench-zeo-load)
#
# Each server gets a fresh Data.fs on a free loopback port and is stopped with
# SIGTERM afterwards. The generator and the server share this machine's cores:
# on a 2-core machine the generator takes about one, so the rates are what a
# server does with the other (the CPU-per-object column does not depend on
# that). Needs cargo, python3 and the venv of tools/python-env.sh.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
connections=8,32,128
seconds=5
objects=5000
per_commit=10
dir=$repo/target/bench-zeo-load

bench_name=zeo/load.sh
# usage, log, die, free_port, pids (stopped on exit).
source "$repo/bench/lib.sh"

while (($#)); do
    case $1 in
    --quick) connections=8,32 seconds=1 objects=1000 ;;
    --connections) connections=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    --objects) objects=${2:?}; shift ;;
    --per-commit) per_commit=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    -h | --help) usage ;;
    *) echo "load.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log "building (cargo build --release -p zeo -p bbru-bench)"
(cd "$repo" && cargo build --release -p zeo --bin bbru-zeo -p bbru-bench --bin zeo-load)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
python=$("$repo/tools/python-env.sh" | tail -n 1)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
trap 'exit 130' INT TERM

results=$dir/results.jsonl
: >"$results"
for kind in python bbru; do
    data=$dir/$kind
    rm -rf "$data"
    mkdir -p "$data"
    port=$(free_port)
    case $kind in
    python) "$python" -m ZEO.runzeo -a "127.0.0.1:$port" -f "$data/Data.fs" >"$data/server.log" 2>&1 & ;;
    bbru) "$target_dir/release/bbru-zeo" -a "127.0.0.1:$port" -f "$data/Data.fs" >"$data/server.log" 2>&1 & ;;
    esac
    server_pid=$!
    pids=("$server_pid")
    for ((i = 0; i < 300; i++)); do
        [[ -n $(ss -Hltn "sport = :$port") ]] && break
        sleep 0.1
    done
    log "$kind server (pid $server_pid, port $port)"
    "$target_dir/release/zeo-load" --address "127.0.0.1:$port" --label "$kind" \
        --connections "$connections" --seconds "$seconds" --objects "$objects" \
        --per-commit "$per_commit" --server-pid "$server_pid" --ping >>"$results"
    stop_pids
    pids=()
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r['server'], r['phase'], r.get('connections')): r for r in rows}
print('| phase | connections | Python ops/s | bbru ops/s | ratio | Python p99 µs | bbru p99 µs | Python server CPU µs/object | bbru | ratio |')
print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
for (server, phase, n), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2] or 0)):
    if server != 'python' or phase == 'round_trip':
        continue
    b = by.get(('bbru', phase, n))
    if not b:
        continue
    cpu = lambda x: x.get('server_cpu_us_per_object') or float('nan')
    print(f"| {phase} | {n} | {r['ops_per_s']:.0f} | {b['ops_per_s']:.0f} | {b['ops_per_s'] / r['ops_per_s']:.2f}× "
          f"| {r['p99_us']} | {b['p99_us']} | {cpu(r):.1f} | {cpu(b):.1f} | {cpu(r) / cpu(b):.2f}× |")
for server in ('python', 'bbru'):
    r = by.get((server, 'round_trip', None))
    if r:
        print(f"\n{server}: loadBefore round trip, median: raw codec {r['raw_load_before_median_us']:.0f} µs, "
              f"Rust ClientStorage {r['client_storage_load_before_median_us']:.0f} µs, "
              f"bare TCP ping-pong {r['tcp_ping_pong_process_median_us']:.0f} µs to another process "
              f"({r['tcp_ping_pong_median_us']:.0f} µs within this one); "
              f"ClientStorage / ping-pong to a process = {r['client_storage_over_tcp_process']:.2f}×")
PY
log "raw results in $results"
