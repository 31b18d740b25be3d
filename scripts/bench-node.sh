# bench-node.sh — sourced by scripts/stalls.sh and scripts/profile.sh: the
# appliance a background `shardwatch-load bench` started, and its core
# threads. The sourcing script defines `die MESSAGE`.

# Fails unless `perf` and the two binaries are there.
#   need_perf_and BIN LOAD
need_perf_and() {
  local b
  command -v perf >/dev/null || die "perf missing (apt-get install linux-perf)"
  for b in "$@"; do
    [ -x "$b" ] || die "$b missing (cargo build --release -p shardwatch -p shardwatch-perf)"
  done
}

# Prints the pid of the bench's child running `BIN run` (the appliance,
# not the `--version` the bench asks first), waiting up to 30 s.
#   bench_node BENCH_PID BIN BENCH_LOG
bench_node() {
  local bench=$1 bin=$2 log=$3 bin_abs node=
  bin_abs=$(readlink -f "$bin")
  for _ in $(seq 1 600); do
    node=$(pgrep -P "$bench" -f "($bin_abs|$bin) run " | head -n 1 || true)
    [ -n "$node" ] && break
    kill -0 "$bench" 2>/dev/null || die "the bench ended early: $(tail -n 5 "$log")"
    sleep 0.05
  done
  [ -n "$node" ] || die "the appliance did not start (see $log)"
  echo "$node"
}

# Prints the thread ids of the appliance's core threads, space-separated:
# its `sw-core-*` threads pinned to a single CPU (its helper threads and
# its blocking pool, which inherit the name, may run anywhere).
#   core_threads NODE_PID
core_threads() {
  local node=$1 task tid name allowed cores=
  for task in /proc/"$node"/task/*; do
    tid=${task##*/}
    name=$(cat "$task/comm" 2>/dev/null || true)
    allowed=$(awk '/^Cpus_allowed_list/ {print $2}' "$task/status" 2>/dev/null || true)
    case $name in sw-core-*) ;; *) continue ;; esac
    case $allowed in *,*|*-*|'') continue ;; esac
    cores="${cores:+$cores }$tid"
  done
  [ -n "$cores" ] || die "no pinned sw-core thread in the appliance (pid $node)"
  echo "$cores"
}
