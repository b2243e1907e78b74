#!/usr/bin/env bash
# Push of an OCI image layout to a loopback registry (docker-registry on
# 127.0.0.1): layerstore's Registry::push_layout (examples/push_layout.rs)
# against `skopeo copy oci:… docker://…`, each into a fresh registry; then an
# unchanged re-push. Then the same for an image of a layerstore store: its
# first push (export included), an unchanged re-push, `skopeo copy` of its
# export-oci layout, and a push after export-oci (the export's blobs uploaded,
# nothing compressed again). RUNS runs each (default 3); medians printed.
#
#   scripts/bench-registry.sh [SOURCE_DIR...]
#
# The layout is made once by umoci: one layer per SOURCE_DIR (default
# /usr/share and /usr/libexec), gzip-compressed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
SOURCES=("$@")
[ ${#SOURCES[@]} -gt 0 ] || SOURCES=(/usr/share /usr/libexec)
for tool in docker-registry skopeo umoci; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install docker-registry skopeo umoci)" >&2; exit 1; }
done

cargo build --release --quiet --features cli --example push_layout --bin layerstore
PUSH=target/release/examples/push_layout
LS=target/release/layerstore
WORK=$(mktemp -d)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "making the layout ($(printf '%s ' "${SOURCES[@]}"))" >&2
umoci init --layout "$WORK/layout"
umoci new --image "$WORK/layout:img"
umoci unpack --image "$WORK/layout:img" "$WORK/bundle" >/dev/null
for src in "${SOURCES[@]}"; do
    mkdir -p "$WORK/bundle/rootfs$src"
    cp -a "$src/." "$WORK/bundle/rootfs$src/"
    umoci repack --image "$WORK/layout:img" "$WORK/bundle"
    rm -rf "$WORK/bundle"
    umoci unpack --image "$WORK/layout:img" "$WORK/bundle" >/dev/null
done
umoci gc --layout "$WORK/layout"
rm -rf "$WORK/bundle"
echo "layout: $(du -sb "$WORK/layout/blobs" | cut -f1) bytes of blobs" >&2

start_registry() {
    [ -n "$REG_PID" ] && { kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; }
    rm -rf "$WORK/storage"
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
    docker-registry serve "$WORK/config.yml" >/dev/null 2>&1 &
    REG_PID=$!
    until curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null; do sleep 0.1; done
}

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The same image in a layerstore store (one commit per SOURCE_DIR), and its
# OCI export for skopeo.
export LAYERSTORE_DIR="$WORK/store"
"$LS" init >/dev/null
mkdir -p "$WORK/tree"
parent=()
for src in "${SOURCES[@]}"; do
    mkdir -p "$WORK/tree$src" && cp -a "$src/." "$WORK/tree$src/"
    "$LS" commit "$WORK/tree" "${parent[@]}" --tag img >/dev/null
    parent=(--parent img)
done
rm -rf "$WORK/tree"
"$LS" export-oci img "$WORK/exported:img" >/dev/null

ours=() ; repush=() ; skopeo_t=() ; img=() ; img_repush=() ; img_skopeo=() ; img_reuse=()
for run in $(seq "$RUNS"); do
    start_registry
    ours+=("$(seconds "$PUSH" "$WORK/layout:img" "127.0.0.1:$PORT/bench/img:v1" --insecure)")
    repush+=("$(seconds "$PUSH" "$WORK/layout:img" "127.0.0.1:$PORT/bench/img:v1" --insecure)")
    start_registry
    skopeo_t+=("$(seconds skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout:img" "docker://127.0.0.1:$PORT/bench/img:v1")")
    echo "run $run: layerstore ${ours[-1]} s, re-push ${repush[-1]} s, skopeo ${skopeo_t[-1]} s" >&2
    # A store image: the first push exports (tars, seekable zstd since
    # 2026-12-05; gzip before) and uploads.
    start_registry
    rm -rf "$LAYERSTORE_DIR/cache/oci"
    img+=("$(seconds "$LS" push img "127.0.0.1:$PORT/bench/img:v1" --insecure)")
    img_repush+=("$(seconds "$LS" push img "127.0.0.1:$PORT/bench/img:v1" --insecure)")
    start_registry
    img_skopeo+=("$(seconds skopeo copy -q --dest-tls-verify=false "oci:$WORK/exported:img" "docker://127.0.0.1:$PORT/bench/img:v1")")
    # A store image exported (export-oci) before: the push uploads the
    # export's blobs instead of compressing the layers again.
    rm -rf "$LAYERSTORE_DIR/cache/oci" "$WORK/exported-again"
    "$LS" export-oci img "$WORK/exported-again:img" --compression zstd-seekable >/dev/null
    start_registry
    img_reuse+=("$(seconds "$LS" push img "127.0.0.1:$PORT/bench/img:v1" --insecure)")
    echo "run $run: layerstore push IMAGE ${img[-1]} s, re-push ${img_repush[-1]} s, skopeo copy of its export ${img_skopeo[-1]} s, push after export-oci ${img_reuse[-1]} s" >&2
done
printf 'layerstore push (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${ours[@]}" | median)"
printf 'skopeo copy    (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${skopeo_t[@]}" | median)"
printf 'unchanged re-push (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${repush[@]}" | median)"
printf 'layerstore push IMAGE, export included (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${img[@]}" | median)"
printf 'skopeo copy of the exported layout (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${img_skopeo[@]}" | median)"
printf 'unchanged re-push of the IMAGE (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${img_repush[@]}" | median)"
printf 'layerstore push IMAGE after export-oci, blobs reused (median of %s): %s s\n' "$RUNS" "$(printf '%s\n' "${img_reuse[@]}" | median)"
