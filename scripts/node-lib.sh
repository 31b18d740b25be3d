# node-lib.sh — sourced by the scripts that start a node by hand and drive
# it with `shardwatch-load run` under `perf` (lock-waits.sh, blocked.sh).

# Their common knobs, with defaults: the builds, the node's cores, the
# paced rate and length of the load, and the rules both sides load.
BIN=${BIN:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
CORES=${CORES:-1}
RATE=${RATE:-388000}
SEND_S=${SEND_S:-15}
RULES=${RULES:-perf/rules/scenarios.yml}

# require_perf_and_builds: exits unless `perf` and both builds are there.
require_perf_and_builds() {
  local me b
  me=$(basename "$0" .sh)
  command -v perf >/dev/null || { echo "$me: perf missing (apt-get install linux-perf)" >&2; exit 1; }
  for b in "$BIN" "$LOAD"; do
    [ -x "$b" ] || { echo "$me: $b missing (cargo build --release -p shardwatch -p shardwatch-perf)" >&2; exit 1; }
  done
}

# start_node BIN OUT RULES [ARGS...]: starts `BIN run --cores $CORES` on
# loopback TCP (no UDP; the API on a free port), its data in OUT/data and
# its stderr in OUT/node.stderr, with ARGS as extra flags; sets `node`
# (its pid) and `addr` (its TCP address), or exits when it does not
# listen within 10 s.
start_node() {
  local bin=$1 out=$2 rules=$3
  shift 3
  "$bin" run --cores "$CORES" --udp "" --tcp 127.0.0.1:0 --api 127.0.0.1:0 --data-dir "$out/data" \
    --rules "$rules" --quiet "$@" >/dev/null 2>"$out/node.stderr" &
  node=$!
  addr=""
  for _ in $(seq 1 100); do
    addr=$(grep -o 'tcp=[0-9.:]*' "$out/node.stderr" 2>/dev/null | head -1 | cut -d= -f2)
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  kill "$node" 2>/dev/null
  echo "$(basename "$0"): node did not listen (see $out/node.stderr)" >&2
  exit 1
}

# core_threads PID: the thread ids of the node's cores, comma-separated. A
# core is its executor's thread: the first `sw-core-<i>-<n>` started (its
# blocking pool's threads carry the same name).
core_threads() {
  local pid=$1 name
  for name in $(cat /proc/"$pid"/task/*/comm | grep '^sw-core-' | sort -u); do
    grep -lx "$name" /proc/"$pid"/task/*/comm | sed 's,.*/task/,,; s,/comm,,' | sort -n | head -1
  done | paste -sd,
}
