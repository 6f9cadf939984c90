#!/usr/bin/env bash
# bbru beside RelStorage 4.3 on one PostgreSQL server: the persistence-layer
# workload of bench/zodb (zodbshootout's add, update, cold, warm, hot; N
# objects per transaction) for Python ZODB 6.4 on RelStorage 4.3 and for
# bbru's crate `zodb` on PgStorage, at 1 and at 8 concurrent clients (each
# client a process with a database of its own on the same server, so the
# clients share the server, not their objects). Prints a table of objects/s
# summed over the clients (ratio = bbru / RelStorage, > 1 = bbru better);
# --write also rewrites the "PostgreSQL" section of BENCHMARKS.md.
#
#   bench/pg/run.sh [--quick] [--objects N] [--rounds R] [--clients "1 8"]
#                   [--dir DIR] [--write]
#
#   --quick        a smoke run (200 objects, 3 rounds, clients "1 2")
#   --objects N    objects per transaction (default 1000)
#   --rounds R     rounds per client process (default 5)
#   --clients L    the client counts to run, in quotes (default "1 8")
#   --dir DIR      scratch directory (default <repo>/target/bench-pg)
#   --write        rewrite the PostgreSQL section of <repo>/BENCHMARKS.md
#
# The server is a private cluster (tools/pg-cluster.sh start DIR --durable:
# fsync and synchronous commit on, PostgreSQL's defaults otherwise) on this
# machine, started here and stopped at the end; $BENCH_PG_URL names another
# server instead. Both halves run against the same server, one half after
# the other. Needs cargo, python3 and the venv of tools/python-env.sh
# (ZODB 6.4, RelStorage 4.3, psycopg2).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
objects=1000 rounds=5 clients="1 8"
dir=$repo/target/bench-pg
write=0
command_line="bench/pg/run.sh${*:+ $*}"

bench_name=pg/run.sh
source "$repo/bench/lib.sh"

while (($#)); do
    case $1 in
    --quick) objects=200 rounds=3 clients="1 2" ;;
    --objects) objects=${2:?}; shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --clients) clients=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --write) write=1 ;;
    -h | --help) usage ;;
    *) echo "pg/run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

log "building (cargo build --release -p bbru-bench)"
(cd "$repo" && cargo build --release -p bbru-bench)
rust_bin=${CARGO_TARGET_DIR:-$repo/target}/release/zodb-bench
log "getting the Python venv (tools/python-env.sh)"
python=$("$repo/tools/python-env.sh" | tail -n 1)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
out=$dir/results
rm -rf "$out"
mkdir -p "$out"

if [[ -n ${BENCH_PG_URL:-} ]]; then
    admin=$BENCH_PG_URL
else
    cluster=$dir/cluster
    "$repo/tools/pg-cluster.sh" stop "$cluster"
    admin=$("$repo/tools/pg-cluster.sh" start "$cluster" --durable | tail -n 1)
    trap '"$repo/tools/pg-cluster.sh" stop "$cluster"' EXIT
fi
log "PostgreSQL at $admin"

# A fresh database: its URL.
fresh_db() {
    local name=$1
    "$python" - "$admin" "$name" <<'PY'
import sys
import psycopg2
admin, name = sys.argv[1:3]
conn = psycopg2.connect(admin)
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
    cur.execute(f'CREATE DATABASE {name}')
conn.close()
base, _, query = admin.partition('?')
scheme, _, rest = base.partition('://')
print(f'{scheme}://{rest.split("/", 1)[0]}/{name}' + ('?' + query if query else ''))
PY
}

sizes=(--objects "$objects" --rounds "$rounds")
start=$SECONDS
for c in $clients; do
    for half in python bbru; do
        log "$c client(s): $half"
        pids=()
        for ((i = 1; i <= c; i++)); do
            url=$(fresh_db "bench_${half}_$i")
            if [[ $half == python ]]; then
                "$python" "$repo/bench/python/zodb_bench.py" --dir "$dir/$half-$i" \
                    --postgres "$url" "${sizes[@]}" >"$out/$half-c$c-$i.json" &
            else
                "$rust_bin" --dir "$dir/$half-$i" --postgres "$url" "${sizes[@]}" \
                    >"$out/$half-c$c-$i.json" &
            fi
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
    done
done
log "all runs took $((SECONDS - start)) s"

server_version=$("$python" -c "
import sys, psycopg2
c = psycopg2.connect(sys.argv[1]); cur = c.cursor(); cur.execute('SHOW server_version'); print(cur.fetchone()[0])" "$admin")
write_args=()
((write)) && write_args=(--write "$repo/BENCHMARKS.md")
PYTHONPATH="$repo/bench" "$python" "$repo/bench/pg/report.py" "$out" \
    --command "$command_line" --server "PostgreSQL $server_version" "${write_args[@]}"
