#!/usr/bin/env bash
# instructions-per-line.sh — instructions per line of the pipeline (parse,
# decode, aliases, rules, correlation state, alert rendering), counted by
# valgrind's callgrind over `shardwatch replay` of a generated corpus.
#
# A count of executed instructions does not move with the machine's noise
# (repeated runs of one binary agree to about 1 in 10^5), so it can tell two
# builds apart where timings on a shared 2-core VM cannot (±10–30% there).
# It is not time: cache misses, branch mispredictions and the I/O path
# (sockets, framing, the journal, io_uring) are not in it. Use it to decide
# hot-path changes; measure end to end with `shardwatch-load bench`.
#
# Only the `replay` function is counted (`--toggle-collect`), so rule
# compilation and start-up are not, and within it not
# `ShardStates::advance` (the windows' expiry walk over every shard with
# state): replay runs it once per second of *event* time, ~100 lines apart
# in a default corpus, where the node runs it once per wall-clock second,
# hundreds of thousands of lines apart. The cost of the first line (which
# also builds the pipeline's tables) is taken out by a one-line run:
#   per line = (Ir(EVENTS lines) - Ir(1 line)) / (EVENTS - 1)
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`):
#   scripts/instructions-per-line.sh
#   BINS="/tmp/old-shardwatch target/release/shardwatch" scripts/instructions-per-line.sh
#   RULES=perf/rules/scenarios.yml scripts/instructions-per-line.sh   # built-in pack + these
#   BY_FORMAT=1 scripts/instructions-per-line.sh   # also per message kind
#   SCHEMAS=1 scripts/instructions-per-line.sh     # with the schema registry, as a node keeps it
# Knobs (environment): BINS (target/release/shardwatch), LOAD
# (target/release/shardwatch-load), EVENTS (100000), RULES (an extra rule
# file), OUT (target/instructions-per-line), HISTORICAL (1: replay with the
# default config, which flags every line of the corpus, days old, as
# skewed in time; counts before 2026-12-05 05:00 UTC were so), BY_FORMAT (1: also count
# each message kind of the corpus on its own: its lines, picked by the
# patterns in `kinds` below, replayed alone), SCHEMAS (1: count
# `shardwatch schemas FILE` instead, the same `replay` with the schema
# registry a node keeps by default (`replay` keeps none); its final
# snapshot and drop are not counted, the first sight of each of the
# corpus's sources is, spread over its lines). Needs valgrind (Debian
# package `valgrind`). Writes $OUT/summary.txt and, per binary,
# $OUT/<n>.callgrind (open with `callgrind_annotate`).
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=${BINS:-target/release/shardwatch}
LOAD=${LOAD:-target/release/shardwatch-load}
EVENTS=${EVENTS:-100000}
OUT=${OUT:-target/instructions-per-line}
RULES=${RULES:-}

command -v valgrind >/dev/null || { echo "instructions-per-line: valgrind missing (apt-get install valgrind)" >&2; exit 1; }
for b in $BINS "$LOAD"; do
  [ -x "$b" ] || { echo "instructions-per-line: $b missing (cargo build --release -p shardwatch -p shardwatch-perf)" >&2; exit 1; }
done
[ "$EVENTS" -ge 2 ] || { echo "instructions-per-line: EVENTS must be at least 2" >&2; exit 1; }
mkdir -p "$OUT"
corpus=$OUT/corpus-$EVENTS.log
[ -s "$corpus" ] || "$LOAD" gen --out "$corpus" --events "$EVENTS" >/dev/null
head -n 1 "$corpus" >"$OUT/corpus-1.log"
rule_args=()
command=replay
toggles=()
config=""
if [ "${SCHEMAS:-0}" = 1 ]; then
  # `schemas` takes its rules from the config only.
  command=schemas
  toggles=(--toggle-collect='shardwatch::schema::SchemaRegistry::snapshot'
    --toggle-collect='core::ptr::drop_in_place<core::option::Option<shardwatch::schema::SchemaRegistry>>')
  [ -n "$RULES" ] && config+=$(printf '[rules]\npaths = ["%s"]\n' "$(realpath "$RULES")")$'\n'
else
  [ -n "$RULES" ] && rule_args=(--rules "$RULES")
fi
# The corpus's event times are fixed (reproducible) and so days older than
# the replay's receive time: by default every line would be flagged
# `event.time_skewed`, a field live traffic does not get. A config that
# allows any skew keeps the count to what a node receiving the lines as
# they are written does; HISTORICAL=1 counts with the default config.
if [ "${HISTORICAL:-0}" != 1 ]; then
  config+=$(printf '[ingest]\ntimestamp_skew_max_s = 3153600000')$'\n'
fi
if [ -n "$config" ]; then
  printf '%s' "$config" >"$OUT/replay.toml"
  rule_args+=(--config "$OUT/replay.toml")
fi

# Instructions callgrind collected inside `replay` for one run.
collected() {
  local bin=$1 input=$2 out=$3
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect='shardwatch::replay::replay*' \
    --toggle-collect='shardwatch::shard::ShardStates::advance' "${toggles[@]}" \
    "$bin" "$command" "${rule_args[@]}" "$input" 2>"$out.stderr" >/dev/null
  local n
  n=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out.stderr" | tail -1)
  [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "instructions-per-line: nothing collected (see $out.stderr)" >&2; exit 1; }
  echo "$n"
}

summary=$OUT/summary.txt
skew="any time skew allowed"
[ "${HISTORICAL:-0}" = 1 ] && skew="default config: every line flagged as skewed"
echo "instructions-per-line: $(date -u +%FT%TZ), $EVENTS lines of \`shardwatch-load gen\`, rules: built-in${RULES:+ + $RULES}, $skew, \`shardwatch $command\`" | tee "$summary"
n=0
for bin in $BINS; do
  n=$((n + 1))
  one=$(collected "$bin" "$OUT/corpus-1.log" "$OUT/$n-one.callgrind")
  all=$(collected "$bin" "$corpus" "$OUT/$n.callgrind")
  per=$(( (all - one) / (EVENTS - 1) ))
  echo "  $bin: $per instructions per line ($all in replay for $EVENTS lines, $one for one)" | tee -a "$summary"
done

# Per message kind: the corpus's lines of one kind (the generator's mix,
# told apart by the patterns below), counted the same way. Shows which
# formats cost what; a kind's figure includes the header, the payload
# decoder, aliases and rules it runs.
if [ "${BY_FORMAT:-0}" = 1 ]; then
  kinds=(
    "sshd-rfc3164|^<[0-9]+>[A-Z][a-z]{2} .* sshd\\["
    "sshd-rfc5424|^<[0-9]+>1 [^ ]+ [^ ]+ sshd "
    "sudo-su|( sudo\\[| su\\[|^<[0-9]+>1 [^ ]+ [^ ]+ (sudo|su) )"
    "cron|CRON\\["
    "netfilter-kv|UFW BLOCK"
    "fortigate-kv|devname=\""
    "cef|CEF:0\\|"
    "cloudtrail-json|cloudtrail"
    "app-rfc5424-sd|\\[(req|origin)@"
  )
  echo "per message kind (lines of the corpus of that kind, replayed alone):" | tee -a "$summary"
  for kind in "${kinds[@]}"; do
    name=${kind%%|*}
    pattern=${kind#*|}
    part=$OUT/kind-$name.log
    grep -E -- "$pattern" "$corpus" >"$part" || true
    lines=$(wc -l <"$part")
    if [ "$lines" -lt 2 ]; then
      echo "  $name: fewer than 2 lines in the corpus, skipped" | tee -a "$summary"
      continue
    fi
    head -n 1 "$part" >"$OUT/kind-$name-1.log"
    row="  $name ($lines lines):"
    n=0
    for bin in $BINS; do
      n=$((n + 1))
      one=$(collected "$bin" "$OUT/kind-$name-1.log" "$OUT/$n-kind-$name-one.callgrind")
      all=$(collected "$bin" "$part" "$OUT/$n-kind-$name.callgrind")
      row="$row $(( (all - one) / (lines - 1) ))"
    done
    echo "$row" | tee -a "$summary"
  done
fi
