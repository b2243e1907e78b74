#!/usr/bin/env bash
# Registries at chunk granularity, against a loopback registry (Debian's
# docker-registry on 127.0.0.1), on an upgraded base image: release A and
# release B of a tree (default: Debian's linux-source-6.1 6.1.187-1 and
# 6.1.192-3, a stable point release apart), each pushed as one layer.
#
#   scripts/bench-seekable.sh TREE_A TREE_B
#
# Measured, RUNS runs each (default 3), medians printed:
# 1. pull of B into a store holding A: seekable (partial: only the frames of
#    missing chunks) against the gzip blob of the same layer (whole), bytes
#    fetched (the pull's report) and time; beside them, what the store
#    itself keeps for the chunks it lacked (its stored bytes after the pull,
#    less before): the compressed size of the missing chunks.
# 2. lazy mount of B into an empty store (a read-only lazy container): from
#    the command to the first byte
#    of a file read (Makefile), and the bytes the registry had served by
#    then (its access log); then reading every file (tar piped to wc: GNU tar reads nothing when it writes to /dev/null)
#    lazily, without prefetch, against a full pull followed by the same read
#    of a local fuse view.
# 3. push of B's layer: seekable against gzip (export included, caches
#    emptied first).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
A="${1:?usage: bench-seekable.sh TREE_A TREE_B}"
B="${2:?usage: bench-seekable.sh TREE_A TREE_B}"
command -v docker-registry >/dev/null || { echo "needs docker-registry" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (fuse views as root, umount)" >&2; exit 1; }

cargo build --release --quiet --all-features --bin layerstore
LS=$PWD/target/release/layerstore
WORK=$(mktemp -d)
REG_PID=
cleanup() {
    for m in "$WORK"/mnt*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/storage
http:
  addr: 127.0.0.1:$PORT
YAML
docker-registry serve "$WORK/config.yml" >"$WORK/access.log" 2>"$WORK/error.log" &
REG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REG=127.0.0.1:$PORT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
stored() { "$LS" --store "$1" --json du | json stored_bytes; }
served_since() { # bytes of blob responses in the access log after line $1
    tail -n +"$(($1 + 1))" "$WORK/access.log" | awk '$7 ~ /\/blobs\// {s += $10} END {print s + 0}'
}

echo "committing and pushing A and B" >&2
SRC=$WORK/src
"$LS" --store "$SRC" init >/dev/null
"$LS" --store "$SRC" commit "$A" --tag a >/dev/null
"$LS" --store "$SRC" commit "$B" --tag b >/dev/null
"$LS" --store "$SRC" push a "$REG/up/a:v1" --insecure >/dev/null
"$LS" --store "$SRC" push b "$REG/up/b:v1" --insecure >/dev/null
"$LS" --store "$SRC" push b "$REG/up/bgz:v1" --insecure --compression gzip >/dev/null
LAYER=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/up/b/manifests/v1" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["size"])')
GZ=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/up/bgz/manifests/v1" \
     | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["size"])')
echo "B's layer: seekable $LAYER bytes, gzip $GZ bytes" >&2

echo "1. pull of B into a store holding A" >&2
for i in $(seq "$RUNS"); do
    for kind in b bgz; do
        S=$WORK/pull-$kind-$i
        "$LS" --store "$S" init >/dev/null
        "$LS" --store "$S" pull "$REG/up/a:v1" --insecure >/dev/null
        before=$(stored "$S")
        t0=$(now)
        report=$("$LS" --store "$S" --json pull "$REG/up/$kind:v1" --insecure)
        t1=$(now)
        after=$(stored "$S")
        fetched=$(echo "$report" | json bytes_fetched)
        echo "$kind $(echo "$t1 - $t0" | bc) $fetched $((after - before))" >>"$WORK/pull.txt"
        rm -rf "$S"
    done
done
for kind in b bgz; do
    t=$(awk -v k=$kind '$1 == k {print $2}' "$WORK/pull.txt" | median)
    f=$(awk -v k=$kind '$1 == k {print $3}' "$WORK/pull.txt" | median)
    m=$(awk -v k=$kind '$1 == k {print $4}' "$WORK/pull.txt" | median)
    echo "pull $kind: ${t}s, fetched $f bytes; the store kept $m new bytes (ratio fetched/kept $(echo "scale=3; $f / $m" | bc))"
done

echo "2. lazy mount of B" >&2
for i in $(seq "$RUNS"); do
    S=$WORK/lazy-$i
    M=$WORK/mnt-lazy-$i
    "$LS" --store "$S" init >/dev/null
    lines=$(wc -l <"$WORK/access.log")
    t0=$(now)
    NAME=$("$LS" --store "$S" mount "$REG/up/b:v1" "$M" --lazy --insecure --no-prefetch --read-only)
    head -c 1 "$(find "$M" -maxdepth 2 -name Makefile | head -1)" >/dev/null
    t1=$(now)
    first=$(served_since "$lines")
    tar -cf - -C "$M" . | wc -c >/dev/null
    t2=$(now)
    "$LS" --store "$S" umount "$NAME"
    echo "$(echo "$t1 - $t0" | bc) $first $(echo "$t2 - $t0" | bc)" >>"$WORK/lazy.txt"
    # The full pull, then the same read of a local fuse view.
    F=$WORK/full-$i
    MF=$WORK/mnt-full-$i
    "$LS" --store "$F" init >/dev/null
    t0=$(now)
    "$LS" --store "$F" pull "$REG/up/b:v1" --insecure --tag b >/dev/null
    "$LS" --store "$F" mount b "$MF" --backend fuse --read-only >/dev/null
    tar -cf - -C "$MF" . | wc -c >/dev/null
    t1=$(now)
    "$LS" --store "$F" umount "$MF"
    echo "$(echo "$t1 - $t0" | bc)" >>"$WORK/full.txt"
    rm -rf "$S" "$F"
done
first_t=$(awk '{print $1}' "$WORK/lazy.txt" | median)
first_b=$(awk '{print $2}' "$WORK/lazy.txt" | median)
all_t=$(awk '{print $3}' "$WORK/lazy.txt" | median)
full_t=$(median <"$WORK/full.txt")
echo "lazy mount to the first byte: ${first_t}s, $first_b bytes served ($(echo "scale=2; 100 * $first_b / $LAYER" | bc)% of the layer)"
echo "every file read lazily: ${all_t}s; full pull + local read: ${full_t}s (ratio $(echo "scale=2; $all_t / $full_t" | bc))"

echo "3. push of B" >&2
for i in $(seq "$RUNS"); do
    for kind in zstd-seekable gzip; do
        rm -rf "$SRC/cache/oci"
        t0=$(now)
        "$LS" --store "$SRC" push b "$REG/push-$kind-$i/b:v1" --insecure --compression "$kind" >/dev/null
        t1=$(now)
        echo "$kind $(echo "$t1 - $t0" | bc)" >>"$WORK/push.txt"
    done
done
for kind in zstd-seekable gzip; do
    echo "push $kind: $(awk -v k=$kind '$1 == k {print $2}' "$WORK/push.txt" | median)s"
done
