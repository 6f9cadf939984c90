#!/usr/bin/env bash
# The floor under a ZEO server's CPU per load: what a server that answers
# each request without doing anything costs on this machine, with the same
# clients as bench/zeo/run.sh (Python processes, one load in flight each,
# with a Python client's work between two) and bench/zeo/load.sh (one Rust
# process, many connections). The server is `zeo-floor serve`
# (bench/src/bin/zeo_floor.rs): one thread, a current-thread tokio runtime
# as bbru-zeo's, no lookup, no file, no allocation per request. Its CPU per
# load is the kernel's and the runtime's share, which no server that
# answers each request as it comes can go below. Prints a table; compare
# it with the cold rows of run.sh and load.sh from the same sitting.
#
#   bench/zeo/floor.sh [--quick] [--loads N] [--seconds S]
#
#   --quick       1,000 loads per Python process, 1 s per Rust phase
#   --loads N     loads per Python process (default 3000)
#   --seconds S   duration of each Rust generator phase (default 3)
#
# Needs cargo, python3 and the venv of tools/python-env.sh.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
loads=3000
seconds=3

bench_name=zeo/floor.sh
# usage, log, die, free_port, pids (stopped on exit).
source "$repo/bench/lib.sh"

while (($#)); do
    case $1 in
    --quick) loads=1000 seconds=1 ;;
    --loads) loads=${2:?}; shift ;;
    --seconds) seconds=${2:?}; shift ;;
    -h | --help) usage ;;
    *) echo "floor.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log "building (cargo build --release -p bbru-bench --bin zeo-floor)"
(cd "$repo" && cargo build --release -p bbru-bench --bin zeo-floor)
floor=${CARGO_TARGET_DIR:-$repo/target}/release/zeo-floor
python=$("$repo/tools/python-env.sh" | tail -n 1)
trap 'exit 130' INT TERM

out=$(mktemp)
pids=()
cleanup() { stop_pids; rm -f "$out" "$out.port"; }
trap cleanup EXIT
"$floor" serve >"$out.port" &
server_pid=$!
pids=("$server_pid")
for ((i = 0; i < 100; i++)); do
    [[ -s $out.port ]] && break
    sleep 0.05
done
address=127.0.0.1:$(head -n 1 "$out.port")
log "zeo-floor serve (pid $server_pid) at $address"
for processes in 1 8; do
    "$python" "$repo/bench/zeo/floor.py" "$address" "$server_pid" "$processes" --loads "$loads" >>"$out"
done
"$floor" drive --address "$address" --server-pid "$server_pid" --seconds "$seconds" >>"$out"

python3 - "$out" <<'PY'
import json, sys
print('| clients | connections | loads/s | server CPU µs/load |')
print('|---|---:|---:|---:|')
for line in open(sys.argv[1]):
    r = json.loads(line)
    who = 'Python processes' if r['pattern'] == 'python' else 'Rust generator'
    print(f"| {who} | {r['connections']} | {r['loads_per_s']:,.0f} | {r['server_cpu_us_per_load']:.1f} |")
PY
