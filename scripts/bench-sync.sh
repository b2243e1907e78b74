#!/usr/bin/env bash
# Store-to-store sync below whole layers: imageA and imageB share a base
# (SOURCE, default /usr/libexec); imageA adds 8 MiB of its own, imageB adds
# 8 MiB of its own and rewrites 4 KiB in the middle of the base's largest file
# (so Docker would ship that file whole in imageB's layer). Syncs A, then B,
# into a second store; prints what moved and the seconds taken (RUNS runs,
# median; default 3).
#
#   scripts/bench-sync.sh [SOURCE]
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE="${1:-/usr/libexec}"
RUNS="${RUNS:-3}"
cargo build --release --quiet --features cli
LS="$PWD/target/release/layerstore"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/base" && cp -a "$SOURCE/." "$WORK/base/"
BIG=$(find "$WORK/base" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
cp -a "$WORK/base" "$WORK/a" && cp -a "$WORK/base" "$WORK/b"
head -c 8M /dev/urandom >"$WORK/a/own-a"
head -c 8M /dev/urandom >"$WORK/b/own-b"
REL=${BIG#"$WORK/base/"}
SIZE=$(stat -c %s "$BIG")
head -c 4096 /dev/urandom | dd of="$WORK/b/$REL" bs=1 seek=$((SIZE / 2)) conv=notrunc status=none
export LAYERSTORE_DIR="$WORK/src"
"$LS" init >/dev/null
"$LS" commit "$WORK/base" --tag base >/dev/null
"$LS" commit "$WORK/a" --parent base --tag image-a >/dev/null
"$LS" commit "$WORK/b" --parent base --tag image-b >/dev/null
echo "base: $(du -sb "$WORK/base" | cut -f1) bytes; largest file $REL ($SIZE bytes)"

times=()
for run in $(seq "$RUNS"); do
    rm -rf "$WORK/dst"
    "$LS" sync image-a --to "$WORK/dst" >"$WORK/a.out"
    t0=$(date +%s.%N)
    "$LS" sync image-b --to "$WORK/dst" >"$WORK/b.out"
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc)")
done
echo "sync image-a to an empty store:"; sed 's/^/  /' "$WORK/a.out"
echo "then sync image-b:"; sed 's/^/  /' "$WORK/b.out"
printf 'seconds for image-b (median of %s): %s\n' "$RUNS" "$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
