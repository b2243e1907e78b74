#!/usr/bin/env bash
# Export speed to an OCI image layout: layerstore (gzip, zstd) vs `umoci repack`
# vs `tar -c | gzip -6`, on one tree, in one run.
#
#   scripts/compare-oci.sh [TREE]
#
# TREE defaults to the Debian bookworm minbase root that compare-peers.sh
# caches ($COMPARE_WORK/rootfs/bookworm-minbase, 206 MB); without it, a tree of
# about 200 MB is copied from this machine's /usr/share and /usr/lib.
# Everything is written under $COMPARE_WORK (default /work/data/compare). Per run
# (RUNS, default 3; the tools interleaved within each run): wall time and CPU
# time (user + system, of the process and its children) of `layerstore
# export-oci` into a fresh layout with gzip and with zstd layers (the image was
# committed once, before), of `umoci repack` of the same tree unpacked into an
# umoci bundle, and of `tar -C TREE -c . | gzip -6`. CPU seconds are the figure
# to trust on a machine shared with other work: there, wall time also measures
# how much of the machine each tool could get. Prints each run and the medians;
# raw figures go to $COMPARE_WORK/results-oci-<date>.tsv. Needs root (umoci keeps
# owners).
#
# Levels: layerstore gzip is libdeflate level 6 in independent 1 MiB members,
# zstd level 3 in 1 MiB frames; umoci 0.4.7 uses pgzip (klauspost/compress) at
# its default level, in 256 KiB blocks; gzip -6 is zlib level 6.
set -euo pipefail
{
RUNS=${RUNS:-3}
WORK=${COMPARE_WORK:-/work/data/compare}
TREE=${1:-$WORK/rootfs/bookworm-minbase}
cd "$(dirname "$0")/.."
BIN=${LAYERSTORE:-}
if [ -z "$BIN" ]; then
    cargo build --release --features cli -q
    BIN=$PWD/target/release/layerstore
fi
for tool in umoci gzip tar; do
    command -v "$tool" >/dev/null || { echo "compare-oci: $tool is missing (apt-get install -y umoci)" >&2; exit 2; }
done
mkdir -p "$WORK"
if [ ! -d "$TREE" ]; then
    TREE=$WORK/oci-tree
    if [ ! -e "$TREE.complete" ]; then
        rm -rf "$TREE"; mkdir -p "$TREE/usr/lib"
        cp -a /usr/share "$TREE/usr/"
        du_mb() { du -sm "$TREE" | cut -f1; }
        for d in /usr/lib/*/; do
            [ "$(du_mb)" -ge 200 ] && break
            cp -a "$d" "$TREE/usr/lib/" 2>/dev/null || true
        done
        touch "$TREE.complete"
    fi
fi
SCRATCH=$(mktemp -d "$WORK/oci-XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
RESULTS=$WORK/results-oci-$(date -u +%Y%m%dT%H%M%S).tsv
echo "tree: $TREE ($(du -sm "$TREE" | cut -f1) MB), binary: $BIN, runs: $RUNS, cores: $(nproc)"
export LAYERSTORE_DIR=$SCRATCH/store
"$BIN" init >/dev/null
"$BIN" commit "$TREE" --tag tree >/dev/null
# umoci: a bundle whose rootfs is the tree, repacked into a fresh layout each run.
umoci init --layout "$SCRATCH/umoci-base" >/dev/null
umoci new --image "$SCRATCH/umoci-base:t" >/dev/null
umoci unpack --image "$SCRATCH/umoci-base:t" "$SCRATCH/bundle" >/dev/null
cp -a "$TREE/." "$SCRATCH/bundle/rootfs/"
cat /dev/null > "$RESULTS"
# "wall cpu" of a command, cpu = user + system of it and its children.
timed() {
    local out
    out=$(mktemp)
    /usr/bin/time -o "$out" -f "%e %U %S" "$@" >/dev/null
    awk '{printf "%s\t%.2f", $1, $2 + $3}' "$out"
    rm -f "$out"
}
tar -C "$TREE" -c . >/dev/null  # warm the page cache
for run in $(seq 1 "$RUNS"); do
    rm -rf "$SCRATCH"/l-*
    g=$(timed "$BIN" export-oci tree "$SCRATCH/l-gzip:t" --compression gzip)
    z=$(timed "$BIN" export-oci tree "$SCRATCH/l-zstd:t" --compression zstd)
    cp -a "$SCRATCH/umoci-base" "$SCRATCH/l-umoci"
    u=$(timed umoci repack --image "$SCRATCH/l-umoci:t" "$SCRATCH/bundle")
    t=$(timed sh -c "tar -C '$TREE' -c . | gzip -6 > '$SCRATCH/l-tar.tar.gz'")
    sg=$(du -sb "$SCRATCH/l-gzip" | cut -f1); sz=$(du -sb "$SCRATCH/l-zstd" | cut -f1)
    su=$(du -sb "$SCRATCH/l-umoci" | cut -f1); st=$(stat -c %s "$SCRATCH/l-tar.tar.gz")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$g" "$z" "$u" "$t" "$sg" "$sz" "$su" "$st" | tee -a "$RESULTS"
    # umoci repack leaves the bundle's mtree at the new image: undo for the next run.
    rm -rf "$SCRATCH/l-umoci"
done
# Columns: run, then wall and cpu of gzip, zstd, umoci, tar|gzip, then the four sizes.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -f"$1" "$RESULTS" | median; }
ratio() { echo "scale=2; $1 / $2" | bc; }
g=$(col 2); z=$(col 4); u=$(col 6); t=$(col 8)
gc=$(col 3); zc=$(col 5); uc=$(col 7); tc=$(col 9)
echo "median wall s:  layerstore gzip $g, layerstore zstd $z, umoci repack $u, tar|gzip -6 $t"
echo "median cpu s:   layerstore gzip $gc, layerstore zstd $zc, umoci repack $uc, tar|gzip -6 $tc"
echo "wall ratios:    gzip/umoci $(ratio "$g" "$u"), gzip/(tar|gzip) $(ratio "$g" "$t"), gzip/zstd $(ratio "$g" "$z")"
echo "cpu ratios:     gzip/umoci $(ratio "$gc" "$uc"), gzip/(tar|gzip) $(ratio "$gc" "$tc"), gzip/zstd $(ratio "$gc" "$zc")"
echo "median bytes:   layerstore gzip $(col 10), layerstore zstd $(col 11), umoci layout $(col 12), tar.gz $(col 13)"
echo "results: $RESULTS"
}
