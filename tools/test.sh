#!/usr/bin/env bash
# The project's test command: everything CI runs, on a fresh machine.
#
# 1. The Python ZODB 6.4 / ZEO 6.2 environment for the interop tests
#    (tools/python-env.sh: a venv under .venv, pinned by
#    tools/python-requirements.txt). Interop tests fail, never skip, without it.
# 2. Formatting and lint checks.
# 3. Every test of the workspace, Python's storage suites against our
#    server among them.
set -euo pipefail
cd "$(dirname "$0")/.."

BBRU_PYTHON=$(bash tools/python-env.sh | tail -n 1)
export BBRU_PYTHON
echo "python for interop tests: $BBRU_PYTHON"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
