#!/usr/bin/env bash
# Writes the FileStorage fixtures of tests/fixtures/zodb with the pinned Python ZODB
# (tools/python-requirements.txt) and the scripts kept beside them:
#
#   tools/make-fixtures.sh            # rewrites tests/fixtures/zodb in place
#   tools/make-fixtures.sh OUTDIR     # writes them into OUTDIR instead (for comparing)
#
# The files are deterministic (gen_fixtures.py fakes the clock ZODB reads), so a run
# reproduces the committed bytes; the interop test `fixtures_are_what_the_script_makes`
# checks it.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scripts="$repo/tests/fixtures/zodb"
out=${1:-$scripts}
python=${BBRU_PYTHON:-$(bash "$repo/tools/python-env.sh" | tail -n 1)}

mkdir -p "$out"
out=$(cd "$out" && pwd)
# The generator prints the pack time it used; only the files matter here.
"$python" "$scripts/gen_fixtures.py" "$out" >/dev/null
# The pack leaves the unpacked file as Data.fs.old: the same bytes as unpacked.fs.
cmp -s "$out/Data.fs.old" "$out/unpacked.fs" || { echo "Data.fs.old differs from unpacked.fs" >&2; exit 1; }
rm "$out/Data.fs.old"
# Written without any ZODB code: any python3 does.
"$python" "$scripts/handmade.py" "$out/handmade.fs" >/dev/null
"$python" "$scripts/gen_expected.py" "$out" >"$out/expected.json.new"
mv "$out/expected.json.new" "$out/expected.json"
