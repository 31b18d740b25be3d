#!/usr/bin/env bash
# profile.sh — where the appliance's core threads spend their CPU under a
# `shardwatch-load bench` load, from `perf record` on those threads.
#
# Counts of instructions (scripts/instructions-per-line.sh) leave out the
# kernel, the journal and the I/O path; this samples the running node, all
# of it: parse, rules, the socket reads, the journal's page-cache copy,
# glommio's reactor. It runs a bench, waits until the node's CPU time is
# climbing (the load has started), records its pinned core threads with
# `perf record` for RECORD_S seconds, and reports the share of samples in
# the kernel and the TOP functions by their own samples (no children).
# Sampling is by the CPU clock (`cpu-clock`; VMs often give no hardware
# counters), so a function that runs with interrupts off is charged to
# whatever re-enables them (`_raw_spin_unlock_irq*`).
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`; needs
# root and `perf`, Debian package `linux-perf`):
#   scripts/profile.sh                                  # flat out over TCP, results in target/profile/
#   RATE=50000 RULES=perf/rules/scenarios.yml scripts/profile.sh
#   CONFIG=/tmp/nojournal.toml BIN=target/pgo/release/shardwatch scripts/profile.sh
# Knobs (environment): BIN (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), RATE (max, or lines per second),
# TRANSPORT (tcp), RULES (none: the built-in pack alone), EVENTS (6000000,
# flat out), SEND_S (15, paced), RECORD_S (2; with DELAY_S at most SEND_S - 4 when
# paced), TOP (30), CALLGRAPH (fp, or dwarf for call stacks through code
# built without frame pointers: larger and slower), CONFIG (an appliance
# config, `bench --appliance-config`), DELAY_S (0: seconds from the start
# of the load to the start of recording, to see a long run's later part,
# its state grown and its checkpoints running), FLUSH_US (0: a paced
# sender writes each line as it falls due; N: at most one write per N µs,
# `bench --flush-us`), STEER (0; 1: `bench --steer-loopback`, loopback's
# receive work on the harness's CPU), OUT (target/profile).
# Writes $OUT/profile.txt (the report), $OUT/perf.data (open it with
# `perf report -i`), $OUT/run/ (the bench's report).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
RATE=${RATE:-max}
TRANSPORT=${TRANSPORT:-tcp}
RULES=${RULES:-none}
EVENTS=${EVENTS:-6000000}
SEND_S=${SEND_S:-15}
RECORD_S=${RECORD_S:-2}
TOP=${TOP:-30}
CALLGRAPH=${CALLGRAPH:-fp}
CONFIG=${CONFIG:-}
DELAY_S=${DELAY_S:-0}
FLUSH_US=${FLUSH_US:-0}
OUT=${OUT:-target/profile}

die() { echo "profile: $*" >&2; exit 1; }
. scripts/bench-node.sh
need_perf_and "$BIN" "$LOAD"
case $CALLGRAPH in
  fp) graph=(-g) ;;
  dwarf) graph=(--call-graph dwarf,16384) ;;
  *) die "CALLGRAPH must be fp or dwarf" ;;
esac
load_args=(--rate "$RATE")
if [ "$RATE" = max ]; then
  load_args+=(--events "$EVENTS")
else
  [ $((RECORD_S + DELAY_S)) -le $((SEND_S - 4)) ] || die "RECORD_S + DELAY_S ($((RECORD_S + DELAY_S))) must be at most SEND_S - 4 ($((SEND_S - 4))) when paced"
  load_args+=(--duration "${SEND_S}s" --flush-us "$FLUSH_US")
fi
[ -n "$CONFIG" ] && load_args+=(--appliance-config "$CONFIG")
[ "${STEER:-0}" = 1 ] && load_args+=(--steer-loopback)
mkdir -p "$OUT"
rm -rf "$OUT/run" "$OUT/perf.data"

"$LOAD" bench --binary "$BIN" --cores 1 --transport "$TRANSPORT" "${load_args[@]}" \
  --rules "$RULES" --out "$OUT/run" --quiet >"$OUT/bench.log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT

node=$(bench_node "$bench" "$BIN" "$OUT/bench.log")
# The load has started when the node's CPU time climbs: at least 5 clock
# ticks (50 ms at the usual 100 Hz) in 100 ms. The bench generates its
# corpus after starting the node, so this takes seconds for a large one.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$node/stat" 2>/dev/null; }
prev=$(cpu_ticks) || die "the appliance ended before its load started"
for _ in $(seq 1 600); do
  sleep 0.1
  now=$(cpu_ticks) || die "the appliance ended before its load started"
  [ $((now - prev)) -ge 5 ] && break
  prev=$now
done
[ "$RATE" = max ] || sleep 1
[ "$DELAY_S" = 0 ] || sleep "$DELAY_S"
cores=$(core_threads "$node")
cores=${cores// /,}
perf record -F 2999 "${graph[@]}" -t "$cores" -o "$OUT/perf.data" -- sleep "$RECORD_S" \
  >"$OUT/perf.log" 2>&1 || die "perf record failed: $(tail -n 3 "$OUT/perf.log")"
wait "$bench" || die "the bench failed: $(tail -n 5 "$OUT/bench.log")"
trap - EXIT

report() { perf report -i "$OUT/perf.data" --no-children -q -g none "$@" 2>/dev/null; }
# `head` closes the pipes early.
set +o pipefail
{
  echo "profile: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname), $(nproc) CPUs; $BIN; bench --cores 1 --transport $TRANSPORT ${load_args[*]} --rules $RULES; core threads (tid $cores) sampled at 2999 Hz for ${RECORD_S}s from ${DELAY_S}s into the load"
  grep -E "^appliance \(|^appliance CPU|^appliance I/O|^machine" "$OUT/run/summary.txt" || true
  report --sort sym -F sample,sym | awk '
    { n = $1; total += n; if ($2 == "[k]") kernel += n }
    END {
      if (total == 0) { print "no samples"; exit }
      printf "samples: %d, in the kernel %.1f%%, in user space %.1f%%\n", total, 100 * kernel / total, 100 * (total - kernel) / total
    }'
  echo "by object:"
  report --sort dso | head -n 8
  echo "top $TOP functions by their own samples:"
  report --sort dso,sym | head -n "$TOP"
} >"$OUT/profile.txt"
cat "$OUT/profile.txt"
