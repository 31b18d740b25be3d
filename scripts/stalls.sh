#!/usr/bin/env bash
# stalls.sh — what holds the appliance's core thread and the harness's
# sender off their CPUs during a paced run, from the kernel's scheduler
# events.
#
# The harness's `legs:` line says in which leg a latency tail lies (the
# harness late on its schedule, the way in before the core read the line,
# the appliance, the way out). When the harness or the way in has the tail,
# the usual cause is that the sender or the core was ready to run and
# something else had its CPU: another thread, a kernel worker, or nothing
# visible at all (the CPU idle: a virtual CPU the hypervisor did not run).
# This script runs `shardwatch-load bench` at a paced rate, records the
# scheduler with `perf sched record -a` for RECORD_S seconds in the middle
# of it, and reports from `perf sched timehist`:
#   1. every wait of MIN_US or more between a victim (the core thread, the
#      sender) becoming ready and running, with what ran on that CPU
#      meanwhile (the TOP longest, and totals per culprit);
#   2. per task and CPU, its slices, CPU time and longest slice over the
#      recording, so periodic interlopers (kernel threads, the node's own
#      helper threads) show even when they delayed nobody.
# `perf` itself (and this script's `sleep`) run during the recording and
# appear among the culprits: read them as the measurement's own cost.
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`; needs
# root and `perf`, Debian package `linux-perf`):
#   scripts/stalls.sh                                   # results in target/stalls/
#   RATE=200000 TRANSPORT=udp scripts/stalls.sh
# Knobs (environment): BIN (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), RATE (100000), TRANSPORT (tcp), RULES
# (perf/rules/scenarios.yml), SEND_S (15), RECORD_S (4), MIN_US (200), TOP
# (15), OUT (target/stalls), CORES (1: the node's cores, `bench --cores`;
# with as many cores as CPUs the harness shares them, and so do the
# node's helper threads, the appliance's default), CONFIG (an appliance
# config, `bench --appliance-config`), FLUSH_US (0; N: the sender writes at
# most once per N µs, `bench --flush-us`). Core i is pinned to the
# i-th CPU; the harness runs on the CPUs left, as `bench` places it.
# Writes $OUT/stalls.txt (the report), $OUT/sched.data (open it with `perf
# sched timehist -i`), $OUT/run/ (the bench's report, with its `legs:`).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
RATE=${RATE:-100000}
TRANSPORT=${TRANSPORT:-tcp}
RULES=${RULES:-perf/rules/scenarios.yml}
SEND_S=${SEND_S:-15}
RECORD_S=${RECORD_S:-4}
MIN_US=${MIN_US:-200}
TOP=${TOP:-15}
OUT=${OUT:-target/stalls}
CORES=${CORES:-1}
CONFIG=${CONFIG:-}
FLUSH_US=${FLUSH_US:-0}

die() { echo "stalls: $*" >&2; exit 1; }
. scripts/bench-node.sh
need_perf_and "$BIN" "$LOAD"
[ "$RECORD_S" -lt "$SEND_S" ] || die "RECORD_S ($RECORD_S) must be shorter than SEND_S ($SEND_S)"
mkdir -p "$OUT"
rm -rf "$OUT/run" "$OUT/sched.data"

"$LOAD" bench --binary "$BIN" --cores "$CORES" --transport "$TRANSPORT" --rate "$RATE" \
  --duration "${SEND_S}s" --flush-us "$FLUSH_US" --rules "$RULES" ${CONFIG:+--appliance-config "$CONFIG"} \
  --out "$OUT/run" --quiet >"$OUT/bench.log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT

node=$(bench_node "$bench" "$BIN" "$OUT/bench.log")
# Sending starts once the node listens (a second or two); record in the
# middle of the send.
sleep $(( (SEND_S - RECORD_S) / 2 + 2 ))
cores=" $(core_threads "$node")"
# The sender is the bench's main thread.
victims="$cores $bench"
perf sched record -a -o "$OUT/sched.data" -- sleep "$RECORD_S" >"$OUT/perf.log" 2>&1 \
  || die "perf sched record failed: $(tail -n 3 "$OUT/perf.log")"
wait "$bench" || die "the bench failed: $(tail -n 5 "$OUT/bench.log")"
trap - EXIT

{
  echo "stalls: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname), $(nproc) CPUs; bench --cores $CORES --transport $TRANSPORT --rate $RATE for ${SEND_S}s, scheduler recorded for ${RECORD_S}s in the middle"
  echo "victims: the core threads (tid$cores), the sender (tid $bench); waits of at least $MIN_US us"
  grep -E "^  legs:|^machine while" "$OUT/run/summary.txt" || true
  perf sched timehist -i "$OUT/sched.data" 2>/dev/null | awk -v victims="$victims" -v core_tids="$cores" \
    -v min_us="$MIN_US" -v top="$TOP" -v record_s="$RECORD_S" '
    function tid_of(task,   inner, parts) {
      # name[tid/pid] or name[pid]
      inner = task; sub(/.*\[/, "", inner); sub(/\].*/, "", inner)
      split(inner, parts, "/"); return parts[1]
    }
    function name_of(task,   n) { n = task; sub(/\[[^]]*\]$/, "", n); return n }
    BEGIN {
      n = split(victims, v, " "); for (i = 1; i <= n; i++) victim[v[i]] = 1
      n = split(core_tids, c, " "); for (i = 1; i <= n; i++) is_core[c[i]] = 1
      RING = 64
    }
    # Rows: time cpu task wait delay run (times in ms, the row at switch-out).
    NR > 3 && NF >= 6 && $1 ~ /^[0-9.]+$/ {
      end = $1 * 1000; cpu = $2; task = $3; delay = $5; run = $6
      tid = tid_of(task); name = name_of(task)
      if (name == "<idle>") name = "<idle> (CPU idle: nothing to run, or the hypervisor not running it)"
      # The blocking-pool threads of the executor (checkpoint writes, journal
      # syncs) inherit the name of the core thread.
      else if (name ~ /^sw-core-/ && !(tid in is_core)) name = name " (its blocking pool)"
      key = name " " cpu
      slices[key]++; total[key] += run; if (run > longest[key]) longest[key] = run
      if ((tid in victim) && delay * 1000 >= min_us) {
        role = (tid in is_core) ? "core thread" : "sender"
        ready = end - run - delay; started = end - run
        waits++; wait_role[role]++; wait_sum[role] += delay
        if (delay > wait_max[role]) wait_max[role] = delay
        what = ""
        for (k = 0; k < RING; k++) {
          r = (head[cpu] - k + RING) % RING
          if (!((cpu, r) in ring_end)) continue
          e = ring_end[cpu, r]; s = e - ring_run[cpu, r]
          if (e <= ready) break
          o = (e < started ? e : started) - (s > ready ? s : ready)
          if (o <= 0) continue
          culprit[role SUBSEP ring_name[cpu, r]] += o
          what = what sprintf("%s %.2f ms; ", ring_name[cpu, r], o)
        }
        line[waits] = sprintf("%8.3f ms  %-11s %s at %.3f s: %s", delay, role, cpu, ready / 1000, what)
        len[waits] = delay
      }
      head[cpu] = (head[cpu] + 1) % RING
      ring_end[cpu, head[cpu]] = end; ring_run[cpu, head[cpu]] = run; ring_name[cpu, head[cpu]] = name
    }
    END {
      printf "\nwaits of %d us or more (ready to run, not running):\n", min_us
      if (waits == 0) print "  none"
      for (role in wait_role)
        printf "  %-11s %d waits, %.2f ms in all, longest %.3f ms\n", role, wait_role[role], wait_sum[role], wait_max[role]
      printf "\nwhat ran meanwhile, ms over the recording:\n"
      for (k in culprit) { split(k, p, SUBSEP); printf "  %-11s %9.2f  %s\n", p[1], culprit[k], p[2] | "sort -k2 -nr"; }
      close("sort -k2 -nr")
      printf "\nthe %d longest waits:\n", top
      for (i = 1; i <= waits; i++) order[i] = i
      for (i = 1; i <= waits; i++)
        for (j = i + 1; j <= waits; j++)
          if (len[order[j]] > len[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
      for (i = 1; i <= waits && i <= top; i++) print "  " line[order[i]]
      printf "\ntasks by CPU time (slices, ms, share of %s s, longest slice ms):\n", record_s
      for (k in slices)
        if (k !~ /^<idle>/)
          printf "  %-40s %7d %9.2f %6.2f%% %8.3f\n", k, slices[k], total[k], total[k] / (record_s * 10), longest[k] | "sort -k3 -nr | head -n 30"
      close("sort -k3 -nr | head -n 30")
    }'
} >"$OUT/stalls.txt"
cat "$OUT/stalls.txt"
