#!/bin/sh
# Cost of the anomaly detectors: the same corpus flat out over TCP into a
# one-core appliance, (a) with the built-in rules only and (b) with the
# built-in rules plus perf/rules/anomaly.yml (whose rare_template rule turns
# the template miner on for every line). Each configuration runs REPEATS
# times (default 2), interleaved a, b, a, b so that drift on a shared
# machine hits both alike; the table gives every run and the median of
# each configuration (with two runs, their mean), and the ratio b / a.
#
# Each run is `shardwatch-load peers --peers none`: the appliance with
# `--cores 1`, one TCP connection, flat out, timed from the first byte
# until /metrics shows every line received and no batch queued; CPU is the
# appliance's user + system time from the start of the load to just
# before SIGTERM (so it includes the short drain after the last line).
#
# Usage: perf/scripts/anomaly-cost.sh [OUT_DIR] [EVENTS] [REPEATS]
#   SHARDWATCH_BIN  appliance (default target/release/shardwatch)
#   SHARDWATCH_LOAD harness (default target/release/shardwatch-load)
# Run from the repository root after
#   cargo build --release -p shardwatch -p shardwatch-perf
set -eu

OUT="${1:-perf/results/anomaly-cost}"
EVENTS="${2:-2000000}"
REPEATS="${3:-2}"
BIN="${SHARDWATCH_BIN:-target/release/shardwatch}"
LOAD="${SHARDWATCH_LOAD:-target/release/shardwatch-load}"
RULES="perf/rules/anomaly.yml"

for f in "$BIN" "$LOAD"; do
    if [ ! -x "$f" ]; then
        echo "anomaly-cost: $f is missing; cargo build --release -p shardwatch -p shardwatch-perf" >&2
        exit 1
    fi
done
mkdir -p "$OUT"
CORPUS="$OUT/corpus.log"
# Every scenario row, default density; the same file for every run.
"$LOAD" gen --out "$CORPUS" --events "$EVENTS" --seed 1 --scenarios all

i=1
while [ "$i" -le "$REPEATS" ]; do
    for cfg in builtin anomaly; do
        if [ "$cfg" = builtin ]; then rules=none; else rules="$RULES"; fi
        echo "anomaly-cost: run $i, $cfg (--rules $rules)" >&2
        # A run has its own bounds (start 60 s, drain 5 s, peer timeouts);
        # timeout(1) is a last resort against a wedged machine.
        timeout 600 "$LOAD" peers --corpus "$CORPUS" --binary "$BIN" --cores 1 \
            --peers none --rules "$rules" --out "$OUT/$cfg-$i" >/dev/null
    done
    i=$((i + 1))
done

python3 - "$OUT" "$REPEATS" <<'PY'
import json, statistics, sys

out, repeats = sys.argv[1], int(sys.argv[2])
rows = {}
print(f"{'config':<10} {'run':>3} {'events/s':>12} {'CPU us/event':>13} {'wall s':>7} {'alerts':>7}")
for cfg in ("builtin", "anomaly"):
    for i in range(1, repeats + 1):
        with open(f"{out}/{cfg}-{i}/report.json") as f:
            report = json.load(f)
        r = next(r for r in report["peers"]["results"] if r["peer"] == "shardwatch")
        if r["status"] != "ok":
            sys.exit(f"{cfg}-{i}: shardwatch {r['status']}: {r.get('reason')}")
        rows.setdefault(cfg, []).append(r)
        print(f"{cfg:<10} {i:>3} {r['events_per_s']:>12,.0f} {r['cpu_us_per_event']:>13.3f} "
              f"{r['wall_s']:>7.2f} {r['alerts']:>7}")
med = {c: (statistics.median(x["events_per_s"] for x in v),
           statistics.median(x["cpu_us_per_event"] for x in v)) for c, v in rows.items()}
for c, (eps, cpu) in med.items():
    print(f"{c:<10} med {eps:>12,.0f} {cpu:>13.3f}")
(a_eps, a_cpu), (b_eps, b_cpu) = med["builtin"], med["anomaly"]
print(f"anomaly / builtin: events/s x{b_eps / a_eps:.3f} ({(1 - b_eps / a_eps) * 100:+.1f}% cost), "
      f"CPU us/event x{b_cpu / a_cpu:.3f}")
PY
