#!/usr/bin/env bash
# Search benchmark: generates a site of 100,000 pages of Russian and English text
# through the application's own create path (each page indexed in its transaction),
# on a FileStorage, then times queries through bbru::search::query::search as an
# anonymous reader, once cold (a freshly opened database) and --repeat times warm.
# Prints the generation time, the Data.fs size and a table per query (results, cold,
# warm median, p90, max in ms). Workload: the doc of bench/src/bin/search_bench.rs.
#
#   bench/search/run.sh [--pages N] [--repeat R] [--dir DIR] [--reuse]
#
#   --pages N     pages to generate (default 100000; 1000 per folder)
#   --repeat R    warm runs per query (default 20)
#   --dir DIR     scratch directory (default <repo>/target/bench-search; about
#                 1.5 GB for 100,000 pages)
#   --reuse       query the Data.fs a previous run made instead of generating
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pages=100000
repeat=20
dir=$repo/target/bench-search
reuse=()

while (($#)); do
    case $1 in
    --pages) pages=${2:?}; shift ;;
    --repeat) repeat=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --reuse) reuse=(--reuse) ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "search/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

echo "search/run.sh: building (cargo build --release -p bbru-bench --bin search-bench)" >&2
(cd "$repo" && cargo build --release -p bbru-bench --bin search-bench)
mkdir -p "$dir"
exec "${CARGO_TARGET_DIR:-$repo/target}/release/search-bench" \
    --file "$dir/Data.fs" --pages "$pages" --repeat "$repeat" "${reuse[@]}"
