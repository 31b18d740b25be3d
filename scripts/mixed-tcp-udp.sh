#!/usr/bin/env bash
# mixed-tcp-udp.sh — a paced UDP stream beside a TCP flood, on one node
# whose core-to-core channels hold one batch, so TCP flushes often wait for
# room in a peer's channel. Prints what the node counted: lines received
# by transport and core, batches it dropped for a full channel
# (`route_queue_full`) and datagrams the kernel dropped before a core read
# them (`udp_kernel_drops_total`). A UDP loop that waits behind a blocked
# TCP flush shows as kernel drops; one that drops the batches it cannot
# send shows as route_queue_full only.
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`):
#   scripts/mixed-tcp-udp.sh [BINARY] [NAME]
# Uses 127.0.0.1 ports 17514 (TCP), 17515 (UDP) and 17580 (API); writes
# under /tmp/mixed-NAME. TCP: 3 M lines flat out over 8 connections; UDP:
# 100 k datagrams/s for 6 s, starting 1 s after the TCP flood.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/shardwatch}
NAME=${2:-$(basename "$BIN")}
LOAD=target/release/shardwatch-load
DIR=/tmp/mixed-$NAME
rm -rf "$DIR"
mkdir -p "$DIR"
printf '[engine]\nroute_queue_batches = 1\n' > "$DIR/config.toml"
"$BIN" run --cores 2 --quiet --config "$DIR/config.toml" --data-dir "$DIR/data" \
    --tcp 127.0.0.1:17514 --udp 127.0.0.1:17515 --api 127.0.0.1:17580 \
    > "$DIR/node.out" 2> "$DIR/node.err" &
NODE=$!
trap 'kill -TERM $NODE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf 127.0.0.1:17580/health > /dev/null && break
    sleep 0.1
done
"$LOAD" run --target tcp://127.0.0.1:17514 --rate max --events 3000000 --connections 8 \
    --alerts "$DIR/data/alerts.jsonl" --out "$DIR/tcp" --quiet > "$DIR/tcp.log" 2>&1 &
TCP=$!
sleep 1
"$LOAD" run --target udp://127.0.0.1:17515 --rate 100000 --duration 6 \
    --alerts "$DIR/data/alerts.jsonl" --out "$DIR/udp" --quiet > "$DIR/udp.log" 2>&1
wait $TCP
sleep 1
curl -s 127.0.0.1:17580/metrics > "$DIR/metrics.txt"
kill -TERM $NODE
wait $NODE || true
trap - EXIT
echo "== $NAME ($BIN)"
grep -E '^shardwatch_(events_received_total|udp_kernel_drops_total|events_dropped_total)' \
    "$DIR/metrics.txt" | grep -v ' 0$' || true
