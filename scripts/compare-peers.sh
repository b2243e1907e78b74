#!/usr/bin/env bash
# Compare layerstore with its peers (restic, borg, casync, ostree) and with the
# no-dedup baseline `tar -c | zstd -3 -T2`, on one tree, in one run.
#
#   scripts/compare-peers.sh [--runs N] [--tools LIST] [--no-install] [--baseline BIN] [TREE]
#   scripts/compare-peers.sh --rootfs [--runs N] [--tools LIST] [--no-install]
#
# TREE defaults to /work/data/linux/linux-source-6.1. Everything is written under
# $COMPARE_WORK (default /work/data/compare), never inside the git repository:
# one fresh, empty repository directory per tool and per run, removed after it
# was measured. Raw figures go to $RESULTS (default
# $COMPARE_WORK/results-<scenario>-<date>.tsv); a table of medians is printed.
#
# Tree scenario, per run and per tool: wall time of a first backup/commit, size of
# the repo on disk (du -sb), wall time of a second backup of the unchanged tree,
# peak RSS of the first backup (/usr/bin/time -v). For layerstore also: checkout of
# the first image vs `zstd -dc | tar -x` of the same tree, a commit of a copy of
# the tree with a handful of files changed, and `diff` of the two stored images.
# Also a bare stat walk (`find TREE -printf ''`).
#
# --baseline BIN: also measure another layerstore binary (e.g. the build before
# a refactor) as the tool `baseline`, with every layerstore step, in the same
# runs; the two builds take turns going first. The ratios layerstore ÷ baseline
# of each step are computed within each run (the tree scenario only).
#
# --rootfs: four root filesystems built with debootstrap (cached under
# $COMPARE_WORK/rootfs), committed in order into one store per tool; reports the
# time of the four commits and the store's size after each.
#
# Ratios are layerstore ÷ peer, computed within each run, then the median taken.
# The page cache is warmed before each run; nothing is dropped from it. Each
# timed step starts after `sync`, once the disk has been idle for a second.
#
# Environment: COMPARE_WORK, RESULTS, RUNS (default 3), LAYERSTORE (a binary to
# use instead of building target/release/layerstore), MIRROR (debootstrap mirror,
# default http://deb.debian.org/debian), KEEP=1 (keep the repositories).
set -euo pipefail
{ # the whole script is one compound command: bash parses it before running it, so
  # editing this file while it runs cannot change what runs.

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; }

ORIG_ARGS=("$@")
SCENARIO=tree
RUNS=${RUNS:-3}
INSTALL=1
TOOLS_ALL="layerstore restic borg casync ostree tarzst find"
TOOLS=$TOOLS_ALL
BASELINE=
TREE=/work/data/linux/linux-source-6.1
MIRROR=${MIRROR:-http://deb.debian.org/debian}
while (($#)); do
    case $1 in
    --rootfs) SCENARIO=rootfs ;;
    --runs) RUNS=$2; shift ;;
    --tools) TOOLS=${2//,/ }; shift ;;
    --no-install) INSTALL=0 ;;
    --baseline) BASELINE=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) TREE=$1 ;;
    esac
    shift
done

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
WORK=${COMPARE_WORK:-/work/data/compare}
. "$REPO_ROOT/scripts/lib/work-dir.sh"
WORK=$(outside_repo "$WORK" COMPARE_WORK) || exit 2
STAMP=$(date +%Y%m%dT%H%M%S)
RESULTS=${RESULTS:-$WORK/results-$SCENARIO-$STAMP.tsv}
LOG=$WORK/log-$SCENARIO-$STAMP.txt
RUNDIR=$WORK/runs/$SCENARIO-$STAMP-$$
TMPF=$RUNDIR/.tmp
mkdir -p "$RUNDIR"
: >"$LOG"

has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }
note() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
NOTES=()
skip_note() { NOTES+=("$*"); note "NOTE: $*"; }

# ---------------------------------------------------------------- installation
install_peers() {
    local pkgs=(restic borgbackup casync ostree zstd time) missing=0 p
    [[ $SCENARIO == rootfs ]] && pkgs+=(debootstrap)
    for c in restic borg casync ostree zstd /usr/bin/time; do
        command -v "$c" >/dev/null || missing=1
    done
    [[ $SCENARIO == rootfs ]] && { command -v debootstrap >/dev/null || missing=1; }
    ((missing)) || return 0
    ((INSTALL)) || { echo "peers missing and --no-install given" >&2; exit 3; }
    note "installing ${pkgs[*]} from Debian's packages"
    apt-get update >>"$LOG" 2>&1
    for p in "${pkgs[@]}"; do
        apt-cache show "$p" >/dev/null 2>&1 || { echo "no Debian package named $p" >&2; exit 3; }
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >>"$LOG" 2>&1
}
install_peers

# ---------------------------------------------------------------- layerstore
LS=${LAYERSTORE:-}
if has_tool layerstore; then
    if [[ -z $LS ]]; then
        if (cd "$REPO_ROOT" && cargo build --release --features cli) >>"$LOG" 2>&1; then
            LS=$REPO_ROOT/target/release/layerstore
        else
            skip_note "layerstore: 'cargo build --release --features cli' failed (see $LOG); layerstore not measured"
        fi
    fi
    if [[ -n $LS ]]; then
        probe=$RUNDIR/probe
        rm -rf "$probe"; mkdir -p "$probe/tree/d"; echo hi >"$probe/tree/d/f"
        if ! { "$LS" --store "$probe/s" init && "$LS" --store "$probe/s" commit "$probe/tree" --tag p &&
            "$LS" --store "$probe/s" checkout p "$probe/out"; } >>"$LOG" 2>&1; then
            skip_note "layerstore: init/commit/checkout does not work yet with $LS (see $LOG); layerstore not measured"
            LS=
        fi
        rm -rf "$probe"
    fi
    [[ -n $LS ]] || TOOLS=${TOOLS/layerstore/}
fi

if [[ -n $BASELINE ]]; then
    [[ -x $BASELINE ]] || { echo "--baseline $BASELINE: not an executable" >&2; exit 2; }
    [[ $SCENARIO == tree ]] || { echo "--baseline is for the tree scenario" >&2; exit 2; }
    has_tool layerstore || { echo "--baseline needs the tool layerstore" >&2; exit 2; }
    TOOLS="$TOOLS baseline"
fi
# lsbin TOOL: the layerstore binary a layerstore-like tool runs.
lsbin() { if [[ $1 == baseline ]]; then echo "$BASELINE"; else echo "$LS"; fi; }

# ---------------------------------------------------------------- measuring
export RESTIC_PASSWORD=compare-peers
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$RUNDIR/borg-base

HOSTNAME_=$(hostname)
dentries() { awk '{print $1 " dentries (" $2 " unused)"}' /proc/sys/fs/dentry-state; }
{
    echo "# compare-peers: scenario=$SCENARIO runs=$RUNS date=$(date -Is) host=$HOSTNAME_"
    echo "# machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -sr)"
    # A lookup (every lstat) walks a hash chain of the dentry cache: with a
    # million dentries cached, each costs about twice as much as with 100 000.
    echo "# dentry cache at start: $(dentries)"
    echo "# command: $0 ${ORIG_ARGS[*]:-}"
    echo "# layerstore: ${LS:-none} $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)"
    [[ -z $BASELINE ]] || echo "# baseline: $BASELINE"
    echo "# peers: $(restic version | head -1); $(borg --version); casync $(casync --version | head -1); ostree $(ostree --version | awk -F"'" '/Version/{print $2}'); $(zstd --version)"
    printf 'scenario\ttool\tmetric\trun\tvalue\tunit\n'
} >"$RESULTS"
rec() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$SCENARIO" "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }

# The block device under $WORK, for settle(): its /sys/class/block/*/stat.
DISK_STAT=
disk_dev=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null || true)
[[ -n $disk_dev && -r /sys/class/block/${disk_dev##*/}/stat ]] && DISK_STAT=/sys/class/block/${disk_dev##*/}/stat
# settle: sync, then wait (at most 60 s) until the disk has done no reads,
# writes or discards for a second. Removing a 1.3 GB tree on a file system
# mounted with `discard` keeps the device busy discarding for many seconds
# after `sync` returns; a step timed then pays for the step before it.
settle() {
    sync
    [[ -n $DISK_STAT ]] || return 0
    local a b i
    a=$(<"$DISK_STAT")
    for ((i = 0; i < 60; i++)); do
        sleep 1
        b=$(<"$DISK_STAT")
        [[ $a == "$b" ]] && return 0
        a=$b
    done
    note "the disk was still busy after 60 s; measuring anyway"
}

# tm CMD...: settles, runs CMD (output to the log), sets T (wall seconds, from the
# clock) and RSS (peak resident set in MB, from /usr/bin/time -v).
T=0 RSS=0
tm() {
    local tf=$TMPF.time t0 t1
    echo "+ $*" >>"$LOG"
    # Nothing dirty and the disk idle when the clock starts: the writeback or
    # discards of an earlier step (a 1.3 GB extraction removed, a first
    # commit) must not land in this one.
    settle
    t0=$(date +%s%N)
    if ! /usr/bin/time -v -o "$tf" "$@" >>"$LOG" 2>&1; then
        note "FAILED: $*"; tail -n 20 "$LOG" >&2; return 1
    fi
    t1=$(date +%s%N)
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    RSS=$(awk '/Maximum resident set size/{printf "%.1f", $NF/1024}' "$tf")
}
sz() { du -sb "$@" | awk '{s+=$1} END{print s}'; }
fresh() { rm -rf "$1"; mkdir -p "$(dirname "$1")"; }
cleanup() { [[ ${KEEP:-0} == 1 ]] || rm -rf "$@"; }
warm() { tar -C "$1" -cf - . | cat >/dev/null; }

# One backup of DIR into a tool's repository REPO. name: a snapshot/tag name.
init_repo() {
    local tool=$1 repo=$2
    fresh "$repo"
    case $tool in
    layerstore | baseline) "$(lsbin "$tool")" --store "$repo" init ;;
    restic) restic -r "$repo" --cache-dir "$repo.cache" init ;;
    borg) borg init -e none "$repo" ;;
    casync) mkdir -p "$repo/store" ;;
    ostree) mkdir -p "$repo" && ostree --repo="$repo" init --mode=archive ;;
    esac >>"$LOG" 2>&1
}
backup() {
    local tool=$1 repo=$2 dir=$3 name=$4
    case $tool in
    layerstore | baseline) tm "$(lsbin "$tool")" --store "$repo" commit "$dir" --tag "$name" ;;
    restic) tm restic -r "$repo" --cache-dir "$repo.cache" backup --quiet "$dir" ;;
    borg) tm borg create --compression zstd,3 "$repo::$name" "$dir" ;;
    casync) tm casync make --store="$repo/store" "$repo/$name.caidx" "$dir" ;;
    ostree) tm ostree --repo="$repo" commit --branch=compare --subject="$name" --tree=dir="$dir" ;;
    esac
}
# rm the tool's cache that is not part of the repository (restic's, borg's).
drop_tool_cache() { rm -rf "$1.cache" "$BORG_BASE_DIR"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.3f", a/b; else print "nan" }'; }

PEERS=""
for t in restic borg casync ostree; do has_tool $t && PEERS+=" $t"; done

# ---------------------------------------------------------------- tree scenario
make_modified_copy() { # a copy of $1 at $2 (hard links) with a handful of files changed
    local src=$1 dst=$2 f i=0
    rm -rf "$dst"
    cp -al "$src" "$dst" 2>>"$LOG" || { rm -rf "$dst"; cp -a --reflink=auto "$src" "$dst"; }
    mapfile -t files < <(cd "$dst" && find . -type f -size +1k -printf '%P\n' | LC_ALL=C sort |
        awk '{ a[NR] = $0 } END { for (i = 1; i <= 6; i++) print a[int(NR * i / 7)] }')
    for f in "${files[@]}"; do # break the hard link first: the original is not touched
        cp -p "$dst/$f" "$dst/$f.tmp-compare" && mv "$dst/$f.tmp-compare" "$dst/$f"
        case $i in
        0 | 1 | 2) echo "compare-peers: modified" >>"$dst/$f" ;; # content changed
        3 | 4) touch "$dst/$f" ;;                                  # mtime only
        5) rm "$dst/$f" ;;                                           # deleted
        esac
        i=$((i + 1))
    done
    echo "added by compare-peers" >"$dst/${files[0]%/*}/ADDED-by-compare-peers"
    note "modified copy: changed ${files[*]:0:3}; touched ${files[*]:3:2}; deleted ${files[*]:5:1}; added ${files[0]%/*}/ADDED-by-compare-peers"
}

# Compare metadata and content of two trees; prints the number of differing lines.
# A directory's st_size depends on the history of its blocks, not on the tree: left out.
tree_listing() {
    (cd "$1" && find . \( -type d -printf '%P %y %m %U %G - %T@\n' \) -o -printf '%P %y %m %U %G %s %T@ %l\n' | LC_ALL=C sort)
}
verify_checkout() {
    local a=$1 b=$2 n
    n=$(diff <(tree_listing "$a") <(tree_listing "$b") | grep -c '^[<>]' || true)
    if ! diff -rq --no-dereference "$a" "$b" >>"$LOG" 2>&1; then n=$((n + 1)); fi
    echo "$n"
}

run_tree() {
    [[ -d $TREE ]] || { echo "no tree at $TREE" >&2; exit 2; }
    local tree_bytes files r tool repo lsf lss lsz
    tree_bytes=$(sz "$TREE"); files=$(find "$TREE" | wc -l)
    rec tree bytes 0 "$tree_bytes" B; rec tree entries 0 "$files" n
    note "tree $TREE: $((tree_bytes / 1000000)) MB, $files entries; work dir $WORK; $RUNS run(s)"
    local MOD=$RUNDIR/tree-modified # per process: concurrent runs must not share it
    has_tool layerstore && make_modified_copy "$TREE" "$MOD"
    for ((r = 1; r <= RUNS; r++)); do
        note "== run $r/$RUNS: warming the page cache"
        warm "$TREE"; has_tool layerstore && warm "$MOD"
        note "dentry cache: $(dentries)"
        if has_tool find; then
            # -printf '' needs no stat of a file (readdir's d_type suffices): a readdir walk;
            # printing %s %T@ %C@ %i makes find lstat every entry, as a stat cache must.
            tm find "$TREE" -printf ''; rec find stat_walk_s "$r" "$T" s
            tm bash -c 'find "$1" -printf "%i %s %T@ %C@\n" >/dev/null' _ "$TREE"; rec find lstat_walk_s "$r" "$T" s
            note "find walk: $(get find stat_walk_s "$r") s; with lstat of every entry: $T s"
        fi
        if has_tool tarzst; then
            repo=$RUNDIR/tarzst; fresh "$repo"; mkdir -p "$repo"
            tm bash -c 'tar -C "$1" -cf - . | zstd -3 -T2 -q -o "$2"' _ "$TREE" "$repo/tree.tar.zst"
            rec tarzst first_s "$r" "$T" s; rec tarzst first_rss_mb "$r" "$RSS" MB
            rec tarzst size_b "$r" "$(sz "$repo/tree.tar.zst")" B
            fresh "$repo/x"; mkdir -p "$repo/x"
            tm bash -c 'zstd -dc "$1" | tar -x -C "$2"' _ "$repo/tree.tar.zst" "$repo/x"
            rec tarzst extract_s "$r" "$T" s
            note "tar|zstd: $(awk -F'\t' -v r="$r" '$2=="tarzst"&&$4==r{printf "%s=%s ", $3, $5}' "$RESULTS")"
            cleanup "$repo"
        fi
        local order=$TOOLS
        # the two builds take turns going first
        has_tool baseline && ((r % 2 == 0)) && order="baseline ${TOOLS/baseline/}"
        for tool in $order; do
            case $tool in layerstore | baseline | restic | borg | casync | ostree) ;; *) continue ;; esac
            repo=$RUNDIR/$tool; drop_tool_cache "$repo"
            init_repo "$tool" "$repo"
            backup "$tool" "$repo" "$TREE" t1
            rec "$tool" first_s "$r" "$T" s; rec "$tool" first_rss_mb "$r" "$RSS" MB
            rec "$tool" size_b "$r" "$(sz "$repo")" B
            backup "$tool" "$repo" "$TREE" t1b
            rec "$tool" second_s "$r" "$T" s; rec "$tool" second_rss_mb "$r" "$RSS" MB
            rec "$tool" size_after_second_b "$r" "$(sz "$repo")" B
            if [[ $tool == layerstore || $tool == baseline ]]; then
                local bin; bin=$(lsbin "$tool")
                "$bin" --store "$repo" du >"$TMPF.du" 2>>"$LOG" || true
                while IFS=: read -r k v; do
                    v=${v// /}; [[ $v =~ ^[0-9.]+$ ]] && rec "$tool" "du_${k// /_}" "$r" "$v" -
                done <"$TMPF.du"
                fresh "$repo.out"
                tm "$bin" --store "$repo" checkout t1 "$repo.out"; rec "$tool" checkout_s "$r" "$T" s
                rec "$tool" checkout_rss_mb "$r" "$RSS" MB
                if ((r == 1)); then
                    local bad; bad=$(verify_checkout "$TREE" "$repo.out")
                    rec "$tool" checkout_mismatches "$r" "$bad" n
                    ((bad == 0)) || note "WARNING: checkout differs from the tree in $bad listing lines (see $LOG)"
                fi
                rm -rf "$repo.out"
                tm "$bin" --store "$repo" commit "$MOD" --tag t2; rec "$tool" commit_modified_s "$r" "$T" s
                tm "$bin" --store "$repo" diff t1 t2; rec "$tool" diff_s "$r" "$T" s
                "$bin" --store "$repo" diff t1 t2 >"$TMPF.diff" 2>>"$LOG" || true
                rec "$tool" diff_lines "$r" "$(wc -l <"$TMPF.diff")" n
                ((r == 1)) && { echo "diff t1 t2:"; cat "$TMPF.diff"; } >>"$LOG"
            fi
            note "$tool: $(awk -F'\t' -v t="$tool" -v r="$r" '$2==t&&$4==r&&$3!~/^du_/{printf "%s=%s ", $3, $5}' "$RESULTS")"
            cleanup "$repo" "$repo.cache"; drop_tool_cache "$repo"
        done
        # ratios within this run
        if has_tool layerstore; then
            lsf=$(get layerstore first_s "$r"); lss=$(get layerstore second_s "$r"); lsz=$(get layerstore size_b "$r")
            for tool in $PEERS tarzst; do
                has_tool "$tool" || continue
                rec "$tool" ratio_first "$r" "$(ratio "$lsf" "$(get "$tool" first_s "$r")")" x
                rec "$tool" ratio_size "$r" "$(ratio "$lsz" "$(get "$tool" size_b "$r")")" x
                [[ $tool == tarzst ]] && rec tarzst ratio_restore "$r" \
                    "$(ratio "$(get layerstore checkout_s "$r")" "$(get tarzst extract_s "$r")")" x
                [[ $tool == tarzst ]] || rec "$tool" ratio_second "$r" "$(ratio "$lss" "$(get "$tool" second_s "$r")")" x
            done
            has_tool find && rec find ratio_second "$r" "$(ratio "$lss" "$(get find lstat_walk_s "$r")")" x
            if has_tool baseline; then
                local m
                for m in first_s second_s size_b first_rss_mb checkout_s commit_modified_s diff_s; do
                    rec baseline "ratio_$m" "$r" "$(ratio "$(get layerstore "$m" "$r")" "$(get baseline "$m" "$r")")" x
                done
            fi
        fi
    done
    rm -rf "$MOD"
}
get() { awk -F'\t' -v t="$1" -v m="$2" -v r="$3" '$2==t&&$3==m&&$4==r{v=$5} END{print v}' "$RESULTS"; }

# ---------------------------------------------------------------- rootfs scenario
ROOTFS_NAMES="bookworm-minbase bookworm-python3 bookworm-python3-git-curl trixie-minbase"
# debootstrap mounts proc (and maybe more) inside the tree; make sure nothing stays.
unmount_under() {
    local m
    [[ -e $1 ]] || return 0
    awk -v p="$(realpath "$1")/" 'index($2 "/", p) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
}
build_rootfs() {
    local name=$1 suite include="" dir=$WORK/rootfs/$1
    [[ -f $dir.complete ]] && return 0
    case $name in
    bookworm-minbase) suite=bookworm ;;
    bookworm-python3) suite=bookworm include=--include=python3 ;;
    bookworm-python3-git-curl) suite=bookworm include=--include=python3,git,curl ;;
    trixie-minbase) suite=trixie ;;
    esac
    unmount_under "$dir.tmp"
    note "debootstrap $suite --variant=minbase $include into $dir"
    rm -rf "$dir" "$dir.tmp"; mkdir -p "$WORK/rootfs"
    if ! debootstrap --variant=minbase $include "$suite" "$dir.tmp" "$MIRROR" >>"$LOG" 2>&1; then
        unmount_under "$dir.tmp"; rm -rf --one-file-system "$dir.tmp"
        return 1
    fi
    unmount_under "$dir.tmp"
    rm -rf --one-file-system "${dir:?}.tmp/dev/"* "$dir.tmp/debootstrap"
    mv "$dir.tmp" "$dir"; touch "$dir.complete"
}

run_rootfs() {
    local name i=0 tool repo total r lst lsz
    for name in $ROOTFS_NAMES; do
        if ! build_rootfs "$name"; then
            skip_note "debootstrap of $name from $MIRROR failed (see $LOG): rootfs scenario skipped"
            return 0
        fi
        rec "$name" bytes 0 "$(sz "$WORK/rootfs/$name")" B
        rec "$name" entries 0 "$(find "$WORK/rootfs/$name" | wc -l)" n
    done
    for ((r = 1; r <= RUNS; r++)); do
        note "== rootfs run $r/$RUNS: warming the page cache"
        for name in $ROOTFS_NAMES; do warm "$WORK/rootfs/$name"; done
        if has_tool tarzst; then
            repo=$RUNDIR/tarzst; fresh "$repo"; mkdir -p "$repo"; total=0
            for name in $ROOTFS_NAMES; do
                tm bash -c 'tar -C "$1" -cf - . | zstd -3 -T2 -q -o "$2"' _ "$WORK/rootfs/$name" "$repo/$name.tar.zst"
                total=$(awk -v a="$total" -v b="$T" 'BEGIN{printf "%.3f", a+b}')
                rec tarzst "size_after_$name" "$r" "$(sz "$repo")" B
            done
            rec tarzst total_s "$r" "$total" s; rec tarzst size_b "$r" "$(sz "$repo")" B
            cleanup "$repo"
        fi
        for tool in $TOOLS; do
            case $tool in layerstore | restic | borg | casync | ostree) ;; *) continue ;; esac
            repo=$RUNDIR/$tool; drop_tool_cache "$repo"
            init_repo "$tool" "$repo"; total=0; i=0
            for name in $ROOTFS_NAMES; do
                i=$((i + 1))
                backup "$tool" "$repo" "$WORK/rootfs/$name" "r$i"
                total=$(awk -v a="$total" -v b="$T" 'BEGIN{printf "%.3f", a+b}')
                rec "$tool" "commit_${name}_s" "$r" "$T" s
                rec "$tool" "size_after_$name" "$r" "$(sz "$repo")" B
            done
            rec "$tool" total_s "$r" "$total" s; rec "$tool" size_b "$r" "$(sz "$repo")" B
            note "$tool: total ${total}s, $(($(get "$tool" size_b "$r") / 1000000)) MB"
            cleanup "$repo" "$repo.cache"; drop_tool_cache "$repo"
        done
        if has_tool layerstore; then
            lst=$(get layerstore total_s "$r"); lsz=$(get layerstore size_b "$r")
            for tool in $PEERS tarzst; do
                has_tool "$tool" || continue
                rec "$tool" ratio_total "$r" "$(ratio "$lst" "$(get "$tool" total_s "$r")")" x
                rec "$tool" ratio_size "$r" "$(ratio "$lsz" "$(get "$tool" size_b "$r")")" x
            done
        fi
    done
}

# ---------------------------------------------------------------- the table
# med TOOL METRIC [DIV]: median over runs (divided by DIV), "-" when absent.
med() {
    awk -F'\t' -v t="$1" -v m="$2" -v d="${3:-1}" '
        $2==t && $3==m && $5!="nan" { v[n++] = $5 + 0 }
        END {
            if (!n) { print "-"; exit }
            for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j+1] = v[j]; v[j+1] = x }
            m = (n % 2) ? v[int(n/2)] : (v[n/2-1] + v[n/2]) / 2
            m = m / d
            if (m == int(m)) printf "%d", m; else printf (d == 1 ? "%.2f" : "%.1f"), m
        }' "$RESULTS"
}

table_tree() {
    local tool label
    printf '\n%s: %s (%s MB, %s entries), medians of %s run(s)\n' "tree" "$TREE" \
        "$(med tree bytes 1000000)" "$(med tree entries)" "$RUNS"
    printf '%-22s %9s %9s %9s %8s | %-28s\n' tool "first s" "second s" "store MB" "RSS MB" "layerstore ÷ tool: first second size"
    for tool in layerstore $PEERS tarzst; do
        has_tool "$tool" || continue
        label=$tool; [[ $tool == tarzst ]] && label="tar|zstd -3 -T2"
        printf '%-22s %9s %9s %9s %8s | %8s %8s %8s\n' "$label" "$(med "$tool" first_s)" \
            "$(med "$tool" second_s)" "$(med "$tool" size_b 1000000)" "$(med "$tool" first_rss_mb)" \
            "$(med "$tool" ratio_first)" "$(med "$tool" ratio_second)" "$(med "$tool" ratio_size)"
    done
    has_tool find && printf '%-22s %9s %9s %9s %8s | %8s %8s %8s\n' \
        "find -printf '' walk" "$(med find stat_walk_s)" - - - - - -
    has_tool find && printf '%-22s %9s %9s %9s %8s | %8s %8s %8s   (second: layerstore second ÷ lstat walk)\n' \
        "find, lstat each entry" "$(med find lstat_walk_s)" - - - - "$(med find ratio_second)" -
    if has_tool baseline; then
        printf '\nlayerstore (%s) against the baseline build (%s), same runs; medians of per-run ratios:\n' "$LS" "$BASELINE"
        printf '%-18s %10s %10s %8s\n' step layerstore baseline ratio
        local m
        for m in first_s second_s size_b first_rss_mb checkout_s commit_modified_s diff_s; do
            printf '%-18s %10s %10s %8s\n' "$m" "$(med layerstore "$m")" "$(med baseline "$m")" "$(med baseline "ratio_$m")"
        done
    fi
    if has_tool layerstore; then
        printf '\nrestore: layerstore checkout %s s (RSS %s MB), zstd -dc | tar -x %s s; ratio %s\n' \
            "$(med layerstore checkout_s)" "$(med layerstore checkout_rss_mb)" "$(med tarzst extract_s)" "$(med tarzst ratio_restore)"
        printf 'checkout vs tree: %s differing listing lines (run 1)\n' "$(med layerstore checkout_mismatches)"
        printf 'commit of the modified copy: %s s; diff t1 t2: %s s, %s lines\n' \
            "$(med layerstore commit_modified_s)" "$(med layerstore diff_s)" "$(med layerstore diff_lines)"
        printf 'layerstore du: logical %s MB, unique %s MB, stored %s MB, chunks %s\n' \
            "$(med layerstore du_logical_bytes 1000000)" "$(med layerstore du_unique_bytes 1000000)" \
            "$(med layerstore du_stored_bytes 1000000)" "$(med layerstore du_chunks)"
    fi
}

table_rootfs() {
    local tool label name sizes
    printf '\nrootfs: %s, committed in this order into one store per tool; medians of %s run(s)\n' "$ROOTFS_NAMES" "$RUNS"
    for name in $ROOTFS_NAMES; do printf '  %-28s %8s MB %8s entries\n' "$name" "$(med "$name" bytes 1000000)" "$(med "$name" entries)"; done
    printf '%-18s %9s %9s | %-30s | %s\n' tool "total s" "store MB" "layerstore ÷ tool: time size" "store MB after each"
    for tool in layerstore $PEERS tarzst; do
        has_tool "$tool" || continue
        label=$tool; [[ $tool == tarzst ]] && label="tar|zstd (4 files)"
        sizes=""; for name in $ROOTFS_NAMES; do sizes+="$(med "$tool" "size_after_$name" 1000000) "; done
        printf '%-18s %9s %9s | %14s %14s | %s\n' "$label" "$(med "$tool" total_s)" "$(med "$tool" size_b 1000000)" \
            "$(med "$tool" ratio_total)" "$(med "$tool" ratio_size)" "$sizes"
    done
}

if [[ $SCENARIO == tree ]]; then run_tree; table_tree | tee -a "$LOG"; else run_rootfs; table_rootfs | tee -a "$LOG"; fi
for n in "${NOTES[@]}"; do echo "NOTE: $n"; done
cleanup "$RUNDIR"
echo "raw figures: $RESULTS; log: $LOG"
exit 0
}
