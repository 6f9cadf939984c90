#!/usr/bin/env bash
# Concurrent creations benchmark: pages created per second into one folder
# through the JSON API at 1, 4 and 16 concurrent clients, against two
# `bbru serve` instances (release build) of one bbru-zeo, each client's
# requests alternating between them. Also counts, per level, the 409s (a
# creation that still conflicted after the instance's retries), the
# instances' retries and merged conflicts, and checks that every
# acknowledged creation is on both instances. Prints a Markdown table;
# --write also rewrites the creations section of BENCHMARKS.md.
#
#   bench/web/create.sh [--quick] [--seconds S] [--clients LIST] [--dir DIR]
#                       [--write]
#
#   --quick          3 s per level, for a smoke test
#   --seconds S      seconds per level (env CREATE_BENCH_SECONDS, default 10)
#   --clients LIST   client counts     (env CREATE_BENCH_CLIENTS, default 1,4,16)
#   --dir DIR        scratch directory (env CREATE_BENCH_DIR, default
#                    <repo>/target/bench-create; emptied first)
#   --zeo-args ARGS  more flags for bbru-zeo, e.g. "--lease-ms 0" to measure
#                    without read leases (env CREATE_BENCH_ZEO_ARGS)
#   --write          rewrite the creations section of <repo>/BENCHMARKS.md
#
# env CREATE_BENCH_ZEO=PATH runs that bbru-zeo binary instead of the one built
# here (to compare two builds of the server in one sitting).
#
# The load generator is bench/src/bin/web_create.rs (`web-create`): one
# thread per client, one request in flight each (closed loop), a page of a
# name of its own per request, a fresh folder per level. The instances run
# with their defaults (16 connections, conflict_retries = 8). Everything
# runs on this machine: clients, instances and server share its cores.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${CREATE_BENCH_SECONDS:-10}
clients=${CREATE_BENCH_CLIENTS:-1,4,16}
dir=${CREATE_BENCH_DIR:-$repo/target/bench-create}
zeo_args=${CREATE_BENCH_ZEO_ARGS:-}
write=0
command_line="bench/web/create.sh${*:+ $*}"

bench_name=web/create.sh
# usage, log, die, free_port, pids (stopped on exit).
source "$repo/bench/lib.sh"

while (($#)); do
    case $1 in
    --quick) seconds=3 ;;
    --seconds) seconds=${2:?}; shift ;;
    --clients) clients=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --zeo-args) zeo_args=${2?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "create.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done


log "building (cargo build --release -p bbru -p zeo -p bbru-bench)"
(cd "$repo" && cargo build --release -p bbru --bin bbru -p zeo --bin bbru-zeo \
    -p bbru-bench --bin web-create >&2)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bbru=$target_dir/release/bbru
zeo=${CREATE_BENCH_ZEO:-$target_dir/release/bbru-zeo}
load=$target_dir/release/web-create
[[ -x $bbru && -x $zeo && -x $load ]] || die "missing $bbru, $zeo or $load after the build"

rm -rf "$dir"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/results
mkdir -p "$out"
login=admin
password=bench-password
cat >"$dir/site.toml" <<EOF
[site]
title = "Benchmark site"
public = true

[bootstrap_manager]
login = "$login"
password = "$password"
EOF


# wait_for PID WHAT LOG COMMAND...: polls COMMAND until it succeeds (60 s at
# most), failing with the log if the process PID exits.
wait_for() {
    local pid=$1 what=$2 log=$3
    shift 3
    local deadline=$((SECONDS + 60))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2
            die "$what exited at start (log: $log)"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$log" >&2; die "$what not ready after 60 s"; }
        sleep 0.05
    done
}

zeo_port=$(free_port)
log "bbru-zeo on 127.0.0.1:$zeo_port serving $dir/Data.fs"
# shellcheck disable=SC2086 # the extra flags are words
BBRU_LOG=warn "$zeo" -a "127.0.0.1:$zeo_port" -f "$dir/Data.fs" $zeo_args >"$dir/zeo.log" 2>&1 &
zeo_pid=$!
pids+=("$zeo_pid")
wait_for "$zeo_pid" bbru-zeo "$dir/zeo.log" bash -c "exec 3<>/dev/tcp/127.0.0.1/$zeo_port"

# One instance after the other: the first creates the site.
bases=()
for name in one two; do
    port=$(free_port)
    mkdir -p "$dir/$name"
    (cd "$dir/$name" && BBRU_LOG=warn exec "$bbru" serve --listen "127.0.0.1:$port" \
        --site-config "$dir/site.toml" --secret-key-file "$dir/secret.key" \
        --zeo "127.0.0.1:$zeo_port") >"$dir/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_for "$pid" "bbru serve ($name)" "$dir/$name.log" curl -fsS "http://127.0.0.1:$port/@@health"
    bases+=(--base "http://127.0.0.1:$port")
done

cut -d' ' -f1-3 /proc/loadavg >"$out/loadavg-start"
start=$SECONDS
log "web-create ${bases[*]} --clients $clients --seconds $seconds"
"$load" "${bases[@]}" --login "$login" --password "$password" \
    --clients "$clients" --seconds "$seconds" >"$out/levels.jsonl"
log "all levels took $((SECONDS - start)) s"

PYTHONPATH="$repo/bench" python3 - "$out" "$command_line" "$seconds" >"$out/meta.json" <<'EOF'
import datetime, json, sys

out, command, seconds = sys.argv[1:4]

from machine_info import cpu_model, mem, run

print(json.dumps({
    'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    'command': command,
    'seconds': float(seconds),
    'nproc': run('nproc'),
    'kernel': run('uname', '-r'),
    'cpu': cpu_model(),
    'mem': mem(),
    'loadavg_start': open(f'{out}/loadavg-start').read().split(),
    'loadavg_end': open('/proc/loadavg').read().split()[:3],
    'rustc': run('rustc', '--version'),
}, indent=1))
EOF

write_args=()
if ((write)); then
    write_args=(--write "$repo/BENCHMARKS.md")
    notes=$repo/bench/web/create-observations.md
    [[ -f $notes ]] && write_args+=(--notes "$notes")
fi
python3 "$repo/bench/web/create_report.py" "$out" "${write_args[@]}"
log "raw results in $out"
