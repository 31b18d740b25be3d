#!/usr/bin/env bash
# state-growth.sh — is a node's correlation state bounded under a steady
# load? (#8)
#
# Starts a node by hand (`shardwatch run --cores 1`, TCP only, the
# scenario rules, journal and checkpoints as configured by default) and
# runs `shardwatch-load run --rate $RATE --duration ${SEND_S}s` against it
# (scenarios scored as usual). Every $EVERY_S seconds it reads the node's
# /metrics (correlation groups, estimated state bytes) and its resident
# memory (/proc/PID/status VmRSS), one line per sample. With the
# generator's default `--event-rate` (100 events per second of event
# time) event time runs far ahead of the wall clock at any real rate,
# which is how a sender hours off the node's clock looks to it.
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`):
#   scripts/state-growth.sh                      # results in target/state-growth/
#   BIN=/tmp/old-shardwatch SEND_S=240 scripts/state-growth.sh
# Knobs (environment): BIN (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), RATE (30000), EVENT_RATE (100), SEND_S
# (420), EVERY_S (30), RULES (perf/rules/scenarios.yml), TCP_PORT (15140),
# API_PORT (19600), OUT (target/state-growth; its data dir, journal and
# checkpoints included, is deleted first).
# Writes $OUT/samples.txt, the harness's report and summary in $OUT/load/,
# the node's stderr in $OUT/node.err.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
RATE=${RATE:-30000}
EVENT_RATE=${EVENT_RATE:-100}
SEND_S=${SEND_S:-420}
EVERY_S=${EVERY_S:-30}
RULES=${RULES:-perf/rules/scenarios.yml}
TCP_PORT=${TCP_PORT:-15140}
API_PORT=${API_PORT:-19600}
OUT=${OUT:-target/state-growth}

for tool in "$BIN" "$LOAD"; do
    [[ -x $tool ]] || { echo "state-growth: $tool is missing (cargo build --release)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "state-growth: needs curl" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/data"
"$BIN" run --cores 1 --quiet --data-dir "$OUT/data" --rules "$RULES" \
    --api "127.0.0.1:$API_PORT" --tcp "127.0.0.1:$TCP_PORT" --udp "" 2>"$OUT/node.err" &
node=$!
trap 'kill -TERM "$node" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "listening" "$OUT/node.err" && break
    kill -0 "$node" 2>/dev/null || { cat "$OUT/node.err" >&2; exit 1; }
    sleep 0.1
done

(
    "$LOAD" run --target "tcp://127.0.0.1:$TCP_PORT" --rate "$RATE" --duration "${SEND_S}s" \
        --event-rate "$EVENT_RATE" --alerts "$OUT/data/alerts.jsonl" --out "$OUT/load" --quiet \
        >"$OUT/load.out" 2>&1
    echo "load exit status $?" >>"$OUT/load.out"
) &
load=$!

t=0
while kill -0 "$load" 2>/dev/null; do
    metrics=$(curl -s "127.0.0.1:$API_PORT/metrics" || true)
    groups=$(awk '/^shardwatch_correlation_groups[{ ]/ {s += $NF} END {printf "%d", s}' <<<"$metrics")
    state=$(awk '/^shardwatch_state_memory_bytes[{ ]/ {s += $NF} END {printf "%.0f", s / 1048576}' <<<"$metrics")
    rss=$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$node/status")
    echo "t=${t}s groups=$groups state_MiB=$state rss_MiB=$rss" | tee -a "$OUT/samples.txt"
    sleep "$EVERY_S"
    t=$((t + EVERY_S))
done
wait "$load" || true
kill -TERM "$node"
wait "$node" || true
trap - EXIT
grep -hE "^(sent |alerts:)" "$OUT/load/summary.txt" 2>/dev/null || cat "$OUT/load.out"
tail -1 "$OUT/load.out"
