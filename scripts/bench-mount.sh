#!/usr/bin/env bash
# The performance targets of copy-on-write views (issue #4) on a big tree, with
# the CLI, as a user meets them (process start and store open included):
#
#   overlay mount  `mount IMAGE T --backend overlay` of a new container over an
#                  image whose layers are extracted          (target <= 50 ms)
#   overlay commit `container commit` after 3 files changed   (target <= 50 ms)
#   copy commit    `container commit` of a copy-backend container after 3 files
#                  changed, against a stat walk of the tree   (target <= 2x)
#   extract        the first overlay mount of the image (its layer extracted,
#                  then mounted), against `checkout` of it    (target <= 1x)
#
#   scripts/bench-mount.sh [--runs N] [TREE]     (as root: overlayfs)
#
# TREE defaults to /work/data/linux/linux-source-6.1. Each binary of
# $LAYERSTORE_BINS (default: target/release/layerstore, built) gets its own
# store under $BENCH_WORK (default /work/data/bench-mount), made once with
# `commit TREE`; then every measurement runs RUNS times (default 5), the
# binaries interleaved in each round, and the medians are printed, with the
# ratios the targets name computed within each round. Every measurement starts
# after a `sync` (not timed).
set -euo pipefail
{
RUNS=5
TREE=/work/data/linux/linux-source-6.1
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
[ -d "$TREE" ] || { echo "no tree $TREE" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "the overlay measurements need root" >&2; exit 2; }
cd "$(dirname "$0")/.."
if [ -z "${LAYERSTORE_BINS:-}" ]; then
    cargo build --release --features cli --bin layerstore >/dev/null 2>&1
    LAYERSTORE_BINS="$PWD/target/release/layerstore"
fi
WORK=${BENCH_WORK:-/work/data/bench-mount}
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'for m in $(grep " $WORK/" /proc/mounts | cut -d" " -f2); do umount "$m" || true; done' EXIT

now() { date +%s%N; }
# Milliseconds that "$@" takes (output discarded).
# Each measurement starts with nothing dirty in the page cache: the writeback
# of one step's gigabytes would otherwise land in the next one's fsyncs.
ms() { local t0 t1; sync; t0=$(now); "$@" >/dev/null; t1=$(now); echo $(((t1 - t0) / 1000)) | awk '{printf "%.1f", $1 / 1000}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
edit3() { # change one file, add one, delete one
    echo "changed $2" >>"$1/Makefile"
    echo "new $2" >"$1/new-file-$2"
    rm -f "$1/README"
}
restore3() { cp -p "$TREE/Makefile" "$1/Makefile"; cp -p "$TREE/README" "$1/README"; rm -f "$1"/new-file-*; }

i=0
for bin in $LAYERSTORE_BINS; do
    i=$((i + 1))
    s="$WORK/store$i"
    "$bin" --store "$s" init >/dev/null
    "$bin" --store "$s" commit "$TREE" --tag base >/dev/null
    "$bin" --store "$s" mount base "$WORK/copy$i" --backend copy --name copy >/dev/null
    echo "binary $i: $bin"
done
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for round in $(seq 1 "$RUNS"); do
    walk=$(ms find "$TREE" -printf '%s\n')
    echo -e "$round\t0\twalk\t$walk" >>"$RESULTS"
    i=0
    for bin in $LAYERSTORE_BINS; do
        i=$((i + 1))
        s="$WORK/store$i"
        run() { "$bin" --store "$s" "$@"; }
        # Extraction (cache emptied) then a mount over the extracted layers.
        # Extraction and checkout take turns going first: whichever follows
        # the deletion of the other's 84 000 files pays ext4's slower inode
        # allocation after deletions.
        rm -rf "$s/mounts/layers"
        if ((round % 2)); then
            extract=$(ms run mount base "$WORK/o$i" --backend overlay --name first)
            checkout=$(ms run checkout base "$WORK/co$i")
        else
            checkout=$(ms run checkout base "$WORK/co$i")
            extract=$(ms run mount base "$WORK/o$i" --backend overlay --name first)
        fi
        rm -rf "$WORK/co$i"
        mount=$(ms run mount base "$WORK/m$i" --backend overlay --name box)
        edit3 "$WORK/m$i" "$round"
        ocommit=$(ms run container commit box)
        run container rm box >/dev/null
        run container rm first >/dev/null
        # The copy backend: its container stays; each round changes 3 files.
        edit3 "$WORK/copy$i" "$round"
        walk_copy=$(ms find "$WORK/copy$i" -printf '%s\n')
        ccommit=$(ms run container commit copy)
        restore3 "$WORK/copy$i"
        for kv in extract=$extract checkout=$checkout mount=$mount overlay-commit=$ocommit \
            copy-walk=$walk_copy copy-commit=$ccommit; do
            echo -e "$round\t$i\t${kv%%=*}\t${kv#*=}" >>"$RESULTS"
        done
        echo -e "$round\t$i\textract/checkout\t$(echo "$extract / $checkout" | bc -l)" >>"$RESULTS"
        echo -e "$round\t$i\tcopy-commit/walk\t$(echo "$ccommit / $walk_copy" | bc -l)" >>"$RESULTS"
    done
done
echo "entries in the tree: $(find "$TREE" | wc -l); $RUNS rounds; medians (ms, ratios):"
i=0
for bin in 0 $LAYERSTORE_BINS; do
    for what in walk extract checkout extract/checkout mount overlay-commit copy-walk copy-commit copy-commit/walk; do
        v=$(awk -v b=$i -v w="$what" '$2 == b && $3 == w {print $4}' "$RESULTS" | median)
        [ -n "$v" ] && printf '  bin %d  %-18s %8.2f\n' "$i" "$what" "$v"
    done
    i=$((i + 1))
done
echo "raw figures: $RESULTS"
exit 0
}
