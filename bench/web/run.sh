#!/usr/bin/env bash
# Web benchmark: requests/s and latency (p50, p99) of `bbru serve` (release
# build) under wrk, for a page view and a folder listing of 100 pages, first
# on an embedded FileStorage, then as the ZEO client of a bbru-zeo serving
# the same Data.fs (with its read leases, the default, then without them:
# --lease-ms 0, a round trip to the server per request); and, as the anchor, an axum handler answering the page's
# bytes from memory (bench/src/bin/web_anchor.rs): the HTTP stack and wrk on
# this machine with no application work. Prints a Markdown table; --write also
# rewrites the web section of BENCHMARKS.md.
#
#   bench/web/run.sh [--quick] [--duration S] [--threads T] [--connections C]
#                    [--pages N] [--dir DIR] [--write]
#
#   --quick          3 s runs, for a smoke test
#   --duration S     seconds of each measured wrk run (env WEB_BENCH_DURATION, default 10)
#   --threads T      wrk threads                      (env WEB_BENCH_THREADS, default 2)
#   --connections C  wrk connections, all kept open   (env WEB_BENCH_CONNECTIONS, default 32)
#   --pages N        pages in the listed folder       (env WEB_BENCH_PAGES, default 100)
#   --dir DIR        scratch directory (env WEB_BENCH_DIR, default
#                    <repo>/target/bench-web; emptied first; a few MB)
#   --write          rewrite the web section of <repo>/BENCHMARKS.md
#
# The site: a site.toml declaring the bootstrap manager (so the first start
# creates the site), public; bench/web/populate.py makes /page (a Markdown
# page of about 1.5 KB) and /folder (N pages), through the JSON API if the
# site has it, else through the forms. Each target is checked to answer 200,
# warmed up by a 2 s wrk run, then measured: `wrk -t T -c C -d S` with
# bench/web/summary.lua, which prints the JSON that bench/web/report.py
# reads. Anonymous GETs, no keep-alive limit, closed loop (wrk sends the
# next request of a connection when the previous one is answered). Around
# each measured run, the CPU time of the instance and of bbru-zeo
# (/proc/PID/stat) and the instance's storage loads (bbru_storage_loads_total
# of /@@metrics) are read, for the cost per request.
#
# Needs cargo, python3, curl, and wrk (installed with apt-get if missing:
# root, or sudo). wrk runs on the same machine as the server: both share its
# cores.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
duration=${WEB_BENCH_DURATION:-10}
threads=${WEB_BENCH_THREADS:-2}
connections=${WEB_BENCH_CONNECTIONS:-32}
pages=${WEB_BENCH_PAGES:-100}
dir=${WEB_BENCH_DIR:-$repo/target/bench-web}
write=0
command_line="bench/web/run.sh${*:+ $*}"

bench_name=web/run.sh
# usage, log, die, free_port, pids (stopped on exit).
source "$repo/bench/lib.sh"

while (($#)); do
    case $1 in
    --quick) duration=3 ;;
    --duration) duration=${2:?}; shift ;;
    --threads) threads=${2:?}; shift ;;
    --connections) connections=${2:?}; shift ;;
    --pages) pages=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "web/run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done


if ! command -v wrk >/dev/null; then
    log "installing wrk with apt-get"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 ||
        { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2; } ||
        die "apt-get install wrk failed"
fi

log "building (cargo build --release -p bbru -p zeo -p bbru-bench)"
(cd "$repo" && cargo build --release -p bbru --bin bbru -p zeo --bin bbru-zeo \
    -p bbru-bench --bin web-anchor >&2)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bbru=$target_dir/release/bbru
zeo=$target_dir/release/bbru-zeo
anchor=$target_dir/release/web-anchor
[[ -x $bbru && -x $zeo && -x $anchor ]] || die "missing $bbru, $zeo or $anchor after the build"

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


# wait_for PID WHAT COMMAND...: polls COMMAND until it succeeds (60 s at most),
# failing with the log if the process PID exits.
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

# start_instance NAME ARGS...: `bbru serve` in $dir/NAME on a free port, with
# the storage ARGS; sets $base once /@@health answers 200.
start_instance() {
    local name=$1
    shift
    local port
    port=$(free_port)
    mkdir -p "$dir/$name"
    (cd "$dir/$name" && BBRU_LOG=warn exec "$bbru" serve --listen "127.0.0.1:$port" \
        --site-config "$dir/site.toml" "$@") >"$dir/$name.log" 2>&1 &
    instance_pid=$!
    pids+=("$instance_pid")
    base=http://127.0.0.1:$port
    wait_for "$instance_pid" "bbru serve ($name)" "$dir/$name.log" curl -fsS "$base/@@health"
}

# stop PID: SIGTERM (requests in flight finish), and forget it.
stop() {
    kill -TERM "$1"
    wait "$1" 2>/dev/null || true
    local keep=() pid
    for pid in "${pids[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

# cpu_ticks PID: the user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The instance's count of objects loaded from its storage (connection cache misses).
# (0 for the anchor, which has no metrics.)
storage_loads() { curl -fsS "$base/@@metrics" | awk '$1 == "bbru_storage_loads_total" { v = $2 } END { print v + 0 }'; }

# measure LABEL URL [SERVER_PID]: one warm-up run, then the measured one; the
# JSON of summary.lua goes to $out/LABEL.json, wrk's own report to
# $out/LABEL.txt, and what the measured run cost the instance (CPU time,
# storage loads) and the ZEO server (CPU time) to $out/LABEL.cost.json.
measure() {
    local label=$1 url=$2 server_pid=${3:-}
    curl -fsS -o /dev/null "$url" || die "$url does not answer 200"
    wrk -t "$threads" -c "$connections" -d 2s "$url" >/dev/null
    log "$label: wrk -t $threads -c $connections -d ${duration}s $url"
    local loads cpu server=null
    loads=$(storage_loads)
    cpu=$(cpu_ticks "$instance_pid")
    [[ -z $server_pid ]] || server=$(cpu_ticks "$server_pid")
    wrk -t "$threads" -c "$connections" -d "${duration}s" --latency \
        -s "$repo/bench/web/summary.lua" "$url" >"$out/$label.txt"
    loads=$(($(storage_loads) - loads))
    cpu=$(($(cpu_ticks "$instance_pid") - cpu))
    [[ -z $server_pid ]] || server=$(($(cpu_ticks "$server_pid") - server))
    grep '^{' "$out/$label.txt" | tail -n 1 >"$out/$label.json"
    [[ -s $out/$label.json ]] || die "no summary in $out/$label.txt"
    printf '{"storage_loads": %d, "instance_cpu_ticks": %d, "server_cpu_ticks": %s, "clock_ticks_per_s": %d}\n' \
        "$loads" "$cpu" "$server" "$(getconf CLK_TCK)" \
        >"$out/$label.cost.json"
}

cut -d' ' -f1-3 /proc/loadavg >"$out/loadavg-start"
start=$SECONDS

log "embedded FileStorage: $dir/Data.fs"
start_instance embedded --file "$dir/Data.fs"
python3 "$repo/bench/web/populate.py" "$base" "$login" "$password" --pages "$pages" \
    >"$out/populated-through"
measure embedded-page "$base/page"
measure embedded-rendered "$base/page?render=1"
measure embedded-folder "$base/folder"
measure embedded-nested "$base/folder/folder-001"
curl -fsS -o "$dir/page.html" "$base/page" || die "$base/page does not answer 200"
stop "$instance_pid"

# The anchor: the same bytes as /page from memory, by an axum handler (web-anchor),
# measured as the instance is (its CPU in place of the instance's).
anchor_port=$(free_port)
log "web-anchor on 127.0.0.1:$anchor_port serving the bytes of /page ($(wc -c <"$dir/page.html") bytes)"
"$anchor" --listen "127.0.0.1:$anchor_port" --body "$dir/page.html" >"$dir/anchor.log" 2>&1 &
instance_pid=$!
pids+=("$instance_pid")
base=http://127.0.0.1:$anchor_port
wait_for "$instance_pid" web-anchor "$dir/anchor.log" curl -fsS -o /dev/null "$base/page"
measure anchor-page "$base/page"
stop "$instance_pid"

# zeo_client LABEL ARGS...: bbru-zeo ARGS on the same Data.fs, an instance as its
# client, every target measured as LABEL-TARGET.
zeo_client() {
    local label=$1
    shift
    zeo_port=$(free_port)
    log "bbru-zeo $* on 127.0.0.1:$zeo_port serving the same Data.fs"
    BBRU_LOG=warn "$zeo" -a "127.0.0.1:$zeo_port" -f "$dir/Data.fs" "$@" >"$dir/$label.zeo.log" 2>&1 &
    zeo_pid=$!
    pids+=("$zeo_pid")
    wait_for "$zeo_pid" bbru-zeo "$dir/$label.zeo.log" bash -c "exec 3<>/dev/tcp/127.0.0.1/$zeo_port"
    start_instance "$label" --zeo "127.0.0.1:$zeo_port"
    measure "$label-page" "$base/page" "$zeo_pid"
    measure "$label-rendered" "$base/page?render=1" "$zeo_pid"
    measure "$label-folder" "$base/folder" "$zeo_pid"
    measure "$label-nested" "$base/folder/folder-001" "$zeo_pid"
    stop "$instance_pid"
    stop "$zeo_pid"
}
zeo_client zeo-client
zeo_client zeo-client-no-lease --lease-ms 0
log "all runs took $((SECONDS - start)) s"

PYTHONPATH="$repo/bench" python3 - "$out" "$command_line" "$duration" "$threads" \
    "$connections" "$pages" >"$out/meta.json" <<'EOF'
import datetime, json, subprocess, sys

out, command, duration, threads, connections, pages = sys.argv[1:7]

from machine_info import cpu_model, mem, run

wrk = subprocess.run(['wrk', '-v'], capture_output=True, text=True)
wrk_version = (wrk.stdout or wrk.stderr).split('\n')[0].split(' [')[0].strip() or 'unknown'
print(json.dumps({
    'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    'command': command,
    'duration_s': int(duration),
    'threads': int(threads),
    'connections': int(connections),
    'pages': int(pages),
    'populated_through': open(f'{out}/populated-through').read().strip(),
    'nproc': run('nproc'),
    'kernel': run('uname', '-r'),
    'cpu': cpu_model(),
    'mem': mem(),
    'loadavg_start': open(f'{out}/loadavg-start').read().split(),
    'loadavg_end': open('/proc/loadavg').read().split()[:3],
    'rustc': run('rustc', '--version'),
    'wrk': wrk_version,
}, indent=1))
EOF

write_args=()
if ((write)); then
    write_args=(--write "$repo/BENCHMARKS.md")
    notes=$repo/bench/web/observations.md
    [[ -f $notes ]] && write_args+=(--notes "$notes")
fi
python3 "$repo/bench/web/report.py" "$out" "${write_args[@]}"
log "raw results in $out"
