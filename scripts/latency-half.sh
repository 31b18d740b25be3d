#!/usr/bin/env bash
# latency-half.sh — detection latency at half the maximum rate (#8), with
# the harness kept off the node's CPUs.
#
#   1. the maximum: `shardwatch-load bench --cores $CORES --transport tcp
#      --rate max --events $MAX_EVENTS` (scenario rules loaded, journal and
#      checkpoints on); `appliance.received_eps` of its report. Skipped when
#      RATE is given.
#   2. a node started by hand (`shardwatch run --cores $CORES`, TCP only,
#      scenario rules, journal and checkpoints as configured by default; it
#      pins core i to CPU i) and `shardwatch-load run --rate RATE` (half the
#      maximum) for $SEND_S seconds under `taskset` on the CPUs the node
#      leaves free (none on a 2-CPU machine with CORES=2: then they share),
#      alerts read from the node's alerts.jsonl.
#   Each of REPS rounds runs every binary in BINS once, in turn, so drift
#   hits them alike; the summary lists each run's latency percentiles,
#   each leg's p99, how many of the slowest 1% each leg dominated, and the
#   node's stall probe (how late its cores' 10 ms probe fired, from its exit
#   stats).
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`):
#   scripts/latency-half.sh                                # results in target/latency-half/
#   BINS="/tmp/old-shardwatch target/release/shardwatch" REPS=3 scripts/latency-half.sh
# Knobs (environment): BINS (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), CORES (1), RATE (measured), MAX_EVENTS
# (10000000), SEND_S (15), REPS (1), OUT (target/latency-half), NODE_ARGS
# (extra `shardwatch run` flags, e.g. "--checkpoint-ms 0"), PRIOS (0; e.g.
# "0 2" runs each build at both), PRIO_COMM (a regular expression over the
# node's thread names that PRIOS applies to; all by default), KEEP_DATA (0:
# each node's data dir, journal and checkpoints, several GB per run, is
# deleted once its run is scored; 1 keeps it), FLUSH_US (0: the harness
# writes each line as it falls due, on loopback nearly a write per line;
# e.g. 100: at most one write per 100 µs, the latency still counted from
# each line's intended time; `run --flush-us`), RULES (perf/rules/scenarios.yml,
# the node's `--rules` and the harness's; `none`: the built-in pack alone,
# whose scenarios the harness then scores and whose other scenarios it
# lists as not loaded), STEER (0; 1: the maximum's bench and every run
# with `--steer-loopback`, loopback's receive work on the harness's CPUs).
# Writes $OUT/summary.txt and per run $OUT/<round>-<n>/ (the harness's
# report.json and summary.txt, the node's stderr).
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=${BINS:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
CORES=${CORES:-1}
# 10 M lines: a run long enough (15-25 s here) to hold a checkpoint and
# more than 1 GB of journal, as a paced run of minutes does; a 3 M-line
# maximum (a few seconds) holds neither: with the scenario rules it was
# 738-780 k lines/s against 496-657 k over 10 M on the dev VM
# (BENCHMARKS.md, "the maximum over a long run"). The harness holds the
# corpus in memory: about 6 GB for 10 M lines.
MAX_EVENTS=${MAX_EVENTS:-10000000}
SEND_S=${SEND_S:-15}
FLUSH_US=${FLUSH_US:-0}
REPS=${REPS:-1}
OUT=${OUT:-target/latency-half}
NODE_ARGS=${NODE_ARGS:-}
# Real-time priorities to run the node's threads at, in turn (0: the
# default scheduler; N: SCHED_FIFO priority N for every thread of the
# node whose name matches PRIO_COMM, set with chrt once it listens).
PRIOS=${PRIOS:-0}
KEEP_DATA=${KEEP_DATA:-0}
RULES=${RULES:-perf/rules/scenarios.yml}
node_rules=()
[ "$RULES" = none ] || node_rules=(--rules "$RULES")
steer=()
[ "${STEER:-0}" = 1 ] && steer=(--steer-loopback)

for b in $BINS "$LOAD"; do
  [ -x "$b" ] || { echo "latency-half: $b missing (cargo build --release -p shardwatch -p shardwatch-perf)" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }

online=$(nproc)
free=""
if [ "$online" -gt "$CORES" ]; then
  free=$(seq -s, "$CORES" $((online - 1)))
fi
pin() { if [ -n "$free" ]; then taskset -c "$free" "$@"; else "$@"; fi; }

say "latency-half: $(date -u +%FT%TZ) $(uname -n), $online CPUs, node --cores $CORES, harness on CPUs ${free:-(shared)}, rules $RULES"
first_bin=${BINS%% *}
if [ -z "${RATE:-}" ]; then
  # bench keeps its own threads off the node's CPUs.
  "$LOAD" bench --binary "$first_bin" --cores "$CORES" --transport tcp --rate max \
    --events "$MAX_EVENTS" --rules "$RULES" "${steer[@]}" --out "$OUT/max" --quiet >/dev/null
  max=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['appliance']['received_eps']))" "$OUT/max/report.json")
  RATE=$((max / 2))
  say "maximum (bench --rate max, $first_bin): $max events/s; half: $RATE"
fi

run_one() {
  local bin=$1 dir=$2 prio=$3
  mkdir -p "$dir/data"
  "$bin" run --cores "$CORES" --udp "" --tcp 127.0.0.1:0 --api 127.0.0.1:0 \
    --data-dir "$dir/data" "${node_rules[@]}" --quiet $NODE_ARGS 2>"$dir/node.stderr" &
  local node=$!
  local addr=""
  for _ in $(seq 1 100); do
    addr=$(grep -o 'tcp=[0-9.:]*' "$dir/node.stderr" 2>/dev/null | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    kill "$node" 2>/dev/null || true
    echo "latency-half: node did not listen (see $dir/node.stderr)" >&2
    return 1
  fi
  if [ "$prio" -gt 0 ]; then
    for task in /proc/"$node"/task/*; do
      if grep -qE "${PRIO_COMM:-.}" "$task/comm"; then chrt -f -p "$prio" "${task##*/}" >/dev/null; fi
    done
  fi
  pin "$LOAD" run --target "tcp://$addr" --rate "$RATE" --duration "${SEND_S}s" --flush-us "$FLUSH_US" \
    --alerts "$dir/data/alerts.jsonl" --rules "$RULES" "${steer[@]}" --out "$dir/run" --quiet >/dev/null || true
  kill -TERM "$node"
  wait "$node" || true
  local line
  line=$(python3 - "$dir/run/report.json" "$dir/node.stderr" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
# The node's exit stats: its cores' stall probe (how late a 10 ms timer
# fired), the worst core's.
stalls = ""
for raw in open(sys.argv[2], errors="replace"):
    if raw.startswith("shardwatch: stats "):
        try:
            cores = json.loads(raw[len("shardwatch: stats "):])
            p99 = max(c["stall_p99_us"] for c in cores)
            top = max(c["stall_max_us"] for c in cores)
            stalls = f"node stalls p99 {p99 / 1000:.2f} max {top / 1000:.2f} ms; "
        except (ValueError, KeyError, TypeError):
            pass
d = doc.get("detection", {})
def ms(src, key):
    v = (src or {}).get(key)
    return "-" if v is None else f"{v / 1000:.2f}"
h, a = d.get("latency"), d.get("appliance_latency")
legs = d.get("latency_split", {})
# How many of the slowest 1% had each leg as their largest.
t = legs.get("slowest_percent_largest_leg") or {}
tail = (f"slowest 1% by largest leg {t['harness']} / {t['way_in']} / {t['appliance']} / "
        f"{t['way_out']} of {t['detections']}; ") if t.get("detections") else ""
# How long the sending thread waited for a CPU over the send.
sched = doc.get("send", {}).get("sender_sched") or {}
waited = f"sender waited {sched['waited_ns'] / 1e6:.1f} ms for a CPU; " if sched else ""
print(f"harness p50 {ms(h, 'p50_us')} p90 {ms(h, 'p90_us')} p99 {ms(h, 'p99_us')} max {ms(h, 'max_us')} ms; "
      f"node p50 {ms(a, 'p50_us')} p99 {ms(a, 'p99_us')} max {ms(a, 'max_us')} ms; "
      f"legs p99 (harness / way in / node / way out) "
      f"{ms(legs.get('intended_to_written'), 'p99_us')} / {ms(legs.get('written_to_received'), 'p99_us')} / "
      f"{ms(legs.get('received_to_detected'), 'p99_us')} / {ms(legs.get('detected_to_observed'), 'p99_us')} ms; "
      f"{tail}"
      f"{stalls}"
      f"precision {d.get('precision')} recall {d.get('recall')}; "
      f"{waited}"
      + ", ".join(f"CPU {c['cpu']} busy {100 * c['busy']:.0f}% steal {100 * c['steal']:.1f}%"
                  for c in doc.get("machine_cpus", [])))
EOF
)
  say "  $bin (prio $prio): $line"
  if [ "$KEEP_DATA" != 1 ]; then rm -rf "$dir/data"; fi
}

for round in $(seq 1 "$REPS"); do
  say "round $round, $RATE events/s for ${SEND_S}s$( [ "$FLUSH_US" != 0 ] && echo ", harness writes at most every ${FLUSH_US} us"):"
  n=0
  for bin in $BINS; do
    for prio in $PRIOS; do
      n=$((n + 1))
      run_one "$bin" "$OUT/$round-$n" "$prio"
    done
  done
done
