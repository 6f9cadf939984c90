#!/usr/bin/env bash
# The project's test command: everything CI runs, on a fresh machine.
#
# 1. The Python ZODB 6.4 / ZEO 6.2 environment for the interop tests
#    (tools/python-env.sh: a venv under .venv, pinned by
#    tools/python-requirements.txt). Interop tests fail, never skip, without it.
# 2. Formatting and lint checks.
# 3. Every test of the workspace, Python's storage suites against our
#    server among them; then one closing line with the totals.
set -euo pipefail
cd "$(dirname "$0")/.."

BBRU_PYTHON=$(bash tools/python-env.sh | tail -n 1)
export BBRU_PYTHON
echo "python for interop tests: $BBRU_PYTHON"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# Every test binary prints its own result line; the last one is often a
# doc-test binary with nothing in it, so close with the sum of them all.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
