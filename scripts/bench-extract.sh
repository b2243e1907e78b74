#!/usr/bin/env bash
# Extracting an image's layer for overlayfs (the first `mount --backend
# overlay`, which extracts it) against `checkout` of the same image, on a big
# tree, through the CLI (issue #4: extraction no slower than checkout):
#
#   scripts/bench-extract.sh [--runs N] [TREE]      (as root: overlayfs)
#
# TREE defaults to /work/data/linux/linux-source-6.1. A store under
# $BENCH_WORK (default /work/data/bench-extract) gets one commit of TREE; then
# RUNS rounds (default 6) time one extraction and one checkout each, taking
# turns at going first, each right after deleting its own previous output and
# a `sync` (both then pay the filesystem's cost of reusing freed inodes
# alike). Prints each round's ratio, their median and the ratio of the totals.
# $LAYERSTORE names the binary (default: target/release/layerstore, built).
set -euo pipefail
RUNS=6
TREE=/work/data/linux/linux-source-6.1
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
[ -d "$TREE" ] || { echo "no tree $TREE" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "overlayfs needs root" >&2; exit 2; }
cd "$(dirname "$0")/.."
if [ -z "${LAYERSTORE:-}" ]; then
    cargo build --release --features cli --bin layerstore >/dev/null 2>&1
    LAYERSTORE="$PWD/target/release/layerstore"
fi
W=${BENCH_WORK:-/work/data/bench-extract}
S=$W/store
rm -rf "$W"
mkdir -p "$W"
trap 'umount "$W/mnt" 2>/dev/null || true' EXIT
run() { "$LAYERSTORE" --store "$S" "$@"; }
run init >/dev/null
run commit "$TREE" --tag base >/dev/null

# Milliseconds that "$@" takes, after a sync (not timed).
ms() { local t0 t1; sync; sleep 1; t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
extract() {
    run container rm first >/dev/null 2>&1 || true
    rm -rf "$S/mounts/layers"
    ms run mount base "$W/mnt" --backend overlay --name first
}
checkout() { rm -rf "$W/co"; ms run checkout base "$W/co"; }

ratios=()
te=0 tc=0
for round in $(seq 1 "$RUNS"); do
    if ((round % 2)); then e=$(extract); c=$(checkout); else c=$(checkout); e=$(extract); fi
    r=$(echo "scale=3; $e / $c" | bc)
    ratios+=("$r")
    te=$((te + e)) tc=$((tc + c))
    echo "round $round: extraction $e ms, checkout $c ms, ratio $r"
done
run container rm first >/dev/null 2>&1 || true
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
echo "extraction ÷ checkout: median $median; totals $te ms ÷ $tc ms = $(echo "scale=3; $te / $tc" | bc)"
