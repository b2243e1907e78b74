#!/usr/bin/env bash
# The lazy FUSE view (issue #18, performance) side by side with its peers, on
# one tree as a one-layer image, all in one run:
#
#   scripts/bench-lazy.sh [--runs N] [--layerstore BIN] [--peers LIST] [--no-casync]
#                         [--peers-only] [--no-install] [--rebuild] [TREE]
#
# Systems: the plain directory (`plain`); kernel squashfs (mksquashfs -comp
# zstd, loop mount: `squashfs`); kernel erofs (mkfs.erofs -zlz4hc, loop mount:
# `erofs`); `squashfuse_ll` on the same squashfs image (`squashfuse`); `casync
# mount` of a .caidx of the tree (`casync`, slow: about 3 minutes a run; leave
# it out with --no-casync); and layerstore's `mount IMAGE T --backend fuse
# --read-only` (`layerstore`). --peers LIST (comma-separated) picks the peers.
# --peers-only measures the peers alone: without it, a layerstore whose fuse
# backend fails a small probe stops the script (exit 3), never a silent skip.
#
# Each run (default 3; the systems in a fixed order) measures, for each system:
#   mount      the mount command until it has returned and `stat T` works (ms)
#   walk       `find T -printf '%s %m %U\n'` right after mounting (cold), and
#              again (warm)
#   read       `tar cf - -C T . | wc -c` right after mounting (cold), and a
#              second pass (warm)
#   RSS        the FUSE server's peak RSS (VmHWM) after the two reads (and its
#              anonymous and file-mapped parts at that moment): the
#              process holding /dev/fuse that appeared with the mount (for
#              layerstore, the pid in `containers/NAME/server.pid` of the store
#              when that file exists)
#   commit     (layerstore) `container commit` of a writable container on the
#              fuse backend (overlay over the view, as root) after a change, an
#              addition and a deletion; and that container's mount time
# Walk and read each get their own mount. `sync; echo 3 >
# /proc/sys/vm/drop_caches` (untimed) before every mount and before the plain
# directory's cold walk and read; after it, the programs a mount runs (mount,
# stat, squashfuse_ll, casync, layerstore) are read back in, untimed: the data
# are cold, the programs are not. The table gives medians, and the ratios the
# targets name, each computed within a run: layerstore ÷ squashfs cold read,
# layerstore ÷ plain cold walk, layerstore warm read ÷ plain warm read.
#
# TREE defaults to /work/data/linux/linux-source-6.1, extracted from the
# Debian package linux-source-6.1 when absent. Work files go under $BENCH_WORK
# (default /work/data/bench-lazy), never inside the git repository: the
# squashfs, erofs and casync images are made once per tree and kept there
# (--rebuild remakes them); layerstore gets a fresh store per invocation.
# Raw figures: $BENCH_WORK/results-<date>.tsv, a log beside it.
#
# Needs root (drop_caches, loop and FUSE mounts). The layerstore binary: BIN,
# else $LAYERSTORE, else `cargo build --release --features cli` in this
# repository (in $CARGO_TARGET_DIR when set). Installs what it needs from
# Debian's packages unless --no-install.
set -euo pipefail
export LC_ALL=C # sort and comm in byte order; a dot in $EPOCHREALTIME
{ # the whole script is one compound command: bash parses it before running it, so
  # editing this file while it runs cannot change what runs.

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; }

ORIG_ARGS=("$@")
RUNS=3
LS=${LAYERSTORE:-}
PEERS_ALL="plain squashfs erofs squashfuse casync"
PEERS=$PEERS_ALL
LAYERSTORE_ON=1
INSTALL=1
REBUILD=0
DEFAULT_TREE=/work/data/linux/linux-source-6.1
TREE=$DEFAULT_TREE
while (($#)); do
    case $1 in
    --runs) RUNS=$2; shift ;;
    --layerstore) LS=$2; shift ;;
    --peers) PEERS=${2//,/ }; shift ;;
    --no-casync) PEERS=${PEERS/casync/} ;;
    --peers-only) LAYERSTORE_ON=0 ;;
    --no-install) INSTALL=0 ;;
    --rebuild) REBUILD=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done
for p in $PEERS; do
    [[ " $PEERS_ALL " == *" $p "* ]] || { echo "unknown peer '$p' (known: $PEERS_ALL)" >&2; exit 2; }
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number, not '$RUNS'" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "bench-lazy needs root (drop_caches, loop and FUSE mounts)" >&2; exit 2; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=${BENCH_WORK:-/work/data/bench-lazy}
. "$REPO_ROOT/scripts/lib/work-dir.sh"
WORK=$(outside_repo "$WORK" BENCH_WORK) || exit 2
STAMP=$(date +%Y%m%dT%H%M%S)
RESULTS=$WORK/results-$STAMP.tsv
LOG=$WORK/log-$STAMP.txt
MNT=$WORK/mnt
: >"$LOG"
note() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
# Everything mounted under $WORK is unmounted at exit, and at the start (left by
# an interrupted run).
CASYNC_PID=
cleanup_mounts() {
    local m
    [[ -z $CASYNC_PID ]] || kill "$CASYNC_PID" 2>/dev/null || true
    awk -v p="$WORK/" 'index($2 "/", p) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
}
cleanup_mounts
trap cleanup_mounts EXIT
trap 'note "bench-lazy: failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
die() { note "bench-lazy: $*"; exit 3; }

# ---------------------------------------------------------------- installation
# command -> Debian package
declare -A PKG=([mksquashfs]=squashfs-tools [mkfs.erofs]=erofs-utils [squashfuse_ll]=squashfuse
    [casync]=casync [fusermount3]=fuse3 [mountpoint]=util-linux [xz]=xz-utils [bc]=bc)
install_needed() {
    local c pkgs=()
    for c in "${!PKG[@]}"; do command -v "$c" >/dev/null || pkgs+=("${PKG[$c]}"); done
    [[ -d $TREE || $TREE != "$DEFAULT_TREE" || -f /usr/src/linux-source-6.1.tar.xz ]] || pkgs+=(linux-source-6.1)
    ((${#pkgs[@]})) || return 0
    ((INSTALL)) || { echo "missing ${pkgs[*]} and --no-install given" >&2; exit 3; }
    note "installing ${pkgs[*]} from Debian's packages"
    apt-get update >>"$LOG" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${pkgs[@]}" >>"$LOG" 2>&1 ||
        die "apt-get install ${pkgs[*]} failed (see $LOG)"
}
install_needed

if [[ ! -d $TREE ]]; then
    [[ $TREE == "$DEFAULT_TREE" ]] || { echo "no tree at $TREE" >&2; exit 2; }
    note "extracting /usr/src/linux-source-6.1.tar.xz into ${TREE%/*}"
    mkdir -p "${TREE%/*}"
    rm -rf "$TREE.partial"; mkdir -p "$TREE.partial"
    tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$TREE.partial"
    mv "$TREE.partial/linux-source-6.1" "$TREE"; rmdir "$TREE.partial"
fi
TREE=$(cd "$TREE" && pwd -P)

# ---------------------------------------------------------------- the images
read -r ENTRIES TREE_BYTES < <(find "$TREE" -printf '%s\n' | awk '{n++; s+=$1} END {print n, s}')
KEY="$TREE $ENTRIES $TREE_BYTES"
IMAGES=$WORK/images
if ((REBUILD)) || [[ ! -f $IMAGES/key || $(<"$IMAGES/key") != "$KEY" ]]; then
    rm -rf "$IMAGES"; mkdir -p "$IMAGES"; echo "$KEY" >"$IMAGES/key"
fi
# make_image NAME CMD...: runs CMD once (it writes $IMAGES/NAME), kept afterwards.
make_image() {
    local name=$1 t0; shift
    [[ -e $IMAGES/$name.done ]] && return 0
    rm -rf "${IMAGES:?}/$name"
    note "making $IMAGES/$name: $*"
    t0=$EPOCHREALTIME
    "$@" >>"$LOG" 2>&1 || die "making $name failed: $* (see $LOG)"
    note "  made in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s, $(du -sh "$IMAGES/$name" | cut -f1)"
    touch "$IMAGES/$name.done"
}
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
if has_peer squashfs || has_peer squashfuse; then
    make_image linux.squashfs mksquashfs "$TREE" "$IMAGES/linux.squashfs" -comp zstd -noappend -no-progress
fi
has_peer erofs && make_image linux.erofs mkfs.erofs -zlz4hc "$IMAGES/linux.erofs" "$TREE"
if has_peer casync; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    make_image casync bash -c 'mkdir -p "$1" && casync make --store="$1/store" "$1/linux.caidx" "$2"' _ "$IMAGES/casync" "$TREE"
fi

# ---------------------------------------------------------------- layerstore
STORE=$WORK/store
FEATURES=cli
if ((LAYERSTORE_ON)); then
    if [[ -z $LS ]]; then
        note "building layerstore: cargo build --release --features $FEATURES"
        (cd "$REPO_ROOT" && nice -n 10 cargo build --release --features "$FEATURES" --bin layerstore) >>"$LOG" 2>&1 ||
            die "cargo build --release --features $FEATURES failed (see $LOG)"
        LS=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/layerstore
    fi
    [[ -x $LS ]] || { echo "layerstore binary $LS: not an executable" >&2; exit 2; }
    LS=$(realpath "$LS")
    # A probe on a tiny tree: the fuse backend must mount, serve a file and unmount.
    probe=$WORK/probe
    umount "$probe/view" 2>/dev/null || true
    rm -rf --one-file-system "$probe"; mkdir -p "$probe/tree/d"; echo probe >"$probe/tree/d/f"
    if ! {
        "$LS" --store "$probe/s" init && "$LS" --store "$probe/s" commit "$probe/tree" --tag probe &&
            "$LS" --store "$probe/s" mount probe "$probe/view" --backend fuse --read-only --name probe &&
            [[ $(cat "$probe/view/d/f") == probe ]] && "$LS" --store "$probe/s" umount probe
    } >>"$LOG" 2>&1; then
        umount "$probe/view" 2>/dev/null || true
        die "layerstore's fuse backend does not work with $LS (see $LOG); --peers-only measures the peers alone"
    fi
    rm -rf "$probe"
    rm -rf --one-file-system "$STORE"
    "$LS" --store "$STORE" init >>"$LOG"
    t0=$EPOCHREALTIME
    "$LS" --store "$STORE" commit "$TREE" --tag linux >>"$LOG" 2>&1 || die "layerstore commit $TREE failed (see $LOG)"
    note "layerstore: committed $TREE as linux in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
    SYSTEMS="$PEERS layerstore"
else
    note "--peers-only: layerstore is not measured"
    SYSTEMS=$PEERS
fi

# ---------------------------------------------------------------- measuring
dentries() { awk '{print $1 " dentries (" $2 " unused)"}' /proc/sys/fs/dentry-state; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
{
    echo "# bench-lazy: runs=$RUNS date=$(date -Is) host=$(hostname)"
    echo "# machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -sr); load at start $(load)"
    echo "# command: $0 ${ORIG_ARGS[*]:-}"
    echo "# tree: $TREE, $ENTRIES entries, $TREE_BYTES bytes"
    echo "# layerstore: ${LS:-not measured} $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)"
    echo "# peers: $PEERS; Debian packages: $(dpkg-query -W -f '${Package} ${Version}, ' squashfs-tools erofs-utils squashfuse casync fuse3 2>/dev/null || true)"
    printf 'system\tmetric\trun\tvalue\tunit\n'
} >"$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }
get() { awk -F'\t' -v s="$1" -v m="$2" -v r="$3" '$1==s&&$2==m&&$3==r{v=$4} END{print v}' "$RESULTS"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "nan"; else printf "%.4f", a / b }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b - a) * 1000}'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# The pids holding /dev/fuse open.
# (find fails on the processes that end while it looks: not an error here)
fuse_pids() { { find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname /dev/fuse -printf '%h\n' 2>/dev/null || true; } | cut -d/ -f3 | sort -u; }
# server_pid BEFORE T [STATEFILE]: the FUSE server of the mount at T: the pid in
# STATEFILE when it exists, else the one process that has /dev/fuse open now and
# did not before the mount (several: the one whose command line names T).
server_pid() {
    local before=$1 t=$2 state=${3:-} new p
    if [[ -n $state && -r $state ]]; then head -1 "$state" | tr -dc 0-9; return; fi
    new=$(comm -13 <(echo "$before") <(fuse_pids))
    if (($(wc -w <<<"$new") > 1)); then
        for p in $new; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$t" && { echo "$p"; return; }; done
        return
    fi
    echo "$new"
}
# alive PID: the process exists and is not a zombie.
alive() { awk '/^State:/ {z = ($2 == "Z")} END {exit z || NR == 0}' "/proc/$1/status" 2>/dev/null; }
# peak_rss PID: VmHWM in MiB.
peak_rss() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }
# rss_kind PID FIELD: the current RssAnon or RssFile in MiB.
rss_kind() { awk -v f="$2:" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }

# do_mount SYSTEM T NAME: mounts SYSTEM at T (NAME: the layerstore container).
do_mount() {
    local t=$1 target=$2 name=$3 i
    case $t in
    squashfs) mount -t squashfs -o loop,ro "$IMAGES/linux.squashfs" "$target" ;;
    erofs) mount -t erofs -o loop,ro "$IMAGES/linux.erofs" "$target" ;;
    squashfuse) squashfuse_ll "$IMAGES/linux.squashfs" "$target" ;;
    casync) # serves in the foreground: ready once T is a mount point
        casync mount --store="$IMAGES/casync/store" "$IMAGES/casync/linux.caidx" "$target" >>"$LOG" 2>&1 &
        CASYNC_PID=$!
        for ((i = 0; i < 60000; i++)); do
            mountpoint -q "$target" && return 0
            kill -0 "$CASYNC_PID" 2>/dev/null || { wait "$CASYNC_PID" || true; CASYNC_PID=; return 1; }
            sleep 0.001
        done
        return 1 ;;
    layerstore) "$LS" --store "$STORE" mount linux "$target" --backend fuse --read-only --name "$name" >>"$LOG" ;;
    esac
}
do_umount() {
    local t=$1 target=$2 name=$3
    case $t in
    layerstore)
        "$LS" --store "$STORE" umount "$target" >>"$LOG" 2>&1 || note "layerstore umount $target failed (see $LOG)"
        "$LS" --store "$STORE" container rm "$name" >>"$LOG" 2>&1 || note "layerstore container rm $name failed (see $LOG)" ;;
    *) umount "$target" ;;
    esac
    if [[ $t == casync && -n $CASYNC_PID ]]; then wait "$CASYNC_PID" || true; CASYNC_PID=; fi
    ! mountpoint -q "$target" || die "$target is still mounted after unmounting $t"
}

# warm_programs SYSTEM: reads the programs a mount of SYSTEM runs (and their
# libraries) back into the page cache after a drop: the image's data and the
# store are cold when the clock starts, the programs are not (a cold exec of a
# big binary costs tens of milliseconds on this disk, and says nothing about
# the view).
warm_programs() {
    local p progs=(mount stat)
    case $1 in
    squashfuse) progs+=(squashfuse_ll) ;;
    casync) progs+=(casync mountpoint) ;;
    layerstore) progs+=("$LS") ;;
    esac
    for p in "${progs[@]}"; do
        p=$(command -v "$p")
        cat "$p" >/dev/null
        "$p" --version >/dev/null 2>&1 || true
    done
}
# mount_timed SYSTEM T NAME: drops caches, mounts, sets MOUNT_MS and SERVER (pid or "").
MOUNT_MS='' SERVER=''
mount_timed() {
    local t=$1 target=$2 name=$3 before t0 t1
    mkdir -p "$target"
    before=$(fuse_pids)
    drop
    warm_programs "$t"
    t0=$EPOCHREALTIME
    do_mount "$t" "$target" "$name" || die "mounting $t at $target failed (see $LOG)"
    stat "$target" >/dev/null
    t1=$EPOCHREALTIME
    mountpoint -q "$target" || die "$t: the mount command returned but $target is not a mount point"
    MOUNT_MS=$(ms "$t0" "$t1")
    SERVER=
    case $t in squashfuse | casync) SERVER=$(server_pid "$before" "$target") ;;
    layerstore) SERVER=$(server_pid "$before" "$target" "$STORE/containers/$name/server.pid") ;;
    esac
    [[ $t == plain || $t == squashfs || $t == erofs || -n $SERVER ]] || note "$t: could not tell its FUSE server's pid; no RSS"
}
# walk T / read T: set SECS (and BYTES for read).
SECS='' BYTES=''
walk() { local t0=$EPOCHREALTIME; find "$1" -printf '%s %m %U\n' >/dev/null; SECS=$(secs "$t0" "$EPOCHREALTIME"); }
read_all() {
    local t0=$EPOCHREALTIME
    # tar exits 1 when a file changed as it read it: logged, not fatal.
    BYTES=$({ tar cf - -C "$1" . 2>>"$LOG" || echo "tar -C $1 exited $?" >>"$LOG"; } | wc -c)
    SECS=$(secs "$t0" "$EPOCHREALTIME")
}

# measure SYSTEM RUN: the figures of one system in one run.
measure() {
    local t=$1 r=$2 target=$MNT/$1 rss i
    if [[ $t == plain ]]; then
        drop; walk "$TREE"; rec plain walk_cold_s "$r" "$SECS" s
        walk "$TREE"; rec plain walk_warm_s "$r" "$SECS" s
        drop; read_all "$TREE"; rec plain read_cold_s "$r" "$SECS" s; rec plain read_bytes "$r" "$BYTES" B
        read_all "$TREE"; rec plain read_warm_s "$r" "$SECS" s
    else
        mount_timed "$t" "$target" "walk-$r"; rec "$t" mount_ms "$r" "$MOUNT_MS" ms
        walk "$target"; rec "$t" walk_cold_s "$r" "$SECS" s
        walk "$target"; rec "$t" walk_warm_s "$r" "$SECS" s
        do_umount "$t" "$target" "walk-$r"
        mount_timed "$t" "$target" "read-$r"; rec "$t" mount_ms "$r" "$MOUNT_MS" ms
        read_all "$target"; rec "$t" read_cold_s "$r" "$SECS" s; rec "$t" read_bytes "$r" "$BYTES" B
        read_all "$target"; rec "$t" read_warm_s "$r" "$SECS" s
        if [[ -n $SERVER ]]; then
            rss=$(peak_rss "$SERVER")
            if [[ -n $rss ]]; then
                rec "$t" server_rss_mib "$r" "$rss" MiB
                # what is resident now, by kind: mapped files (packs) count in RSS too
                rec "$t" server_rss_anon_mib "$r" "$(rss_kind "$SERVER" RssAnon)" MiB
                rec "$t" server_rss_file_mib "$r" "$(rss_kind "$SERVER" RssFile)" MiB
            else
                note "$t: server pid $SERVER is gone; no RSS"
            fi
        fi
        do_umount "$t" "$target" "read-$r"
        if [[ -n $SERVER ]]; then # the server must end with its mount
            for ((i = 0; i < 50; i++)); do alive "$SERVER" || break; sleep 0.1; done
            ! alive "$SERVER" || note "WARNING: $t's server (pid $SERVER) still runs 5 s after its unmount"
        fi
    fi
    [[ $t == layerstore ]] && commit_container "$r"
    note "$t: $(awk -F'\t' -v t="$t" -v r="$r" '$1==t&&$3==r&&$2!="read_bytes"{printf "%s=%s ", $2, $4}' "$RESULTS")"
}

# commit_container RUN: a writable container on the fuse backend, 3 changes, commit.
commit_container() {
    local r=$1 target=$MNT/layerstore-rw name=box-$1 t0
    mkdir -p "$target"
    drop
    warm_programs layerstore
    t0=$EPOCHREALTIME
    "$LS" --store "$STORE" mount linux "$target" --backend fuse --name "$name" >>"$LOG" 2>&1 ||
        die "layerstore mount linux $target --backend fuse (writable) failed (see $LOG)"
    stat "$target" >/dev/null
    rec layerstore rw_mount_ms "$r" "$(ms "$t0" "$EPOCHREALTIME")" ms
    # change one file, add one, delete one
    echo "changed by bench-lazy $r" >>"$target/Makefile"
    echo "added by bench-lazy $r" >"$target/ADDED-by-bench-lazy"
    rm "$target/README"
    sync
    t0=$EPOCHREALTIME
    "$LS" --store "$STORE" container commit "$name" >>"$LOG" 2>&1 || die "layerstore container commit $name failed (see $LOG)"
    rec layerstore commit_ms "$r" "$(ms "$t0" "$EPOCHREALTIME")" ms
    "$LS" --store "$STORE" container rm "$name" >>"$LOG" 2>&1 || note "layerstore container rm $name failed (see $LOG)"
    ! mountpoint -q "$target" || die "$target is still mounted after container rm $name"
}

note "tree $TREE: $ENTRIES entries, $((TREE_BYTES / 1000000)) MB; systems: $SYSTEMS; $RUNS run(s); load $(load)"
for ((r = 1; r <= RUNS; r++)); do
    note "== run $r/$RUNS (load $(load); $(dentries))"
    for t in $SYSTEMS; do measure "$t" "$r"; done
    pr=$(get plain read_bytes "$r")
    for t in $SYSTEMS; do
        b=$(get "$t" read_bytes "$r")
        [[ -z $pr || -z $b || $b == "$pr" ]] || note "WARNING: $t's tar stream is $b bytes, the plain directory's $pr"
    done
    if ((LAYERSTORE_ON)); then
        rec ratio read_cold_vs_squashfs "$r" "$(ratio "$(get layerstore read_cold_s "$r")" "$(get squashfs read_cold_s "$r")")" x
        rec ratio walk_vs_plain "$r" "$(ratio "$(get layerstore walk_cold_s "$r")" "$(get plain walk_cold_s "$r")")" x
        rec ratio walk_warm_vs_plain "$r" "$(ratio "$(get layerstore walk_warm_s "$r")" "$(get plain walk_warm_s "$r")")" x
        rec ratio read_warm_vs_plain "$r" "$(ratio "$(get layerstore read_warm_s "$r")" "$(get plain read_warm_s "$r")")" x
    fi
done
sed -i "2s|\$|; load at end $(load)|" "$RESULTS"

# ---------------------------------------------------------------- the table
# med SYSTEM METRIC: the median over runs, "-" when absent.
med() {
    awk -F'\t' -v s="$1" -v m="$2" '
        $1==s && $2==m && $4!="nan" { v[n++] = $4 + 0 }
        END {
            if (!n) { print "-"; exit }
            for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j+1] = v[j]; v[j+1] = x }
            m = (n % 2) ? v[int(n/2)] : (v[n/2-1] + v[n/2]) / 2
            printf (m >= 100 ? "%.0f" : (m >= 10 ? "%.1f" : "%.2f")), m
        }' "$RESULTS"
}
# target LABEL VALUE LIMIT UNIT
target() {
    local verdict
    if [[ $2 == - ]]; then verdict="not measured"
    else verdict=$(awk -v v="$2" -v l="$3" 'BEGIN {print (v <= l) ? "met" : "MISSED"}'); fi
    printf '  %-38s %10s %-4s (target <= %s)  %s\n' "$1" "$2" "$4" "$3" "$verdict"
}
table() {
    local t
    printf '\n%s: %s entries, %s MB; medians of %s run(s); caches dropped before each mount\n' \
        "$TREE" "$ENTRIES" "$((TREE_BYTES / 1000000))" "$RUNS"
    printf '%-11s %9s %9s %9s %9s %9s %9s %13s\n' system "mount ms" "walk s" "walk2 s" "read s" "read2 s" "RSS MiB" "anon/file MiB"
    for t in $SYSTEMS; do
        printf '%-11s %9s %9s %9s %9s %9s %9s %13s\n' "$t" "$(med "$t" mount_ms)" "$(med "$t" walk_cold_s)" \
            "$(med "$t" walk_warm_s)" "$(med "$t" read_cold_s)" "$(med "$t" read_warm_s)" "$(med "$t" server_rss_mib)" \
            "$(med "$t" server_rss_anon_mib)/$(med "$t" server_rss_file_mib)"
    done
    echo "(walk, read: cold, right after mounting; walk2, read2: a second pass; RSS: the FUSE server's peak;"
    echo " anon/file: what of it was anonymous memory and mapped files after the reads)"
    if ((LAYERSTORE_ON)); then
        printf '\nlayerstore against the targets of issue #18 (ratios computed within each run):\n'
        target "mount" "$(med layerstore mount_ms)" 30 ms
        target "walk ÷ plain walk" "$(med ratio walk_vs_plain)" 2 x
        target "cold read ÷ kernel squashfs cold read" "$(med ratio read_cold_vs_squashfs)" 1.0 x
        target "second read ÷ plain second read" "$(med ratio read_warm_vs_plain)" 1.5 x
        target "server peak RSS" "$(med layerstore server_rss_mib)" 256 MiB
        target "container commit (overlay over FUSE)" "$(med layerstore commit_ms)" 50 ms
        printf '  %-38s %10s x\n' "warm walk ÷ plain warm walk" "$(med ratio walk_warm_vs_plain)"
        printf '  %-38s %10s ms\n' "writable container mount" "$(med layerstore rw_mount_ms)"
    else
        printf '\nlayerstore not measured (--peers-only): no targets checked\n'
    fi
}
table | tee -a "$LOG"
echo "raw figures: $RESULTS; log: $LOG"
exit 0
}
