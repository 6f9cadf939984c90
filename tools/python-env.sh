#!/usr/bin/env bash
# Create (or reuse) the Python venv with ZODB/ZEO that the interop tests and
# benchmarks run, and print its python's path as the last line on stdout.
#
#   tools/python-env.sh            # venv at <repo>/.venv
#   BBRU_VENV=/some/dir tools/python-env.sh
#
# Idempotent: the venv is (re)installed only when the sha256 of
# tools/python-requirements.txt differs from the one recorded in the venv's
# stamp file. Safe to run concurrently: an flock on "<venv>.lock" serialises
# the processes. All venv/pip output goes to stderr.
set -euo pipefail

exec 3>&1 1>&2 # fd 3 = the real stdout (only the final path goes there)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requirements="$repo/tools/python-requirements.txt"
venv="${BBRU_VENV:-$repo/.venv}"
stamp="$venv/.bbru-requirements.sha256"
python="$venv/bin/python"

die() {
    echo "python-env.sh: $*"
    exit 1
}

command -v python3 >/dev/null || die "python3 not found on PATH (tested with CPython 3.11)"
command -v flock >/dev/null || die "flock not found (Debian package util-linux)"
[[ -f $requirements ]] || die "missing $requirements"

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$want" ]] && "$python" -c '' 2>/dev/null; then
    echo "$python" >&3
    exit 0
fi

make_venv() {
    python3 -m venv --clear "$venv"
}

if ! "$python" -m pip --version >/dev/null 2>&1; then
    # --clear below empties the directory: only ever do that to a venv.
    if [[ -d $venv && -n $(ls -A "$venv") && ! -f $venv/pyvenv.cfg ]]; then
        die "$venv exists, is not empty and is not a venv; refusing to touch it"
    fi
    echo "python-env.sh: creating venv $venv"
    if ! make_venv; then
        # Debian ships ensurepip (which venv needs for pip) in python3-venv.
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "python-env.sh: 'python3 -m venv' failed; installing python3-venv with apt-get"
            apt-get install -y python3-venv || { apt-get update && apt-get install -y python3-venv; } ||
                die "apt-get install python3-venv failed"
            make_venv || die "'python3 -m venv $venv' failed even after installing python3-venv"
        else
            die "'python3 -m venv $venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv) and retry"
        fi
    fi
fi

rm -f "$stamp"
echo "python-env.sh: installing $requirements into $venv"
"$python" -m pip install --disable-pip-version-check --no-input -r "$requirements" ||
    die "pip install -r $requirements failed (is PyPI reachable?)"
echo "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"

echo "$python" >&3
