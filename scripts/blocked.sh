#!/usr/bin/env bash
# blocked.sh — where the appliance's threads sleep in the kernel without
# being able to run (uninterruptible sleep, state D: a disk wait, a
# filesystem lock, a page under I/O) during a paced run, with the kernel
# stack of each sleep, and how long each lasted.
#
# A core thread in state D cannot read its sockets: every line that
# arrives meanwhile waits, and the stall probe
# (`shardwatch_core_stall_seconds`) shows the lateness without its cause.
# A helper thread in state D (a sync on the blocking pool, the alert
# writer) delays what waits for it. This script starts a node
# (`shardwatch run --cores CORES`, TCP, scenario rules), drives it with
# `shardwatch-load run` at RATE for SEND_S seconds, and records for
# RECORD_S seconds in the middle, system-wide:
#   - every switch away from a task in state D, with its kernel stack
#     (`perf record -g -e sched:sched_switch --filter 'prev_state == 2'`),
#   - every wake-up (`sched:sched_wakeup`), which ends a sleep.
# It reports, for the node's threads (grouped by thread name; a core's
# blocking pool threads carry the core's name, so its executor thread is
# told apart by its thread id), the number of D sleeps, their total and
# longest, by kernel stack, and the node's exit stats (the stall probe's
# p99 and maximum).
# Found with it on the dev VM (BENCHMARKS.md, 2026-12-07 14:45 UTC): the
# core's `pwrite` waiting on ext4's `i_data_sem` behind a sync's block
# allocation, and the alert writer's barrier `fdatasync` (up to 470 ms).
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`; needs
# root and `perf`, Debian package `linux-perf`):
#   scripts/blocked.sh                         # results in target/blocked/
#   BIN=/tmp/old-shardwatch RATE=388000 scripts/blocked.sh
# Knobs (environment): BIN (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), CORES (1), RATE (388000), SEND_S (15),
# RECORD_S (10), RULES (perf/rules/scenarios.yml), NODE_ARGS (extra
# `shardwatch run` flags), OUT (target/blocked).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-lib.sh
. scripts/node-lib.sh

RECORD_S=${RECORD_S:-10}
NODE_ARGS=${NODE_ARGS:-}
OUT=${OUT:-target/blocked}
require_perf_and_builds
rm -rf "$OUT"
mkdir -p "$OUT/data"

# shellcheck disable=SC2086
start_node "$BIN" "$OUT" "$RULES" $NODE_ARGS
"$LOAD" run --target "tcp://$addr" --connections "$CORES" --rate "$RATE" --duration "${SEND_S}s" --flush-us 150 \
  --alerts "$OUT/data/alerts.jsonl" --rules "$RULES" --out "$OUT/run" --quiet >/dev/null 2>&1 &
load=$!
# The harness builds its corpus before it sends: wait until the node's
# CPU time climbs, then for the middle of the send.
ticks() { awk '{print $14 + $15}' /proc/"$node"/stat 2>/dev/null || echo 0; }
start=$(ticks)
for _ in $(seq 1 600); do
  [ "$(($(ticks) - start))" -gt 20 ] && break
  sleep 0.1
done
sleep $(((SEND_S - RECORD_S) / 2))
cores=$(core_threads "$node")
tids=$(ls /proc/"$node"/task | paste -sd,)
perf record -q -a -g -o "$OUT/perf.data" \
  -e sched:sched_switch --filter 'prev_state == 2' \
  -e sched:sched_wakeup/call-graph=no/ -- sleep "$RECORD_S" >/dev/null 2>&1
wait "$load"
kill -TERM "$node"
wait "$node"
perf script -i "$OUT/perf.data" -F comm,tid,time,event,trace,ip,sym >"$OUT/script.txt" 2>/dev/null
rm -rf "$OUT/data" "$OUT/perf.data"

python3 - "$OUT/script.txt" "$cores" "$tids" "$OUT/node.stderr" "$BIN" "$RATE" "$RECORD_S" <<'PY' | tee "$OUT/summary.txt"
import collections, json, re, sys
path, cores, tids, stderr, binary, rate, secs = sys.argv[1:]
cores, tids = set(cores.split(",")), set(tids.split(","))
head = re.compile(r"^\s*(.*?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")
events, current = [], None
for line in open(path, errors="replace"):
    if not line.strip():
        continue
    m = head.match(line)
    if m:
        current = [float(m.group(3)), m.group(4), m.group(5), []]
        events.append(current)
    elif current is not None:
        current[3].append(line.split()[-1])
# A sleep: a switch away in state D, ended by the task's next wake-up.
asleep, sleeps = {}, []
for when, event, trace, stack in events:
    if event == "sched:sched_switch":
        m = re.search(r"prev_comm=(.*?) prev_pid=(\d+)", trace)
        if m and m.group(2) in tids:
            asleep[m.group(2)] = (when, m.group(1), stack)
    elif event == "sched:sched_wakeup":
        m = re.search(r" pid=(\d+)", trace)
        if m and m.group(1) in asleep:
            began, comm, stack = asleep.pop(m.group(1))
            who = f"{comm} (the core)" if m.group(1) in cores else comm
            skip = {"__schedule", "schedule", "io_schedule", "schedule_timeout",
                    "schedule_preempt_disabled", "io_schedule_timeout"}
            frames = [f for f in stack if f not in skip][:7]
            sleeps.append((who, when - began, " < ".join(frames)))
print(f"blocked: {binary} at {rate} lines/s, {secs} s recorded; uninterruptible sleeps of the node's threads")
by_thread = collections.defaultdict(list)
for who, took, where in sleeps:
    by_thread[who].append((took, where))
if not by_thread:
    print("  none")
for who, items in sorted(by_thread.items(), key=lambda kv: -sum(t for t, _ in kv[1])):
    total = sum(t for t, _ in items)
    print(f"{who}: {len(items)} sleeps, {total * 1e3:.1f} ms in all, longest {max(t for t, _ in items) * 1e3:.2f} ms")
    by_where = collections.defaultdict(list)
    for took, where in items:
        by_where[where].append(took)
    for where, times in sorted(by_where.items(), key=lambda kv: -max(kv[1]))[:6]:
        print(f"  {len(times):5d} x, longest {max(times) * 1e3:8.2f} ms, {sum(times) * 1e3:8.1f} ms in all: {where}")
for raw in open(stderr, errors="replace"):
    if raw.startswith("shardwatch: stats "):
        try:
            for core in json.loads(raw[len("shardwatch: stats "):]):
                print(f"core {core.get('core')}: stall probe p99 {core.get('stall_p99_us', 0) / 1e3:.2f} ms, "
                      f"max {core.get('stall_max_us', 0) / 1e3:.2f} ms (the whole run)")
        except ValueError:
            pass
PY
