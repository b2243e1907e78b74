#!/usr/bin/env bash
# Online gc: how long `layerstore gc` takes with nothing to collect on a store
# holding TREE, and how much a gc loop running beside them slows commits.
#
#   scripts/bench-online-gc.sh [--runs N] [--gc-sleep S] [--beside gc|version] [TREE]
#
# TREE defaults to /work/data/linux/linux-source-6.1. Everything is written under
# $BENCH_WORK (default /work/data/bench-online-gc), never inside the git
# repository. Raw figures go to $RESULTS (default $BENCH_WORK/results-<date>.tsv);
# medians are printed.
#
# The store holds TREE committed once (tag linux). Then:
# 1. gc with nothing to collect: `layerstore gc` timed RUNS times (page cache
#    warm), and `gc --dry-run` once.
# 2. commits with and without gc beside them, alternating, RUNS pairs: each
#    commit is `layerstore commit TREE --tag c` with the stat cache removed
#    first (`cache/stat/`), so every file is read, cut, hashed and found
#    stored: the work of a writer deduplicating against the store. "With gc"
#    runs `layerstore gc` in a loop (GC_SLEEP seconds between runs, default
#    0: back to back) for as long as the commit runs; the figure is the
#    commit's wall time, the ratio with ÷ without within each pair.
#    `--beside version` runs `layerstore --version` in that loop instead of
#    gc: the floor, what the loop's process spawning alone costs the commit.
#
# Environment: BENCH_WORK, RESULTS, RUNS (default 3), GC_SLEEP, BESIDE,
# LAYERSTORE (a binary to use instead of building target/release/layerstore).
set -euo pipefail
{ # one compound command: bash parses it whole before running it.

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

RUNS=${RUNS:-3}
GC_SLEEP=${GC_SLEEP:-0}
BESIDE=${BESIDE:-gc}
TREE=/work/data/linux/linux-source-6.1
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift ;;
    --gc-sleep) GC_SLEEP=$2; shift ;;
    --beside) BESIDE=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
[[ -d $TREE ]] || { echo "no tree at $TREE" >&2; exit 2; }
case $BESIDE in
gc) BESIDE_ARGS=(gc) ;;
version) BESIDE_ARGS=(--version) ;;
*) echo "--beside takes gc or version, not $BESIDE" >&2; exit 2 ;;
esac

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=${BENCH_WORK:-/work/data/bench-online-gc}
. "$REPO_ROOT/scripts/lib/work-dir.sh"
WORK=$(outside_repo "$WORK" BENCH_WORK) || exit 2
STAMP=$(date +%Y%m%dT%H%M%S)
RESULTS=${RESULTS:-$WORK/results-$STAMP.tsv}
LOG=$WORK/log-$STAMP.txt
: >"$LOG"
note() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }

if [[ -n ${LAYERSTORE:-} ]]; then
    LS=$LAYERSTORE
else
    note "building layerstore (cargo build --release --features cli)"
    (cd "$REPO_ROOT" && cargo build --release --features cli) >>"$LOG" 2>&1 ||
        { echo "cargo build failed, see $LOG" >&2; exit 3; }
    LS=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/layerstore
fi
BUILD=$(cd "$REPO_ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)

STORE=$WORK/store
rm -rf "$STORE"
note "committing $TREE into $STORE"
"$LS" --store "$STORE" init >/dev/null
"$LS" --store "$STORE" commit "$TREE" --tag linux >/dev/null
printf 'what\trun\tseconds\n' >"$RESULTS"

# Seconds (wall) that "$@" takes.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >>"$LOG" 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

cat "$STORE"/packs/* >/dev/null
"$LS" --store "$STORE" gc >>"$LOG" 2>&1
for ((r = 1; r <= RUNS; r++)); do
    printf 'gc-nothing\t%d\t%s\n' "$r" "$(timed "$LS" --store "$STORE" gc)" >>"$RESULTS"
done
"$LS" --store "$STORE" gc --dry-run --json >>"$LOG" 2>&1

commit_once() {
    rm -rf "$STORE/cache/stat"
    timed "$LS" --store "$STORE" commit "$TREE" --tag c
}
for ((r = 1; r <= RUNS; r++)); do
    printf 'commit-alone\t%d\t%s\n' "$r" "$(commit_once)" >>"$RESULTS"
    stop=$WORK/.stop-$$
    rm -f "$stop"
    (
        n=0
        while [[ ! -e $stop ]]; do
            "$LS" --store "$STORE" "${BESIDE_ARGS[@]}" >>"$LOG" 2>&1 || echo "$BESIDE failed" >>"$LOG"
            n=$((n + 1))
            sleep "$GC_SLEEP"
        done
        echo "$n" >"$stop.count"
    ) &
    loop=$!
    printf 'commit-beside-gc\t%d\t%s\n' "$r" "$(commit_once)" >>"$RESULTS"
    touch "$stop"
    wait "$loop"
    printf 'gc-runs-beside\t%d\t%s\n' "$r" "$(cat "$stop.count")" >>"$RESULTS"
    rm -f "$stop" "$stop.count"
done
"$LS" --store "$STORE" fsck >>"$LOG" 2>&1 || { echo "fsck failed, see $LOG" >&2; exit 1; }

med() { awk -F'\t' -v w="$1" '$1 == w {print $3}' "$RESULTS" | median; }
alone=$(med commit-alone)
beside=$(med commit-beside-gc)
ratios=$(paste <(awk -F'\t' '$1 == "commit-beside-gc" {print $3}' "$RESULTS") \
    <(awk -F'\t' '$1 == "commit-alone" {print $3}' "$RESULTS") | awk '{print $1 / $2}' | median)
echo "build $BUILD, tree $TREE, $RUNS runs, beside: $BESIDE, sleep ${GC_SLEEP}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gc with nothing to collect: median $(med gc-nothing) s"
echo "commit alone: median $alone s; beside a $BESIDE loop: median $beside s (median ratio $ratios; $BESIDE runs per commit: $(awk -F'\t' '$1 == "gc-runs-beside" {print $3}' "$RESULTS" | paste -sd' '))"
echo "raw: $RESULTS"
exit 0
}
