#!/usr/bin/env bash
# Persistence-layer benchmark: zodbshootout's measures (add, update, cold,
# warm, hot; 1000 objects per transaction) for Python ZODB 6.4 (DB,
# Connection, Persistent) and for bbru's crate `zodb`, both on their own
# FileStorage, in one invocation. Prints a table (ratio = Python time / bbru
# time, > 1 = bbru better); --write also rewrites the "Persistence layer"
# section of BENCHMARKS.md.
#
#   bench/zodb/run.sh [--quick] [--objects N] [--rounds R] [--runs M]
#                     [--dir DIR] [--write]
#
#   --quick        small sizes for a smoke run (200 objects, 3 rounds, 1 run)
#   --objects N    objects per transaction   (env ZODB_BENCH_OBJECTS, default 1000)
#   --rounds R     rounds per process, each on N fresh objects
#                                            (env ZODB_BENCH_ROUNDS, default 10)
#   --runs M       processes of each half, interleaved (python, bbru, python,
#                  ...); the table shows the median over all M*R rounds
#                                            (env ZODB_BENCH_RUNS, default 5)
#   --dir DIR      scratch directory (env ZODB_BENCH_DIR, default
#                  <repo>/target/bench-zodb; a few MB)
#   --write        rewrite the persistence-layer section of <repo>/BENCHMARKS.md
#
# Workload, timers and JSON keys: the docstring of bench/python/zodb_bench.py
# (the Rust half, bench/src/bin/zodb_bench.rs, follows it). Needs cargo,
# python3, and the venv of tools/python-env.sh (ZODB 6.4; PyPI access the
# first time). The OS page cache is never dropped.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
objects=${ZODB_BENCH_OBJECTS:-1000}
rounds=${ZODB_BENCH_ROUNDS:-10}
runs=${ZODB_BENCH_RUNS:-5}
dir=${ZODB_BENCH_DIR:-$repo/target/bench-zodb}
write=0
command_line="bench/zodb/run.sh${*:+ $*}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --quick) objects=200 rounds=3 runs=1 ;;
    --objects) objects=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "zodb/run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log() { echo "zodb/run.sh: $*" >&2; }

log "building (cargo build --release -p bbru-bench)"
(cd "$repo" && cargo build --release -p bbru-bench)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
rust_bin=$target_dir/release/zodb-bench
[[ -x $rust_bin ]] || { log "missing $rust_bin after the build"; exit 1; }

log "getting the Python venv (tools/python-env.sh)"
python=$("$repo/tools/python-env.sh" | tail -n 1)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/results
rm -rf "$out"
mkdir -p "$out"

cut -d' ' -f1-3 /proc/loadavg >"$out/loadavg-start"
sizes=(--objects "$objects" --rounds "$rounds")
log "sizes: ${sizes[*]}, $runs run(s) of each half, in $dir"
start=$SECONDS
for ((run = 1; run <= runs; run++)); do
    log "run $run/$runs: Python"
    "$python" "$repo/bench/python/zodb_bench.py" --dir "$dir/python" "${sizes[@]}" \
        >"$out/python-r$run.json"
    log "run $run/$runs: bbru"
    "$rust_bin" --dir "$dir/bbru" "${sizes[@]}" >"$out/bbru-r$run.json"
done
log "all runs took $((SECONDS - start)) s"

# Machine, versions, and the latency of one small synced append on the
# benchmark's disk (add and update end with one sync each).
PYTHONPATH="$repo/bench" python3 - "$dir" "$python" "$command_line" "$out/loadavg-start" >"$out/meta.json" <<'EOF'
import datetime, json, os, statistics, sys, time

bench_dir, venv_python, command, loadavg_start = sys.argv[1:5]

from machine_info import cpu_model, mem, run

def fdatasync_ms():
    path = os.path.join(bench_dir, 'fsync-probe.tmp')
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    try:
        for _ in range(200):
            os.write(fd, b'x' * 100)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.remove(path)
    return statistics.median(times) * 1000

df = run('df', '-T', bench_dir).splitlines()
fields = df[-1].split() if len(df) > 1 else []
versions = run(venv_python, '-c',
               'import sys, importlib.metadata as m; '
               'print(sys.version.split()[0], m.version("ZODB"), m.version("persistent"))').split()
if len(versions) != 3:
    versions = ['unknown'] * 3
print(json.dumps({
    'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    'command': command,
    'nproc': run('nproc'),
    'kernel': run('uname', '-r'),
    'cpu': cpu_model(),
    'mem': mem(),
    'disk': f'{fields[1]} on {fields[0]}' if len(fields) > 2 else 'unknown',
    'fdatasync_ms': f'{fdatasync_ms():.3f}',
    'loadavg_start': open(loadavg_start).read().split(),
    'loadavg_end': open('/proc/loadavg').read().split()[:3],
    'rustc': run('rustc', '--version'),
    'python': 'CPython ' + versions[0],
    'zodb': versions[1],
    'persistent': versions[2],
}, indent=1))
EOF

write_args=()
if ((write)); then
    write_args=(--write "$repo/BENCHMARKS.md")
    # Analysis kept with the benchmark, shown below the table.
    notes=$repo/bench/zodb/observations.md
    [[ -f $notes ]] && write_args+=(--notes "$notes")
fi
python3 "$repo/bench/zodb/report.py" "$out" "${write_args[@]}"
log "raw results in $out"
