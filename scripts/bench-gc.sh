#!/usr/bin/env bash
# Garbage collection: `layerstore gc` against `restic forget` + `restic prune`
# on the same images, in the same run.
#
#   scripts/bench-gc.sh [--runs N] [--images N] [--extra-mb N] [--no-install] [TREE]
#
# TREE defaults to /work/data/linux/linux-source-6.1. Everything is written under
# $BENCH_WORK (default /work/data/bench-gc), never inside the git repository.
# Raw figures go to $RESULTS (default $BENCH_WORK/results-<date>.tsv); a table of
# medians is printed.
#
# The data: N images (default 6), image i = TREE + extra/x<i> (EXTRA_MB, default
# 80 MB, of generated files: half incompressible, half text-like) + the second
# half of extra/x<i-1>. Each is committed into one layerstore store (tag
# bench:<i>) and backed up into one restic repository (same directory path, so
# restic uses its parent snapshot). Then the first half of the images is
# untagged in layerstore and `restic forget`-ed: x<1>..x<N/2> become
# unreachable, except the second half of x<N/2>, which image N/2+1 still holds,
# so its pack is half dead and must be rewritten (by gc's default 10 % threshold
# and by restic's `--max-unused 0`).
#
# That prepared state is built once. Each run copies it afresh and times, in
# alternating order, `layerstore gc` and `restic prune --max-unused 0` (restic's
# default is --max-unused 5%; 0 makes it repack every pack holding unused data,
# so it frees everything it can, as gc does). Per run also: the bytes each
# frees. Unreachable bytes = (layerstore packs before gc) − (packs of a fresh
# store into which only the kept images were committed); the share of them gc
# frees = (before − after) ÷ unreachable. Bytes are those of `packs/` (packs and
# indexes), the same for the fresh store; `du -sb` of the whole store is
# recorded as well. After the last run, each kept image of the collected store
# is checked out and compared with its tree (`diff -r`), and `fsck` must pass.
#
# Ratios are layerstore ÷ restic, computed within each run; the table shows
# medians. The page cache is warmed before each timed command.
#
# Environment: BENCH_WORK, RESULTS, RUNS (default 3), IMAGES, EXTRA_MB,
# LAYERSTORE (a binary to use instead of building target/release/layerstore),
# KEEP=1 (keep the prepared state and the run copies).
set -euo pipefail
{ # one compound command: bash parses it whole before running it.

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; }

ORIG_ARGS=("$@")
RUNS=${RUNS:-3}
IMAGES=${IMAGES:-6}
EXTRA_MB=${EXTRA_MB:-80}
INSTALL=1
TREE=/work/data/linux/linux-source-6.1
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift ;;
    --images) IMAGES=$2; shift ;;
    --extra-mb) EXTRA_MB=$2; shift ;;
    --no-install) INSTALL=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
((IMAGES >= 2)) || { echo "--images must be at least 2" >&2; exit 2; }
[[ -d $TREE ]] || { echo "no tree at $TREE" >&2; exit 2; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=${BENCH_WORK:-/work/data/bench-gc}
. "$REPO_ROOT/scripts/lib/work-dir.sh"
WORK=$(outside_repo "$WORK" BENCH_WORK) || exit 2
STAMP=$(date +%Y%m%dT%H%M%S)
RESULTS=${RESULTS:-$WORK/results-$STAMP.tsv}
LOG=$WORK/log-$STAMP.txt
RUNDIR=$WORK/runs/$STAMP-$$
TMPF=$RUNDIR/.tmp
mkdir -p "$RUNDIR"
: >"$LOG"
note() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }

# ---------------------------------------------------------------- installation
if ! command -v restic >/dev/null || ! command -v openssl >/dev/null || ! [[ -x /usr/bin/time ]]; then
    ((INSTALL)) || { echo "restic, openssl or /usr/bin/time missing and --no-install given" >&2; exit 3; }
    note "installing restic openssl time from Debian's packages"
    apt-get update >>"$LOG" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y restic openssl time >>"$LOG" 2>&1
fi

LS=${LAYERSTORE:-}
if [[ -z $LS ]]; then
    note "building layerstore (cargo build --release --features cli)"
    (cd "$REPO_ROOT" && cargo build --release --features cli) >>"$LOG" 2>&1 ||
        { echo "cargo build failed, see $LOG" >&2; exit 3; }
    LS=$REPO_ROOT/target/release/layerstore
fi
export RESTIC_PASSWORD=bench-gc

{
    echo "# bench-gc: runs=$RUNS images=$IMAGES extra_mb=$EXTRA_MB date=$(date -Is) host=$(hostname)"
    echo "# machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -sr)"
    echo "# command: $0 ${ORIG_ARGS[*]:-}"
    echo "# layerstore: $LS $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)"
    echo "# restic: $(restic version | head -1)"
    printf 'tool\tmetric\trun\tvalue\tunit\n'
} >"$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }
get() { awk -F'\t' -v t="$1" -v m="$2" -v r="$3" '$1==t&&$2==m&&$3==r{v=$4} END{print v}' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "nan" }'; }

# tm CMD...: runs CMD (output to the log); T: wall seconds; RSS: peak MB.
T=0 RSS=0
tm() {
    local tf=$TMPF.time t0 t1
    echo "+ $*" >>"$LOG"
    t0=$(date +%s%N)
    if ! /usr/bin/time -v -o "$tf" "$@" >>"$LOG" 2>&1; then
        note "FAILED: $*"; tail -n 20 "$LOG" >&2; exit 1
    fi
    t1=$(date +%s%N)
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    RSS=$(awk '/Maximum resident set size/{printf "%.1f", $NF/1024}' "$tf")
}
sz() { du -sb "$@" | awk '{s+=$1} END{print s}'; }
warm() { tar -C "$1" -cf - . | cat >/dev/null; }

# ---------------------------------------------------------------- the data
# gen DIR I: the files of x<I> (deterministic): EXTRA_MB in 8 files, the even
# ones incompressible (AES-CTR keystream), the odd ones base64 text of it.
gen() { # openssl dies of SIGPIPE when head has enough: no pipefail here
    (set +o pipefail; gen_parts "$@")
}
gen_parts() {
    local dir=$1 i=$2 f per
    per=$((EXTRA_MB * 1048576 / 8))
    mkdir -p "$dir"
    for f in 0 1 2 3 4 5 6 7; do
        if ((f % 2 == 0)); then
            openssl enc -aes-128-ctr -nosalt -pass "pass:bench-gc-$i-$f" -pbkdf2 </dev/zero 2>/dev/null |
                head -c "$per" >"$dir/part$f.bin"
        else
            openssl enc -aes-128-ctr -nosalt -pass "pass:bench-gc-$i-$f" -pbkdf2 </dev/zero 2>/dev/null |
                head -c $((per * 3 / 4)) | base64 -w 76 >"$dir/part$f.txt"
        fi
    done
}
# set_image I: makes $SRC hold image I: the tree (hard links), x<I> and the
# second half (parts 4-7) of x<I-1>.
SRC=$WORK/src
set_image() {
    local i=$1 prev=$(($1 - 1)) f
    rm -rf "$SRC/extra"; mkdir -p "$SRC/extra"
    cp -al "$WORK/gen/x$i" "$SRC/extra/x$i"
    if ((prev >= 1)); then
        mkdir -p "$SRC/extra/x$prev"
        for f in "$WORK/gen/x$prev"/part[4-7].*; do ln "$f" "$SRC/extra/x$prev/"; done
    fi
}

KEEP_FROM=$((IMAGES / 2 + 1)) # images KEEP_FROM..IMAGES are kept
PREP=$WORK/prepared-$IMAGES-$EXTRA_MB
prepare() {
    if [[ -f $PREP/complete ]]; then
        note "reusing the prepared store and repository in $PREP"
        return 0
    fi
    local i ls=$PREP/layerstore rs=$PREP/restic fresh=$PREP/fresh
    rm -rf "$PREP" "$SRC"; mkdir -p "$PREP" "$WORK/gen"
    note "preparing: $IMAGES images of $TREE + ${EXTRA_MB} MB each, into $PREP"
    for ((i = 1; i <= IMAGES; i++)); do
        [[ -d $WORK/gen/x$i ]] || gen "$WORK/gen/x$i" "$i"
    done
    mkdir -p "$SRC"; cp -al "$TREE" "$SRC/tree"
    "$LS" --store "$ls" init >>"$LOG" 2>&1
    restic -r "$rs" --cache-dir "$rs.cache" init >>"$LOG" 2>&1
    "$LS" --store "$fresh" init >>"$LOG" 2>&1
    for ((i = 1; i <= IMAGES; i++)); do
        set_image "$i"
        tm "$LS" --store "$ls" commit "$SRC" --tag "bench:$i"
        note "image $i: layerstore commit ${T}s"
        tm restic -r "$rs" --cache-dir "$rs.cache" backup --quiet --tag "img$i" "$SRC"
        note "image $i: restic backup ${T}s"
        if ((i >= KEEP_FROM)); then
            "$LS" --store "$fresh" commit "$SRC" --tag "bench:$i" >>"$LOG" 2>&1
        fi
    done
    for ((i = 1; i < KEEP_FROM; i++)); do
        "$LS" --store "$ls" untag "bench:$i" >>"$LOG" 2>&1
    done
    sz "$fresh/packs" >"$PREP/fresh-packs-bytes"
    sz "$fresh" >"$PREP/fresh-bytes"
    rm -rf "$fresh"
    touch "$PREP/complete"
}
# restic forget needs snapshot ids (given only --tag and no --keep-* policy, it
# removes nothing).
forget_restic() {
    local rs=$PREP/restic i ids
    [[ -f $PREP/forgotten ]] && return 0
    for ((i = 1; i < KEEP_FROM; i++)); do
        ids=$(restic -r "$rs" --cache-dir "$rs.cache" snapshots --json --tag "img$i" |
            grep -o '"id":"[0-9a-f]\{64\}"' | cut -d'"' -f4)
        [[ -n $ids ]] || { note "no restic snapshot tagged img$i"; exit 1; }
        restic -r "$rs" --cache-dir "$rs.cache" forget $ids >>"$LOG" 2>&1
    done
    restic -r "$rs" --cache-dir "$rs.cache" snapshots >>"$LOG" 2>&1
    touch "$PREP/forgotten"
}
prepare
forget_restic
FRESH_PACKS=$(cat "$PREP/fresh-packs-bytes")
rec fresh packs_b 0 "$FRESH_PACKS" B
rec fresh store_b 0 "$(cat "$PREP/fresh-bytes")" B

# ---------------------------------------------------------------- runs
run_layerstore() {
    local r=$1 s=$RUNDIR/layerstore before after
    rm -rf "$s"; cp -a "$PREP/layerstore" "$s"
    warm "$s"
    before=$(sz "$s/packs"); rec layerstore packs_before_b "$r" "$before" B
    rec layerstore store_before_b "$r" "$(sz "$s")" B
    tm "$LS" --store "$s" gc
    rec layerstore gc_s "$r" "$T" s; rec layerstore gc_rss_mb "$r" "$RSS" MB
    after=$(sz "$s/packs"); rec layerstore packs_after_b "$r" "$after" B
    rec layerstore store_after_b "$r" "$(sz "$s")" B
    rec layerstore unreachable_b "$r" $((before - FRESH_PACKS)) B
    rec layerstore freed_b "$r" $((before - after)) B
    rec layerstore freed_share "$r" "$(ratio $((before - after)) $((before - FRESH_PACKS)))" x
    note "run $r: layerstore gc ${T}s, packs $((before / 1000000)) -> $((after / 1000000)) MB (fresh store of the kept images: $((FRESH_PACKS / 1000000)) MB)"
}
run_restic() {
    local r=$1 s=$RUNDIR/restic before after
    rm -rf "$s" "$s.cache"; cp -a "$PREP/restic" "$s"; cp -a "$PREP/restic.cache" "$s.cache"
    warm "$s"
    before=$(sz "$s"); rec restic repo_before_b "$r" "$before" B
    tm restic -r "$s" --cache-dir "$s.cache" prune --max-unused 0
    rec restic prune_s "$r" "$T" s; rec restic prune_rss_mb "$r" "$RSS" MB
    after=$(sz "$s"); rec restic repo_after_b "$r" "$after" B
    rec restic freed_b "$r" $((before - after)) B
    note "run $r: restic prune --max-unused 0 ${T}s, repo $((before / 1000000)) -> $((after / 1000000)) MB"
}

for ((r = 1; r <= RUNS; r++)); do
    note "== run $r/$RUNS"
    if ((r % 2)); then run_layerstore "$r"; run_restic "$r"; else run_restic "$r"; run_layerstore "$r"; fi
    rec ratio gc_over_prune "$r" "$(ratio "$(get layerstore gc_s "$r")" "$(get restic prune_s "$r")")" x
    if ((r < RUNS)) || [[ ${KEEP:-0} != 1 ]]; then rm -rf "$RUNDIR/restic" "$RUNDIR/restic.cache"; fi
    ((r == RUNS)) || rm -rf "$RUNDIR/layerstore"
done

# ---------------------------------------------------------------- checks
note "checking the collected store: fsck, and each kept image against its tree"
CHECKS_OK=1
[[ -d $SRC/tree ]] || { mkdir -p "$SRC"; cp -al "$TREE" "$SRC/tree"; }
"$LS" --store "$RUNDIR/layerstore" fsck >>"$LOG" 2>&1 || { CHECKS_OK=0; note "FAILED: fsck after gc"; }
for ((i = KEEP_FROM; i <= IMAGES; i++)); do
    set_image "$i"
    out=$RUNDIR/out
    rm -rf "$out"
    "$LS" --store "$RUNDIR/layerstore" checkout "bench:$i" "$out" >>"$LOG" 2>&1 &&
        diff -r --no-dereference "$SRC" "$out" >>"$LOG" 2>&1 ||
        { CHECKS_OK=0; note "FAILED: image $i does not check out as its tree (see $LOG)"; }
    rm -rf "$out"
done
rec checks ok 0 "$CHECKS_OK" bool

# ---------------------------------------------------------------- the table
med() {
    awk -F'\t' -v t="$1" -v m="$2" -v d="${3:-1}" '
        $1==t && $2==m && $4!="nan" { v[n++] = $4 + 0 }
        END {
            if (!n) { print "-"; exit }
            for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j+1] = v[j]; v[j+1] = x }
            m = (n % 2) ? v[int(n/2)] : (v[n/2-1] + v[n/2]) / 2
            m = m / d
            if (m == int(m)) printf "%d", m; else printf (d == 1 ? "%.3f" : "%.1f"), m
        }' "$RESULTS"
}
{
    printf '\ngc after untagging images 1..%s of %s (tree %s + %s MB each); medians of %s run(s)\n' \
        $((KEEP_FROM - 1)) "$IMAGES" "$TREE" "$EXTRA_MB" "$RUNS"
    printf '%-34s %10s %10s %10s %8s\n' "" "time s" "before MB" "after MB" "RSS MB"
    printf '%-34s %10s %10s %10s %8s\n' "layerstore gc (packs/)" "$(med layerstore gc_s)" \
        "$(med layerstore packs_before_b 1000000)" "$(med layerstore packs_after_b 1000000)" "$(med layerstore gc_rss_mb)"
    printf '%-34s %10s %10s %10s %8s\n' "restic prune --max-unused 0" "$(med restic prune_s)" \
        "$(med restic repo_before_b 1000000)" "$(med restic repo_after_b 1000000)" "$(med restic prune_rss_mb)"
    printf 'gc time ÷ prune time (per run, median): %s  (target ≤ 2)\n' "$(med ratio gc_over_prune)"
    printf 'unreachable: %s MB (packs before − fresh store of the kept images, %s MB); gc freed %s MB = %s of it (target ≥ 0.95)\n' \
        "$(med layerstore unreachable_b 1000000)" "$(med fresh packs_b 1000000)" \
        "$(med layerstore freed_b 1000000)" "$(med layerstore freed_share)"
    printf 'restic freed %s MB\n' "$(med restic freed_b 1000000)"
    printf 'checks (fsck, checkout of each kept image = its tree): %s\n' "$([[ $CHECKS_OK == 1 ]] && echo ok || echo FAILED)"
} | tee -a "$LOG"
[[ ${KEEP:-0} == 1 ]] || rm -rf "$RUNDIR" "$SRC"
echo "raw figures: $RESULTS; log: $LOG"
((CHECKS_OK)) || exit 1
exit 0
}
