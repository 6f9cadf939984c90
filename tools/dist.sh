#!/usr/bin/env bash
# Makes a release archive bbru-X.Y.Z.tar.gz from a tagged checkout, as a forge's
# automatic release archive is: a single top directory bbru-X.Y.Z holding the
# source at the tag (git archive). `bbru deploy` builds it on the server, or, with
# --with-binaries, uses the bin/bbru and bin/bbru-zeo shipped inside.
#
#   tools/dist.sh [--with-binaries | --binaries-from DIR] [--out DIR] [TAG]
#
#   TAG                  vX.Y.Z or X.Y.Z (default: the tag at HEAD)
#   --with-binaries      build bin/bbru and bin/bbru-zeo (cargo build --release) from
#                        the archived source and ship them in the archive
#   --binaries-from DIR  ship DIR/bbru (and DIR/bbru-zeo if there) instead of building
#   --out DIR            where the archive goes (default: target/dist)
#
# Prints the archive's path on its last line.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/target/dist
tag=
binaries=
from=

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

while (($#)); do
    case $1 in
    --with-binaries) binaries=build ;;
    --binaries-from) binaries=copy from=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    -h | --help) usage ;;
    -*) echo "dist.sh: unknown option $1" >&2; usage ;;
    *) tag=$1 ;;
    esac
    shift
done

cd "$repo"
if [[ -z $tag ]]; then
    tag=$(git describe --tags --exact-match HEAD 2>/dev/null) || {
        echo "dist.sh: HEAD carries no tag; give one (vX.Y.Z) or tag the release first" >&2
        exit 1
    }
fi
git rev-parse --verify --quiet "$tag^{commit}" >/dev/null || { echo "dist.sh: no such tag or commit: $tag" >&2; exit 1; }
version=${tag#v}
[[ $version =~ ^[0-9]+(\.[0-9A-Za-z-]+)+$ ]] || { echo "dist.sh: $tag is not a version tag (vX.Y.Z)" >&2; exit 1; }
name=bbru-$version
mkdir -p "$out"
archive=$(cd "$out" && pwd)/$name.tar.gz

if [[ -z $binaries ]]; then
    git archive --format=tar.gz --prefix="$name/" -o "$archive" "$tag"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    git archive --format=tar --prefix="$name/" "$tag" | tar -x -C "$work"
    mkdir -p "$work/$name/bin"
    if [[ $binaries == build ]]; then
        (cd "$work/$name" && cargo build --release --bin bbru --bin bbru-zeo)
        from=$work/$name/target/release
    fi
    cp "$from/bbru" "$work/$name/bin/"
    if [[ -e $from/bbru-zeo ]]; then cp "$from/bbru-zeo" "$work/$name/bin/"; fi
    rm -rf "$work/$name/target"
    tar -C "$work" -czf "$archive" "$name"
fi
echo "$archive"
