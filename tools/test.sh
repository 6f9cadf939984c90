#!/usr/bin/env bash
# The project's test command: everything CI runs, on a fresh machine.
#
# 1. The Python ZODB 6.4 / ZEO 6.2 environment for the interop tests
#    (tools/python-env.sh: a venv under .venv, pinned by
#    tools/python-requirements.txt). Interop tests fail, never skip, without it.
# 2. Chromium and ChromeDriver for the browser tests (crates/bbru/tests/browser),
#    Debian's chromium and chromium-driver, installed with apt-get when
#    /usr/bin/chromium or /usr/bin/chromedriver is missing (in the background,
#    while step 3 runs). The browser tests fail, never skip, without them.
# 3. PostgreSQL for the zodb-pg tests and the RelStorage interop: a private
#    cluster (tools/pg-cluster.sh: Debian's postgresql, installed with apt-get
#    when initdb is missing; initdb into a temporary directory, a unix socket
#    there and a free port on 127.0.0.1), stopped and removed at exit, its URL
#    exported as BBRU_PG_URL. A BBRU_PG_URL set by the caller points the tests
#    at an existing server instead. The tests fail, never skip, without one.
# 4. Formatting and lint checks.
# 5. Every test of the workspace, Python's storage suites against our
#    server among them; then one closing line with the totals.
set -euo pipefail
cd "$(dirname "$0")/.."

BBRU_PYTHON=$(bash tools/python-env.sh | tail -n 1)
export BBRU_PYTHON
echo "python for interop tests: $BBRU_PYTHON"

# After python-env.sh, which may itself run apt-get (python3-venv): two
# apt-gets at once would fight over dpkg's lock.
log=$(mktemp)
browser_log=$(mktemp)
pg_dir=
cleanup() {
    rm -f "$log" "$browser_log"
    if [[ -n $pg_dir ]]; then bash tools/pg-cluster.sh stop "$pg_dir"; fi
}
trap cleanup EXIT
# Before the background apt-get of chromium: pg-cluster.sh may apt-get too.
if [[ -z ${BBRU_PG_URL:-} ]]; then
    pg_dir=$(mktemp -d)
    BBRU_PG_URL=$(bash tools/pg-cluster.sh start "$pg_dir" | tail -n 1)
fi
export BBRU_PG_URL
echo "PostgreSQL for the tests: $BBRU_PG_URL"

browser_pid=
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    apt_get() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
    install=(install -y -q --no-install-recommends chromium chromium-driver)
    echo "installing chromium and chromium-driver with apt-get, in the background"
    # The package lists may be missing or stale on a fresh machine.
    { apt_get "${install[@]}" || { apt_get update -q && apt_get "${install[@]}"; }; } \
        >"$browser_log" 2>&1 &
    browser_pid=$!
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

if [[ -n $browser_pid ]]; then
    if ! wait "$browser_pid"; then
        cat "$browser_log" >&2
        echo "test.sh: apt-get install chromium chromium-driver failed" >&2
        exit 1
    fi
    echo "browser tests: $(/usr/bin/chromium --version 2>/dev/null), $(/usr/bin/chromedriver --version)"
fi

cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# Every test binary prints its own result line; the last one is often a
# doc-test binary with nothing in it, so close with the sum of them all.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
