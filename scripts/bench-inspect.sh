#!/usr/bin/env bash
# Looking inside an image (issue #22's targets): `history` and `efficiency`
# of a ten-layer image over the Linux source (each layer above the base
# changing a few hundred files: 200 rewritten, 50 removed, 50 added), time and
# peak RSS; `ls -R` of it against `find` over a checkout of it (both warm,
# output to /dev/null). Each command runs RUNS times; the median is printed.
#
# usage: scripts/bench-inspect.sh [LAYERSTORE_BIN] [SOURCE_TREE]
# BENCH_DIR=DIR keeps the store and checkout there (and reuses them when
# they are there already) instead of a temporary directory removed at exit.
set -euo pipefail
BIN="${1:-target/release/layerstore}"
SRC="${2:-/work/data/linux/linux-source-6.1}"
RUNS="${RUNS:-11}"
BIN="$(realpath "$BIN")"
if [ -n "${BENCH_DIR:-}" ]; then
    WORK="$BENCH_DIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-inspect.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
fi
export LAYERSTORE_DIR="$WORK/store"

build() {
"$BIN" init >/dev/null
cp -a "$SRC" "$WORK/tree"
"$BIN" commit "$WORK/tree" --tag linux:1 >/dev/null
mapfile -t files < <(cd "$WORK/tree" && find . -type f -name '*.c' | LC_ALL=C sort)
for layer in $(seq 2 10); do
    base=$(( (layer - 2) * 300 ))
    for i in $(seq 0 199); do
        f="${files[$((base + i))]}"
        [ -f "$WORK/tree/$f" ] && printf '/* layer %d */\n' "$layer" >> "$WORK/tree/$f"
    done
    for i in $(seq 200 249); do rm -f "$WORK/tree/${files[$((base + i))]}"; done
    mkdir -p "$WORK/tree/added-$layer"
    for i in $(seq 0 49); do head -c 4096 /dev/urandom > "$WORK/tree/added-$layer/f$i"; done
    "$BIN" commit "$WORK/tree" --parent "linux:$((layer - 1))" --tag "linux:$layer" >/dev/null
done
"$BIN" checkout linux:10 "$WORK/checkout"
rm -rf "$WORK/tree"
}
[ -d "$WORK/checkout" ] || build
printf 'layerstore %s; %s, 10 layers; entries: %s\n' "$("$BIN" --version)" "$SRC" \
    "$("$BIN" ls linux:10 -R | wc -l)"

# median wall seconds, median CPU seconds (user + system) and max peak RSS
# (MiB) of RUNS runs of a command. The CPU time is steadier than the wall
# time on a shared machine.
measure() {
    local label="$1"; shift
    local times=() cpus=() rss=0
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/t" "$@" >/dev/null
        read -r t u s m < "$WORK/t"
        times+=("$t")
        cpus+=("$(echo "$u + $s" | bc -l)")
        (( m > rss )) && rss=$m
    done
    local mid=$(( (RUNS + 1) / 2 ))
    printf '%-32s wall %5.2f s  cpu %5.2f s  peak RSS %6.1f MiB\n' "$label" \
        "$(printf '%s\n' "${times[@]}" | sort -n | sed -n "${mid}p")" \
        "$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "${mid}p")" \
        "$(echo "$rss / 1024" | bc -l)"
}
measure "history linux:10" "$BIN" history linux:10
measure "efficiency linux:10" "$BIN" efficiency linux:10
measure "efficiency linux:10 --json" "$BIN" efficiency linux:10 --json
measure "ls -R linux:10" "$BIN" ls linux:10 -R
measure "find CHECKOUT" find "$WORK/checkout"
uptime
