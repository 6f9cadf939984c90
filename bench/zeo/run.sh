#!/usr/bin/env bash
# ZEO server benchmark: the same Python ZEO-client workload
# (bench/zeo/workload.py: add, update, cold, warm and hot reads) against
# Python's ZEO 6.2 server (`python -m ZEO.runzeo`) and against bbru-zeo, with
# 1 and 8 concurrent client processes. Prints a table (ratio = bbru/Python,
# > 1 = bbru better); --write also rewrites the "ZEO server" section of
# BENCHMARKS.md.
#
#   bench/zeo/run.sh [--quick] [--objects N] [--per-txn K] [--repeat R]
#                    [--clients "1 8"] [--rounds M] [--dir DIR] [--write]
#
#   --quick          small sizes for a smoke run (200 objects, 50/txn, 2 passes, 1 round)
#   --objects N      objects per client process  (env ZEO_BENCH_OBJECTS, default 2000)
#   --per-txn K      objects per transaction     (env ZEO_BENCH_PER_TXN, default 100)
#   --repeat R       passes of the warm/hot reads (env ZEO_BENCH_REPEAT, default 10)
#   --clients LIST   concurrencies to run        (env ZEO_BENCH_CLIENTS, default "1 8")
#   --rounds M       runs of each (server, concurrency); the table shows the
#                    median rate of each phase    (env ZEO_BENCH_ROUNDS, default 5)
#   --dir DIR        scratch directory (env ZEO_BENCH_DIR, default
#                    <repo>/target/bench-zeo; a few MB per run)
#   --write          rewrite the ZEO section of <repo>/BENCHMARKS.md
#
# Each run gets a fresh Data.fs and a fresh server on a free loopback port;
# the server is stopped with SIGTERM afterwards. The servers run one at a
# time, interleaved (python, bbru, python, bbru, ...), so a slow spell of the
# machine hits both. Needs cargo, python3 and the venv of tools/python-env.sh
# (ZODB 6.4, ZEO 6.2; PyPI access the first time).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
objects=${ZEO_BENCH_OBJECTS:-2000}
per_txn=${ZEO_BENCH_PER_TXN:-100}
repeat=${ZEO_BENCH_REPEAT:-10}
clients=${ZEO_BENCH_CLIENTS:-1 8}
rounds=${ZEO_BENCH_ROUNDS:-5}
dir=${ZEO_BENCH_DIR:-$repo/target/bench-zeo}
write=0
command_line="bench/zeo/run.sh${*:+ $*}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --quick) objects=200 per_txn=50 repeat=2 rounds=1 ;;
    --objects) objects=${2:?}; shift ;;
    --per-txn) per_txn=${2:?}; shift ;;
    --repeat) repeat=${2:?}; shift ;;
    --clients) clients=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log() { echo "zeo/run.sh: $*" >&2; }

log "building (cargo build --release -p zeo)"
(cd "$repo" && cargo build --release -p zeo)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bbru_bin=$target_dir/release/bbru-zeo
[[ -x $bbru_bin ]] || { log "missing $bbru_bin after the build"; exit 1; }

log "getting the Python venv (tools/python-env.sh)"
python=$("$repo/tools/python-env.sh" | tail -n 1)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/results
rm -rf "$out"
mkdir -p "$out"

server_pid=

stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        log "server $server_pid still running 10 s after SIGTERM; SIGKILL"
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_listening PORT: until something listens on 127.0.0.1:PORT (30 s max),
# checked with ss so that no client connects to the server before the run.
wait_listening() {
    local port=$1 i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            log "the server exited before listening"
            return 1
        fi
        if [[ -n $(ss -Hltn "sport = :$port") ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listens on 127.0.0.1:$port after 30 s"
    return 1
}

# start_server KIND DATADIR PORT LOG
start_server() {
    local kind=$1 data=$2 port=$3 logfile=$4
    case $kind in
    python) "$python" -m ZEO.runzeo -a "127.0.0.1:$port" -f "$data/Data.fs" >"$logfile" 2>&1 & ;;
    bbru) "$bbru_bin" -a "127.0.0.1:$port" -f "$data/Data.fs" >"$logfile" 2>&1 & ;;
    esac
    server_pid=$!
    wait_listening "$port" || { cat "$logfile" >&2; exit 1; }
}

cut -d' ' -f1-3 /proc/loadavg >"$out/loadavg-start"
sizes=(--objects "$objects" --per-txn "$per_txn" --repeat "$repeat")
log "sizes: ${sizes[*]}, clients: $clients, rounds: $rounds, in $dir"
start=$SECONDS
for ((round = 1; round <= rounds; round++)); do
    for c in $clients; do
        for kind in python bbru; do
            name=$kind-c$c-r$round
            data=$dir/$name
            rm -rf "$data"
            mkdir -p "$data"
            port=$(free_port)
            start_server "$kind" "$data" "$port" "$out/$name.server.log"
            log "round $round/$rounds: $kind server (pid $server_pid, port $port), $c client(s)"
            "$python" "$repo/bench/zeo/workload.py" --address "127.0.0.1:$port" \
                --clients "$c" "${sizes[@]}" --server-pid "$server_pid" >"$out/$name.json"
            stop_server
            rm -rf "$data"
        done
    done
done
log "all runs took $((SECONDS - start)) s"

# Machine and versions.
PYTHONPATH="$repo/bench" python3 - "$python" "$bbru_bin" "$command_line" "$out/loadavg-start" >"$out/meta.json" <<'EOF'
import datetime, json, platform, subprocess, sys

venv_python, bbru_bin, command, loadavg_start = sys.argv[1:5]

from machine_info import cpu_model, mem, run

versions = run(venv_python, '-c',
               'import sys, importlib.metadata as m; '
               'print(sys.version.split()[0], m.version("ZODB"), m.version("ZEO"))').split()
if len(versions) != 3:
    versions = ['unknown'] * 3
print(json.dumps({
    'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    'command': command,
    'nproc': run('nproc'),
    'kernel': run('uname', '-r'),
    'cpu': cpu_model(),
    'mem': mem(),
    'loadavg_start': open(loadavg_start).read().split(),
    'loadavg_end': open('/proc/loadavg').read().split()[:3],
    'rustc': run('rustc', '--version'),
    'bbru_zeo': run(bbru_bin, '--version'),
    'python': 'CPython ' + versions[0],
    'zodb': versions[1],
    'zeo': versions[2],
}, indent=1))
EOF

write_args=()
if ((write)); then
    write_args=(--write "$repo/BENCHMARKS.md")
    # Analysis kept with the benchmark (profiles of the servers), shown
    # below the table.
    notes=$repo/bench/zeo/observations.md
    [[ -f $notes ]] && write_args+=(--notes "$notes")
fi
python3 "$repo/bench/zeo/report.py" "$out" "${write_args[@]}"
log "raw results in $out"
