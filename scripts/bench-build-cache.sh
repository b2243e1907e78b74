#!/usr/bin/env bash
# A fully cached rebuild of a 10-step Containerfile whose context is a big
# source tree, against one stat walk of that tree (`find -printf '%s'` stats
# every entry), 3 runs each, medians.
#
#   scripts/bench-build-cache.sh [CONTEXT]    (default: the Linux 6.1 source tree)
set -euo pipefail
cd "$(dirname "$0")/.."
CONTEXT="${1:-/work/data/linux/linux-source-6.1}"
[ -d "$CONTEXT" ] || { echo "no context directory $CONTEXT" >&2; exit 2; }
cargo build --release --features cli --bin layerstore >/dev/null 2>&1
BIN="$PWD/target/release/layerstore"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STORE="$WORK/store"
"$BIN" --store "$STORE" init >/dev/null
cat > "$WORK/Containerfile" <<'CF'
FROM scratch
COPY Documentation /src/Documentation
ENV KBUILD_OUTPUT=/out
COPY include /src/include
LABEL stage=headers
COPY . /src/
WORKDIR /src
LABEL org.example.kernel=6.1
CMD ["make"]
ENTRYPOINT ["/bin/sh", "-c"]
CF
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
first=$(seconds "$BIN" --store "$STORE" build "$CONTEXT" -f "$WORK/Containerfile")
cached=$(for _ in 1 2 3; do seconds "$BIN" --store "$STORE" build "$CONTEXT" -f "$WORK/Containerfile"; done | median)
walk=$(for _ in 1 2 3; do seconds find "$CONTEXT" -printf '%s\n'; done | median)
"$BIN" --store "$STORE" build "$CONTEXT" -f "$WORK/Containerfile" | grep -c '^CACHED' | xargs -I{} echo "cached steps on a rebuild: {} of 9"
echo "first build:            ${first} s"
echo "cached rebuild, median: ${cached} s"
echo "stat walk, median:      ${walk} s"
echo "cached rebuild - walk:  $(echo "$cached - $walk" | bc) s (target: <= 1 s)"
