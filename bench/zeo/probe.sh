#!/usr/bin/env bash
# What one loadBefore costs a ZEO server: fills a fresh server with
# bench/zeo/workload.py (8 clients x 2000 objects), then runs
# bench/zeo/load_probe.py (P processes, each loading the same 10000 objects
# with a cold client cache) with perf or strace attached to the server.
#
#   bench/zeo/probe.sh python|bbru PROCESSES stat|strace|record [OUT_DIR]
#
#   stat     perf stat -e task-clock,context-switches,cpu-migrations
#   strace   strace -c -f (syscall counts; slows the server a lot)
#   record   perf record -g (then: perf report -i OUT_DIR/KIND-cP.perf)
#
# Output in OUT_DIR (default <repo>/target/bench-zeo/probe), named
# KIND-cP.{stat,strace,perf}. Divide the counts by the loads printed.
# Needs perf (Debian: linux-perf) or strace; run bench/zeo/run.sh --quick
# once first, or `cargo build --release -p zeo`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kind=${1:?python or bbru} processes=${2:?processes} mode=${3:?stat, strace or record}
out=${4:-$repo/target/bench-zeo/probe}
python=$("$repo/tools/python-env.sh" | tail -n 1)
bbru_bin=${CARGO_TARGET_DIR:-$repo/target}/release/bbru-zeo
mkdir -p "$out"
out=$(cd "$out" && pwd)
data=$(mktemp -d "$out/data.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

case $kind in
python) "$python" -m ZEO.runzeo -a "127.0.0.1:$port" -f "$data/Data.fs" >"$data/server.log" 2>&1 & ;;
bbru) "$bbru_bin" -a "127.0.0.1:$port" -f "$data/Data.fs" >"$data/server.log" 2>&1 & ;;
*) echo "probe.sh: unknown server kind $kind" >&2; exit 2 ;;
esac
server_pid=$!
tool_pid=
cleanup() {
    [[ -n $tool_pid ]] && kill -INT "$tool_pid" 2>/dev/null && wait "$tool_pid" || true
    kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true
    rm -rf "$data"
}
trap cleanup EXIT

for ((i = 0; i < 300; i++)); do
    [[ -n $(ss -Hltn "sport = :$port") ]] && break
    sleep 0.1
done
"$python" "$repo/bench/zeo/workload.py" --address "127.0.0.1:$port" --clients 8 \
    --objects 2000 --repeat 1 >/dev/null 2>&1

"$python" "$repo/bench/zeo/load_probe.py" collect "127.0.0.1:$port" "$data/oids"
name=$kind-c$processes
case $mode in
stat) perf stat -e task-clock,context-switches,cpu-migrations -p "$server_pid" -o "$out/$name.stat" & ;;
strace) strace -c -f -p "$server_pid" -o "$out/$name.strace" 2>/dev/null & ;;
record) perf record -g -p "$server_pid" -o "$out/$name.perf" 2>/dev/null & ;;
*) echo "probe.sh: unknown mode $mode" >&2; exit 2 ;;
esac
tool_pid=$!
sleep 1 # let the tool attach
"$python" "$repo/bench/zeo/load_probe.py" load "127.0.0.1:$port" "$processes" "$data/oids"
kill -INT "$tool_pid"
wait "$tool_pid" || true
tool_pid=
case $mode in
stat) grep -E 'task-clock|context-switches|cpu-migrations' "$out/$name.stat" ;;
strace) head -12 "$out/$name.strace" ;;
record) echo "perf report -i $out/$name.perf --no-children --sort dso,symbol" ;;
esac
