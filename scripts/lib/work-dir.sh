# Sourced by the benchmark and comparison scripts.
#
# outside_repo DIR VAR: creates DIR, prints its physical path, and refuses
# (exit status 2, naming VAR, the variable that chose it) a DIR inside the
# git repository $REPO_ROOT: the scripts write stores and trees of
# gigabytes there.
outside_repo() {
    local dir=$1 var=$2
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    case $dir/ in "$REPO_ROOT"/*)
        echo "$var ($dir) is inside the git repository $REPO_ROOT; choose another" >&2
        return 2 ;;
    esac
    printf '%s\n' "$dir"
}
