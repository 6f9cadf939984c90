#!/usr/bin/env bash
# Side-by-side benchmark of bbru's FileStorage against Python ZODB 6.4's, in
# one invocation, on this machine, one half after the other with the same
# sizes. Prints a table (ratio > 1 = bbru better); --write also rewrites the
# results section of BENCHMARKS.md.
#
#   bench/run.sh [--quick] [--objects N] [--commits N] [--samples N]
#                [--dir DIR] [--write]
#
#   --quick        small sizes for a smoke run (20000 / 200 / 5000)
#   --objects N    objects in the big file        (env BENCH_OBJECTS, default 1000000)
#   --commits N    transactions per commit test   (env BENCH_COMMITS, default 5000)
#   --samples N    random oids for loadBefore     (env BENCH_SAMPLES, default 100000)
#   --dir DIR      scratch directory, on the disk to measure
#                  (env BENCH_DIR, default <repo>/target/bench-data; ~300 MB)
#   --write        rewrite the results section of <repo>/BENCHMARKS.md
#
# Workload, record recipe and JSON keys: the docstring of
# bench/python/filestorage_bench.py. Needs cargo, python3, and PyPI access the
# first time (tools/python-env.sh makes the venv with ZODB). Run as root to get
# cold-cache numbers (drop_caches); otherwise the JSON says "not dropped".
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
objects=${BENCH_OBJECTS:-1000000}
commits=${BENCH_COMMITS:-5000}
samples=${BENCH_SAMPLES:-100000}
dir=${BENCH_DIR:-$repo/target/bench-data}
write=0
command_line="bench/run.sh${*:+ $*}"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --quick) objects=20000 commits=200 samples=5000 ;;
    --objects) objects=${2:?}; shift ;;
    --commits) commits=${2:?}; shift ;;
    --samples) samples=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log() { echo "run.sh: $*" >&2; }

log "building (cargo build --release -p bbru-bench)"
(cd "$repo" && cargo build --release -p bbru-bench)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
rust_bin=$target_dir/release/filestorage-bench
[[ -x $rust_bin ]] || { log "missing $rust_bin after the build"; exit 1; }

log "getting the Python venv (tools/python-env.sh)"
python=$("$repo/tools/python-env.sh" | tail -n 1)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/results
mkdir -p "$out"
sizes=(--objects "$objects" --commits "$commits" --samples "$samples")

log "Python half: ${sizes[*]} in $dir/python"
start=$SECONDS
"$python" "$repo/bench/python/filestorage_bench.py" --dir "$dir/python" "${sizes[@]}" >"$out/python.json"
log "Python half took $((SECONDS - start)) s"

log "Rust half: ${sizes[*]} in $dir/rust"
start=$SECONDS
"$rust_bin" --dir "$dir/rust" "${sizes[@]}" >"$out/rust.json"
log "Rust half took $((SECONDS - start)) s"

# Machine description, and the latency of one small synced append on the
# benchmark's disk (what bounds the commit rates).
PYTHONPATH="$repo/bench" python3 - "$dir" "$python" "$command_line" >"$out/meta.json" <<'EOF'
import datetime, json, os, platform, statistics, subprocess, sys, time

bench_dir, venv_python, command = sys.argv[1:4]

from machine_info import cpu_model, mem, run

def sync_latency(sync):
    path = os.path.join(bench_dir, 'fsync-probe.tmp')
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    try:
        for _ in range(200):
            os.write(fd, b'x' * 100)
            start = time.perf_counter()
            sync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.remove(path)
    return statistics.median(times) * 1000

df = run('df', '-T', bench_dir).splitlines()
fields = df[-1].split() if len(df) > 1 else []
disk = f'{fields[1]} on {fields[0]}' if len(fields) > 2 else 'unknown'
versions = run(venv_python, '-c',
               'import sys, importlib.metadata as m; '
               'print(sys.version.split()[0], m.version("ZODB"), m.version("BTrees"))').split()
if len(versions) != 3:
    versions = ['unknown'] * 3
fsync_ms = sync_latency(os.fsync)
fdatasync_ms = sync_latency(os.fdatasync)
print(json.dumps({
    'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    'command': command,
    'nproc': run('nproc'),
    'kernel': run('uname', '-r'),
    'cpu': cpu_model(),
    'mem': mem(),
    'disk': disk,
    'fsync_ms': f'{fdatasync_ms:.3f}',
    'fsync_note': f'fsync: {fsync_ms:.3f} ms; Python FileStorage calls fsync '
                  'per commit, bbru fdatasync',
    'rustc': run('rustc', '--version'),
    'python': 'CPython ' + versions[0],
    'zodb': versions[1],
    'btrees': versions[2],
}, indent=1))
EOF

write_args=()
if ((write)); then write_args=(--write "$repo/BENCHMARKS.md"); fi
python3 "$repo/bench/compare.py" "$out/python.json" "$out/rust.json" "$out/meta.json" "${write_args[@]}"
log "raw results in $out"
