#!/usr/bin/env bash
# Blob throughput through ZEO, Python's runzeo beside bbru-zeo in one run, in
# both of ZEO's blob modes (a client blob cache, the server's directory
# shared): bench/zeo/blobs.py does the work and prints the table.
#
#   bench/zeo/blobs.sh [--count N] [--mib M] [--rounds R] [--dir DIR]
#
# Builds bbru-zeo in release mode and gets the Python venv of
# tools/python-env.sh (ZODB 6.4, ZEO 6.2) first. Scratch space: about
# 3 x N x M MiB under target/bench-zeo-blobs.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
(cd "$repo" && cargo build --release -p zeo --bins >&2)
python=$("$repo/tools/python-env.sh" | tail -n 1)
exec "$python" "$repo/bench/zeo/blobs.py" "${CARGO_TARGET_DIR:-$repo/target}/release/bbru-zeo" "$@"
