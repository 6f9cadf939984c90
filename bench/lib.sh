# Shell pieces the benchmark scripts share; `source` it after setting
# `bench_name` (how the script calls itself in messages), e.g.
#
#   bench_name=web/create.sh
#   source "$repo/bench/lib.sh"
#
# Gives usage (the script's opening comment, up to `set -euo`), log and die,
# free_port, and `pids`: processes added to it are stopped (SIGTERM, then
# waited for) when the script exits, whatever happens.

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

log() { echo "$bench_name: $*" >&2; }
die() { log "$*"; exit 1; }

# A free loopback TCP port (bound and released; nothing else here takes it
# before the server does).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
stop_pids() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_pids EXIT
