#!/usr/bin/env bash
# lock-waits.sh — how often the appliance's core thread sleeps on a lock
# during a paced run, and which thread's call woke it each time.
#
# A core that finds a lock held by a thread on another CPU sleeps in
# `futex(FUTEX_WAIT_PRIVATE)` until that thread lets go; on a VM whose
# idle virtual CPUs halt at once the wake-up is slow. The lock is usually
# glibc's malloc arena lock: `free` of a chunk takes the arena of the
# thread that allocated it, so another thread freeing what the core
# allocated (alert lines, checkpoint chunks) takes the core's own lock.
# This script starts a node (`shardwatch run --cores CORES`, TCP, scenario
# rules), drives it with `shardwatch-load run` at RATE for SEND_S seconds,
# records every `futex` call of the node's threads with call stacks
# (`perf record -e syscalls:sys_enter_futex --call-graph dwarf -p NODE`)
# for RECORD_S seconds in the middle, and reports:
#   1. futex calls per thread, and the core threads' waits;
#   2. for each of a core's waits, the first wake of the same address by
#      another thread after it, grouped by that thread and its call stack
#      (the waker), beside where the core was (the waiter).
# The recording (stacks copied at each futex call) slows the run: read the
# harness's latency from a run without it (scripts/latency-half.sh).
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`; needs
# root and `perf`, Debian package `linux-perf`):
#   scripts/lock-waits.sh                      # results in target/lock-waits/
#   BIN=/tmp/old-shardwatch RATE=388000 scripts/lock-waits.sh
# Knobs (environment): BIN (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), CORES (1; with more, the harness
# sends over CORES connections), RATE (388000), SEND_S (15), RECORD_S
# (8), RULES (perf/rules/scenarios.yml), OUT (target/lock-waits).
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-lib.sh
. scripts/node-lib.sh

RECORD_S=${RECORD_S:-8}
OUT=${OUT:-target/lock-waits}
require_perf_and_builds
rm -rf "$OUT"
mkdir -p "$OUT/data"

start_node "$BIN" "$OUT" "$RULES"
"$LOAD" run --target "tcp://$addr" --connections "$CORES" --rate "$RATE" --duration "${SEND_S}s" --flush-us 150 \
  --alerts "$OUT/data/alerts.jsonl" --rules "$RULES" --out "$OUT/run" --quiet >/dev/null 2>&1 &
load=$!
sleep $(((SEND_S - RECORD_S) / 2))
cores=$(core_threads "$node")
perf record -q --call-graph dwarf,16384 -e syscalls:sys_enter_futex -p "$node" \
  -o "$OUT/perf.data" -- sleep "$RECORD_S" >/dev/null 2>&1
wait "$load"
kill -TERM "$node"
wait "$node"
perf script -i "$OUT/perf.data" >"$OUT/script.txt" 2>/dev/null
rm -rf "$OUT/data"

python3 - "$OUT/script.txt" "$cores" "$BIN" "$RATE" "$RECORD_S" <<'PY' | tee "$OUT/summary.txt"
import collections, re, sys
path, cores, binary, rate, secs = sys.argv[1:]
cores = cores.split(",")
WAIT, WAKE = 0x80, 0x81  # FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE
calls, waits, wakes = collections.Counter(), [], []
for event in open(path).read().split("\n\n"):
    lines = event.strip().split("\n")
    if not lines or "sys_enter_futex" not in lines[0]:
        continue
    head = lines[0].split()
    comm, tid = head[0], head[1]
    when = float(re.search(r" (\d+\.\d+):", lines[0]).group(1))
    m = re.search(r"uaddr: (0x[0-9a-f]+), op: (0x[0-9a-f]+)", lines[0])
    frames = [l.split()[1] for l in lines[1:] if len(l.split()) > 1]
    calls[f"{comm}/{tid}"] += 1
    record = (when, comm, tid, m.group(1), frames)
    op = int(m.group(2), 16)
    if op == WAIT:
        waits.append(record)
    elif op == WAKE:
        wakes.append(record)
# Frames of the allocator, the lock and the standard library say nothing
# about who the caller is.
NOISE = ("futex", "__GI", "_int", "__lll", "__libc", "__rustc", "alloc::", "<alloc",
         "core::ptr", "<std::alloc", "__rdl", "malloc", "free", "cfree", "tcache", "[unknown]")
def where(frames):
    useful = [f for f in frames if not f.startswith(NOISE)]
    return " < ".join(f[:70] for f in useful[:3]) or "(no frames)"
core_waits = [w for w in waits if w[2] in cores]
print(f"lock-waits: {binary} at {rate} lines/s, {secs} s recorded, core threads {', '.join(cores)}")
print("futex calls per thread: " + ", ".join(f"{t} {n}" for t, n in calls.most_common()))
print(f"core waits (FUTEX_WAIT_PRIVATE): {len(core_waits)}")
print("  (each: the first wake of its address by another thread after it)")
by_waker = collections.Counter()
for w in core_waits:
    later = [k for k in wakes if k[3] == w[3] and k[0] >= w[0] and k[2] != w[2]]
    if not later:
        by_waker["(no wake recorded)"] += 1
        continue
    k = min(later, key=lambda r: r[0])
    by_waker[f"woken by {k[1]}/{k[2]} in {where(k[4])}\n      core {w[2]} was in {where(w[4])}"] += 1
for what, n in by_waker.most_common(10):
    print(f"  {n:5}  {what}")
PY
