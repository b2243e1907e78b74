#!/usr/bin/env bash
# Costs against the length of a store's history: a store of N small commits
# ("aged") against a fresh one, in the same run.
#
#   scripts/bench-history.sh [--commits N] [--runs N] [--no-install] [TREE]
#
# TREE defaults to /work/data/linux/linux-source-6.1. Everything is written under
# $BENCH_WORK (default /work/data/bench-history), never inside the git
# repository. Raw figures go to $RESULTS (default $BENCH_WORK/results-<date>.tsv).
#
# 1. The aged store: N (default 10000) small commits made by the bench-like
#    program benches/history.rs in one process (each a 4-file image, flushed,
#    tagged ci/job-<n mod 50>, automatic maintenance on as in any handle): the
#    time it took and the files in packs/ after it.
# 2. Commit of TREE (`layerstore commit TREE --tag t`) into a copy of the
#    aged store and into a fresh store, in alternating order, RUNS times
#    (default 3); the ratio aged ÷ fresh within each run, and its median. The
#    page cache is warmed by a commit into a throwaway store first.
# 3. `Store::open` of the aged store (median of 200, in-process) and
#    `layerstore images` there (50 tags; wall time of the process, median of
#    20), with the same for a fresh store holding one tag as a floor.
#
# Environment: BENCH_WORK, RESULTS, COMMITS, RUNS, LAYERSTORE (a binary to use
# instead of building target/release/layerstore), KEEP=1 (keep the stores).
set -euo pipefail
{ # one compound command: bash parses it whole before running it.

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

COMMITS=${COMMITS:-10000}
RUNS=${RUNS:-3}
INSTALL=1
TREE=/work/data/linux/linux-source-6.1
while (($#)); do
    case $1 in
    --commits) COMMITS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --no-install) INSTALL=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
[[ -d $TREE ]] || { echo "no tree at $TREE" >&2; exit 2; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=${BENCH_WORK:-/work/data/bench-history}
. "$REPO_ROOT/scripts/lib/work-dir.sh"
WORK=$(outside_repo "$WORK" BENCH_WORK) || exit 2
STAMP=$(date +%Y%m%dT%H%M%S)
RESULTS=${RESULTS:-$WORK/results-$STAMP.tsv}
LOG=$WORK/log-$STAMP.txt
RUNDIR=$WORK/runs/$STAMP-$$
mkdir -p "$RUNDIR"
: >"$LOG"
note() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
cleanup() { [[ ${KEEP:-0} == 1 ]] || rm -rf "$RUNDIR"; }
trap cleanup EXIT

TARGET=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
LS=${LAYERSTORE:-}
if [[ -z $LS ]]; then
    LS=$TARGET/release/layerstore
    if ((INSTALL)); then
        note "building layerstore (cargo build --release --features cli)"
        (cd "$REPO_ROOT" && cargo build --release --features cli) >>"$LOG" 2>&1 ||
            { echo "cargo build failed, see $LOG" >&2; exit 3; }
    fi
fi
[[ -x $LS ]] || { echo "no layerstore binary at $LS" >&2; exit 3; }
history() { (cd "$REPO_ROOT" && cargo bench --quiet --bench history -- "$@") 2>>"$LOG"; }

# Nanoseconds of wall time of "$@" (output to the log).
nanos() {
    local start end
    start=$(date +%s%N)
    "$@" >>"$LOG" 2>&1
    end=$(date +%s%N)
    echo $((end - start))
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
ms() { awk '{printf "%.2f\n", $1 / 1e6}'; }

printf 'what\trun\tvalue\n' >"$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

note "commit: $(cd "$REPO_ROOT" && git rev-parse --short HEAD); tree: $TREE; commits: $COMMITS; runs: $RUNS"
note "load: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. The aged store.
AGED=$RUNDIR/aged
built=$(history build "$AGED" "$COMMITS")
note "$built"
files=$(find "$AGED/packs" -maxdepth 1 -type f | wc -l)
record packs_files - "$files"

# 2. Commit of TREE, aged against fresh.
"$LS" --store "$RUNDIR/warm" init >>"$LOG"
"$LS" --store "$RUNDIR/warm" commit "$TREE" >>"$LOG" 2>&1
rm -rf "$RUNDIR/warm"
ratios=()
for ((run = 1; run <= RUNS; run++)); do
    cp -a "$AGED" "$RUNDIR/aged-run"
    "$LS" --store "$RUNDIR/fresh-run" init >>"$LOG"
    sync
    if ((run % 2)); then order=(aged fresh); else order=(fresh aged); fi
    declare -A took=()
    for which in "${order[@]}"; do
        took[$which]=$(nanos "$LS" --store "$RUNDIR/$which-run" commit "$TREE" --tag bench:t)
    done
    ratio=$(awk -v a="${took[aged]}" -v f="${took[fresh]}" 'BEGIN {printf "%.3f", a / f}')
    note "run $run: commit into aged $(echo "${took[aged]}" | ms) ms, fresh $(echo "${took[fresh]}" | ms) ms, ratio $ratio"
    record commit_aged_ms "$run" "$(echo "${took[aged]}" | ms)"
    record commit_fresh_ms "$run" "$(echo "${took[fresh]}" | ms)"
    record commit_ratio "$run" "$ratio"
    ratios+=("$ratio")
    rm -rf "$RUNDIR/aged-run" "$RUNDIR/fresh-run"
done
ratio=$(printf '%s\n' "${ratios[@]}" | median)

# 3. Open and images.
opened=$(history open "$AGED")
note "aged store, $opened"
FRESH=$RUNDIR/fresh
"$LS" --store "$FRESH" init >>"$LOG"
"$LS" --store "$FRESH" commit "$REPO_ROOT/src" --tag only:one >>"$LOG" 2>&1
images_of() {
    local store=$1 i
    "$LS" --store "$store" images >>"$LOG"
    for ((i = 0; i < 20; i++)); do nanos "$LS" --store "$store" images; done | median | ms
}
tags=$("$LS" --store "$AGED" images --json | grep -o '"name"' | wc -l)
images_aged=$(images_of "$AGED")
images_fresh=$(images_of "$FRESH")
record images_aged_ms - "$images_aged"
record images_fresh_ms - "$images_fresh"

note ""
note "after $COMMITS small commits: $files files in packs/"
note "commit of $(basename "$TREE"): aged ÷ fresh, median of $RUNS runs: $ratio"
note "Store::open of the aged store: ${opened#Store::open: }"
note "layerstore images: aged store ($tags tags) $images_aged ms, fresh store (1 tag) $images_fresh ms (median of 20, whole process)"
note "raw figures: $RESULTS"
exit 0
}
