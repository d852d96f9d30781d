# Sourced by the GPU scripts: the environment of a GPU-machine run and `part`, which runs one
# measurement within the time budget. Set BUDGET (seconds) before sourcing; OUT keeps the logs.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src BIAPY_PEER_HOME=/tmp/bp BIAPY_VENV=/tmp/bp/v \
    BIAPY_PYTHON=python3
O=${OUT:-/tmp/out}
mkdir -p "$O"
t0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - t0))); }
part() {  # NAME TIMEOUT COMMAND...: run unless fewer than TIMEOUT seconds are left
    local name=$1 limit=$2
    shift 2
    if [ "$(left)" -lt "$limit" ]; then echo "== $name: SKIPPED (time budget)"; return; fi
    echo "== $name"
    local s=$(date +%s.%N)
    if declare -F "$1" >/dev/null; then  # a shell function: timeout runs programs only
        export -f "$1"
        set -- bash -c '"$@"' _ "$@"
    fi
    timeout -k 10 "$limit" "$@" 2>&1 | grep -v -i -e "warn" -e "^\s*$" | tee -a "$O/$name.log" \
        | tail "-${TAIL:-25}"
    echo "   [$name: $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s wall]"
}
