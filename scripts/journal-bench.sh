#!/usr/bin/env bash
# journal-bench.sh — what the durability layer (per-core journal, #6) costs
# and how fast a node recovers from it, end to end on this machine.
#
# One run measures, REPS times each (default 3), and reports medians:
#   1. raw disk: `dd if=/dev/zero of=<data fs>/dd.tmp bs=1M count=1024
#      oflag=direct conv=fdatasync` on the filesystem of the data dir, MB/s;
#   2. journal write throughput: a 1-core node (`--checkpoint-ms 0`, journal
#      on, default fsync 50 ms) driven flat out over one TCP connection by
#      `shardwatch-load run --rate max --duration ${SEND_S}s`; journal bytes
#      per second (`shardwatch_journal_written_bytes_total` over the window in
#      which the node was processing) and that rate / the dd rate; events/s;
#   3. the cost of journaling: events/s of the same node and command with the
#      journal on (fsync 50 ms), on with `--journal-fsync-ms 0` (fdatasync
#      after every batch) and `--no-journal`; ratios against off. The modes
#      are interleaved (on, fsync0, off, on, ...) so drift hits them alike;
#   4. recovery: a node with `--checkpoint-ms 0` (nothing checkpointed, so
#      everything is replayed) gets enough lines for RECOVERY_MB of journal,
#      is killed with SIGKILL once every line is journaled, and is restarted
#      over the same data dir; the core's "recovered in X ms ... replayed K
#      journal lines" line gives s/GB of on-disk journal and lines/s; the
#      wall time from launching the node to that line (which also covers the
#      journal scan the node does before it listens) gives start-to-ready
#      s/GB. Then it is stopped with SIGTERM and its data dir deleted.
#
# `shardwatch-load bench` cannot pass appliance flags (it passes only
# `--rules`), so this script starts the nodes itself and drives them with
# `shardwatch-load run`. events/s is the node's own rate: events parsed
# (`shardwatch_events_parsed_total`, polled every POLL_S) from the first poll
# that saw any to the first that saw them all; the sender's own rate is in
# results.tsv as well.
#
# Run (after `cargo build --release -p shardwatch -p shardwatch-perf`):
#   scripts/journal-bench.sh                 # results in target/journal-bench/
#   OUT=/tmp/jb REPS=3 scripts/journal-bench.sh
# Knobs (environment): BIN_DIR (target/release), OUT (target/journal-bench),
# DATA_ROOT ($OUT/data; the dd and the journals go to its filesystem), REPS
# (3), SEND_S (10), EVENTS (corpus size, 8000000, about 1.5 GB: enough for
# SEND_S flat out), RECOVERY_MB (550), POLL_S (0.25), KEEP_CORPUS (0: the
# corpus is deleted at the end; 1 keeps $OUT/corpus.log for the next run),
# REV (what the header names as the build; default: this checkout's HEAD).
# Takes about 4-5 minutes (250 s) on the 2-core dev VM. Needs curl and ~4 GB free.
# Writes $OUT/summary.txt (medians), $OUT/results.tsv (every run), and
# $OUT/logs/ (node stderr, harness summaries, metric polls).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR=${BIN_DIR:-target/release}
OUT=${OUT:-target/journal-bench}
DATA_ROOT=${DATA_ROOT:-$OUT/data}
REPS=${REPS:-3}
SEND_S=${SEND_S:-10}
EVENTS=${EVENTS:-8000000}
RECOVERY_MB=${RECOVERY_MB:-550}
POLL_S=${POLL_S:-0.25}
KEEP_CORPUS=${KEEP_CORPUS:-0}

SW=$BIN_DIR/shardwatch
LOAD=$BIN_DIR/shardwatch-load
for b in "$SW" "$LOAD"; do
    [[ -x $b ]] || { echo "journal-bench: $b missing; run cargo build --release -p shardwatch -p shardwatch-perf" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "journal-bench: needs curl" >&2; exit 1; }

mkdir -p "$OUT/logs" "$DATA_ROOT"
LOGS=$OUT/logs
RESULTS=$OUT/results.tsv
SUMMARY=$OUT/summary.txt
CORPUS=$OUT/corpus.log
T_START=$(date +%s)
CLK_TCK=$(getconf CLK_TCK)

NODE_PID=""
POLL_PID=""
cleanup() {
    if [[ -n $POLL_PID ]]; then kill "$POLL_PID" 2>/dev/null || true; fi
    if [[ -n $NODE_PID ]]; then kill -9 "$NODE_PID" 2>/dev/null || true; fi
    rm -f "$DATA_ROOT/dd.tmp"
}
trap cleanup EXIT

log() { echo "journal-bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{v[NR]=$1} END{if(NR==0){print "nan"} else if(NR%2){print v[(NR+1)/2]} else {print (v[NR/2]+v[NR/2+1])/2}}'; }

# The sum over cores of one metric family (labels ignored) from a scrape.
metric() { awk -v m="$1" '$1 ~ "^"m"(\\{|$)" {s+=$2} END{printf "%.0f\n", s+0}'; }
metric_f() { awk -v m="$1" '$1 ~ "^"m"(\\{|$)" {s+=$2} END{printf "%.6f\n", s+0}'; }
scrape() { curl -s --max-time 2 "http://$API/metrics" || true; }

# start_node NAME DATA_DIR [flags...]: starts a 1-core node on loopback
# ports, waits for its listening line, sets NODE_PID, API, TCP, NODE_ERR.
start_node() {
    local name=$1 dir=$2
    shift 2
    NODE_ERR=$LOGS/$name.stderr
    mkdir -p "$dir"
    NODE_T0=$(now)
    "$SW" run --udp 127.0.0.1:0 --tcp 127.0.0.1:0 --api 127.0.0.1:0 \
        --data-dir "$dir" --cores 1 --quiet "$@" >/dev/null 2>"$NODE_ERR" &
    NODE_PID=$!
    local i
    for i in $(seq 1 1500); do
        if grep -q 'shardwatch: listening' "$NODE_ERR"; then break; fi
        if ! kill -0 "$NODE_PID" 2>/dev/null; then
            log "node $name exited before listening:"; cat "$NODE_ERR" >&2; exit 1
        fi
        sleep 0.02
    done
    NODE_T_LISTEN=$(now)
    grep -q 'shardwatch: listening' "$NODE_ERR" || { log "node $name printed no listening line in 30 s"; exit 1; }
    API=$(grep -o 'api=[0-9.:]*' "$NODE_ERR" | head -1 | cut -d= -f2)
    TCP=$(grep -o 'tcp=[0-9.:]*' "$NODE_ERR" | head -1 | cut -d= -f2)
}

# stop_node SIGNAL: stops the node and waits for it; sets NODE_RC to its
# exit status (not run in a subshell: `wait` needs the parent).
stop_node() {
    local sig=$1 rc=0 i
    kill "-$sig" "$NODE_PID"
    if [[ $sig != KILL ]]; then
        # (After SIGKILL wait at once: bash prints "Killed" for a job that it
        # reaps in this polling loop, outside the redirection below.)
        for i in $(seq 1 300); do
            kill -0 "$NODE_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$NODE_PID" 2>/dev/null; then
            log "node $NODE_PID still running 30 s after SIG$sig; killing it"
            kill -9 "$NODE_PID"
        fi
    fi
    { wait "$NODE_PID"; } 2>/dev/null || rc=$?
    NODE_PID=""
    NODE_RC=$rc
}

# CPU seconds (user + system) the node has used so far.
node_cpu_s() { awk -v t="$CLK_TCK" '{printf "%.3f\n", ($14+$15)/t}' "/proc/$NODE_PID/stat"; }

# Polls the node's counters into FILE: time parsed journal_lines journal_bytes
# fsync_count fsync_sum.
start_poll() {
    local file=$1
    (
        while :; do
            scrape | awk -v t="$(now)" '
                /^shardwatch_events_parsed_total[{ ]/ {p+=$2}
                /^shardwatch_journal_lines_total[{ ]/ {l+=$2}
                /^shardwatch_journal_written_bytes_total[{ ]/ {b+=$2}
                /^shardwatch_journal_fsync_seconds_count[{ ]/ {c+=$2}
                /^shardwatch_journal_fsync_seconds_sum[{ ]/ {s+=$2}
                END {printf "%s %.0f %.0f %.0f %.0f %.6f\n", t, p, l, b, c, s}'
            sleep "$POLL_S"
        done
    ) >"$file" 2>/dev/null &
    POLL_PID=$!
}
stop_poll() { kill "$POLL_PID" 2>/dev/null || true; wait "$POLL_PID" 2>/dev/null || true; POLL_PID=""; }

# Waits until the node's parsed count stops moving (3 equal polls in a row).
wait_settled() {
    local prev=-1 same=0 cur i
    for i in $(seq 1 240); do
        cur=$(scrape | metric shardwatch_events_parsed_total)
        if [[ $cur == "$prev" ]]; then same=$((same + 1)); else same=0; fi
        [[ $same -ge 2 ]] && return 0
        prev=$cur
        sleep 0.5
    done
    log "node never settled (parsed=$cur)"
}

# From a poll file: "events_per_s journal_bytes_per_s parsed_total
# journal_bytes_total window_s fsyncs fsync_mean_ms": rates, fsyncs and their
# mean over the window from the first poll with parsed > 0 to the first poll
# with the final count; totals at the last poll.
window_rates() {
    awk '
        { t[NR]=$1; p[NR]=$2; jb[NR]=$4; fc[NR]=$5; fs[NR]=$6 }
        END {
            final = p[NR]; a = 0; b = 0
            for (i = 1; i <= NR; i++) { if (!a && p[i] > 0) a = i; if (!b && p[i] == final) b = i }
            if (!a || b <= a) { print "nan nan " final " " jb[NR] " 0 0 nan"; exit }
            w = t[b] - t[a]; n = fc[b] - fc[a]
            printf "%.0f %.0f %d %d %.3f %d %s\n", (p[b]-p[a])/w, (jb[b]-jb[a])/w, final, jb[NR], w, n,
                (n > 0 ? sprintf("%.3f", (fs[b]-fs[a])/n*1000) : "nan")
        }' "$1"
}

########################################################################
log "results in $OUT; binaries $SW, $LOAD"
{
    echo "# journal-bench $(date -u +%FT%TZ) on $(hostname): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
    echo "# shardwatch ${REV:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (working tree has changes)')}, binary $SW ($(stat -c %y "$SW" | cut -d. -f1))"
    printf 'kind\trep\tmode\tevents_per_s\tjournal_bytes_per_s\tparsed\tjournal_bytes\twindow_s\tfsyncs\tfsync_mean_ms\tsender_per_s\tcpu_us_per_event\textra\n'
} >"$RESULTS"

# 0. Corpus (the BENCHMARKS.md corpus recipe, sized for SEND_S flat out).
if [[ -s $CORPUS && -s $CORPUS.truth.json && $(cat "$CORPUS.events" 2>/dev/null || true) == "$EVENTS" ]]; then
    log "reusing $CORPUS"
else
    log "generating a $EVENTS-event corpus"
    "$LOAD" gen --out "$CORPUS" --events "$EVENTS" --entities 2000 --seed 7 --start now 2>"$LOGS/gen.stderr"
    echo "$EVENTS" >"$CORPUS.events"
    sync "$CORPUS" # its write-back would otherwise land in the dd and the first runs
fi
CORPUS_BYTES=$(stat -c %s "$CORPUS")
AVG_LINE=$(awk -v b="$CORPUS_BYTES" -v n="$EVENTS" 'BEGIN{printf "%.1f", b/n}')

# 1. Raw direct-IO sequential write rate of the data dir's filesystem.
FS=$(df -P "$DATA_ROOT" | awk 'NR==2{print $1" ("$6")"}')
for r in $(seq 1 "$REPS"); do
    line=$(dd if=/dev/zero of="$DATA_ROOT/dd.tmp" bs=1M count=1024 oflag=direct conv=fdatasync 2>&1 | tail -1)
    rm -f "$DATA_ROOT/dd.tmp"
    mbs=$(awk '{for(i=1;i<=NF;i++) if($i=="bytes"){b=$(i-1)} ; for(i=1;i<=NF;i++) if($i=="s,"){s=$(i-1)}; printf "%.0f", b/s/1e6}' <<<"$line")
    printf 'dd\t%s\t-\t-\t%s\t-\t1073741824\t-\t-\t-\t-\t-\t%s\n' "$r" "$((mbs * 1000000))" "$line" >>"$RESULTS"
    log "dd $r: $mbs MB/s ($line)"
done

# 2 + 3. Throughput with the journal on / fsync every batch / off.
declare -A MODE_FLAGS=([on]="" [fsync0]="--journal-fsync-ms 0" [off]="--no-journal")
for r in $(seq 1 "$REPS"); do
    for mode in on fsync0 off; do
        dir=$DATA_ROOT/tp-$mode-$r
        rm -rf "$dir"
        # shellcheck disable=SC2086
        start_node "tp-$mode-$r" "$dir" --checkpoint-ms 0 ${MODE_FLAGS[$mode]}
        start_poll "$LOGS/tp-$mode-$r.poll"
        cpu0=$(node_cpu_s)
        "$LOAD" run --target "tcp://$TCP" --corpus "$CORPUS" --rate max --duration "${SEND_S}s" \
            --connections 1 --drain-ms 0 --quiet --out "$LOGS/tp-$mode-$r.load" 2>"$LOGS/tp-$mode-$r.load.stderr"
        wait_settled
        sleep "$POLL_S"
        cpu1=$(node_cpu_s)
        stop_poll
        stop_node TERM
        rc=$NODE_RC
        [[ $rc == 0 ]] || log "tp-$mode-$r: node exited with status $rc after SIGTERM (see $NODE_ERR)"
        read -r eps jbps parsed jbytes win fsyncs fmean < <(window_rates "$LOGS/tp-$mode-$r.poll")
        sender=$(grep -o '([0-9]*/s' "$LOGS/tp-$mode-$r.load/summary.txt" | tr -d '(/s' || true)
        cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$parsed" 'BEGIN{printf "%.2f", n ? (b-a)/n*1e6 : 0}')
        printf 'tp\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tnode_rc=%s\n' \
            "$r" "$mode" "$eps" "$jbps" "$parsed" "$jbytes" "$win" "$fsyncs" "$fmean" "$sender" "$cpu_us" "$rc" >>"$RESULTS"
        log "tp $mode $r: $eps events/s (sender $sender/s), journal $jbps B/s, $cpu_us µs CPU/event, $fsyncs fsyncs mean $fmean ms"
        rm -rf "$dir"
    done
done

# 4. Recovery: everything replayed (no checkpoints), after SIGKILL.
REC_EVENTS=$(awk -v t="$RECOVERY_MB" -v l="$AVG_LINE" -v n="$EVENTS" \
    'BEGIN{e=int(t*1e6/(l-1+44)*1.02)+1; if(e>n) e=n; print e}') # record = line - LF + 44 bytes
for r in $(seq 1 "$REPS"); do
    dir=$DATA_ROOT/rec-$r
    rm -rf "$dir"
    start_node "rec-$r-write" "$dir" --checkpoint-ms 0
    t0=$(now)
    "$LOAD" run --target "tcp://$TCP" --corpus "$CORPUS" --rate max --events "$REC_EVENTS" \
        --connections 1 --drain-ms 0 --quiet --out "$LOGS/rec-$r.load" 2>"$LOGS/rec-$r.load.stderr"
    # Every line appended to the journal, then 1 s for the group commit.
    for i in $(seq 1 600); do
        jl=$(scrape | metric shardwatch_journal_lines_total)
        [[ $jl -ge $REC_EVENTS ]] && break
        sleep 0.2
    done
    sleep 1
    m=$(scrape)
    jl=$(metric shardwatch_journal_lines_total <<<"$m")
    jw=$(metric shardwatch_journal_written_bytes_total <<<"$m")
    fill_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')
    stop_node KILL
    rc_kill=$NODE_RC
    jdisk=$(du -sb "$dir/journal" | cut -f1)
    start_node "rec-$r-recover" "$dir" --checkpoint-ms 0
    rec_line=""
    for i in $(seq 1 6000); do
        rec_line=$(grep -m1 'core 0: recovered in' "$NODE_ERR" || true)
        [[ -n $rec_line ]] && break
        kill -0 "$NODE_PID" 2>/dev/null || { log "rec-$r: node exited during recovery:"; cat "$NODE_ERR" >&2; exit 1; }
        sleep 0.02
    done
    # Start to ready as an operator sees it: launch to the "recovered" line
    # (the node scans the journal before it listens; that scan is not in
    # the reported "recovered in" time), +-20 ms of polling.
    ready_ms=$(awk -v a="$NODE_T0" -v b="$(now)" 'BEGIN{printf "%.0f", (b-a)*1000}')
    listen_ms=$(awk -v a="$NODE_T0" -v b="$NODE_T_LISTEN" 'BEGIN{printf "%.0f", (b-a)*1000}')
    m=$(scrape)
    rec_metric_s=$(metric_f shardwatch_recovery_duration_seconds <<<"$m")
    replayed_metric=$(metric shardwatch_recovery_replayed_lines_total <<<"$m")
    stop_node TERM
    rc_term=$NODE_RC
    "$SW" journal check --data-dir "$dir" >"$LOGS/rec-$r.journal-check" 2>&1 || true
    rm -rf "$dir"
    if [[ -z $rec_line ]]; then
        log "rec-$r: no 'recovered in' line within 120 s (metric says ${rec_metric_s} s, $replayed_metric lines)"
        rec_ms=nan; replayed=nan
    else
        rec_ms=$(sed -E 's/.*recovered in ([0-9]+) ms.*/\1/' <<<"$rec_line")
        replayed=$(sed -E 's/.*replayed ([0-9]+) journal lines.*/\1/' <<<"$rec_line")
    fi
    [[ $replayed == "$jl" ]] || log "rec-$r: replayed $replayed lines but $jl were journaled before SIGKILL"
    s_per_gb=$(awk -v ms="$rec_ms" -v b="$jdisk" 'BEGIN{printf "%.2f", ms/1000/(b/1e9)}')
    lps=$(awk -v ms="$rec_ms" -v n="$replayed" 'BEGIN{printf "%.0f", n/(ms/1000)}')
    printf 'rec\t%s\t-\t%s\t-\t%s\t%s\t%s\t-\t-\t-\t-\trecovery_ms=%s s_per_GB=%s ready_ms=%s listen_ms=%s ready_s_per_GB=%s journaled=%s written_metric=%s metric_s=%s metric_replayed=%s fill_s=%s rc_kill=%s rc_term=%s\n' \
        "$r" "$lps" "$replayed" "$jdisk" "$(awk -v ms="$rec_ms" 'BEGIN{printf "%.3f", ms/1000}')" \
        "$rec_ms" "$s_per_gb" "$ready_ms" "$listen_ms" "$(awk -v ms="$ready_ms" -v b="$jdisk" 'BEGIN{printf "%.2f", ms/1000/(b/1e9)}')" "$jl" "$jw" "$rec_metric_s" "$replayed_metric" "$fill_s" "$rc_kill" "$rc_term" >>"$RESULTS"
    log "rec $r: $jdisk B journal ($jl lines, filled in $fill_s s) replayed in $rec_ms ms: $s_per_gb s/GB, $lps lines/s; launch to listening $listen_ms ms, to recovered $ready_ms ms (metric: ${rec_metric_s} s, $replayed_metric lines)"
done

if [[ $KEEP_CORPUS != 1 ]]; then rm -f "$CORPUS" "$CORPUS.truth.json" "$CORPUS.events"; fi
rmdir "$DATA_ROOT" 2>/dev/null || true

########################################################################
# Summary: medians over the reps.
col() { awk -F'\t' -v k="$1" -v m="$2" -v c="$3" '$1==k && ($3==m || m=="-") && $c!="-" {print $c}' "$RESULTS" | median; }
extra() { awk -F'\t' -v k="$1" '$1==k {print $13}' "$RESULTS" | tr ' ' '\n' | sed -n "s/^$2=//p" | median; }
# Median over reps of MODE's column C divided by off's in the same rep.
pair_ratio() {
    awk -F'\t' -v m="$1" -v c="$2" '$1=="tp" && $3==m {v[$2]=$c} $1=="tp" && $3=="off" {o[$2]=$c}
        END {for (r in v) if (o[r] > 0) printf "%.3f\n", v[r]/o[r]}' "$RESULTS" | median
}
DD=$(col dd - 5)
OFF=$(col tp off 4)
T_END=$(date +%s)
{
    sed -n '1,2p' "$RESULTS"
    echo "# corpus: $EVENTS events, $CORPUS_BYTES bytes (avg $AVG_LINE B/line incl. LF), shardwatch-load gen --entities 2000 --seed 7 --start now"
    echo "# data dir filesystem: $FS; medians of $REPS runs; script runtime $((T_END - T_START)) s"
    echo
    printf '1. dd direct-IO sequential write (bs=1M count=1024 oflag=direct conv=fdatasync): %.0f MB/s\n' "$(awk -v v="$DD" 'BEGIN{print v/1e6}')"
    echo
    echo "2+3. 1 core, --checkpoint-ms 0, TCP flat out (shardwatch-load run --rate max --duration ${SEND_S}s --connections 1)"
    printf '%-8s %10s %12s %8s %13s %9s %11s %11s %11s\n' mode events/s "journal MB/s" "vs dd" "µs CPU/event" "fsync ms" "eps/off(a)" "eps/off(b)" "CPU/off(b)"
    for mode in on fsync0 off; do
        eps=$(col tp "$mode" 4); jb=$(col tp "$mode" 5); cpu=$(col tp "$mode" 12); fm=$(col tp "$mode" 10)
        printf '%-8s %10.0f %12.1f %8s %13s %9s %11.3f %11s %11s\n' "$mode" "$eps" "$(awk -v v="$jb" 'BEGIN{print v/1e6}')" \
            "$(awk -v j="$jb" -v d="$DD" 'BEGIN{printf "%.3f", (d>0? j/d : 0)}')" "$cpu" "$fm" \
            "$(awk -v a="$eps" -v b="$OFF" 'BEGIN{print a/b}')" "$(pair_ratio "$mode" 4)" "$(pair_ratio "$mode" 12)"
    done
    echo "(a) ratio of the medians; (b) median over reps of the ratio within a rep (the modes of a rep run back to back)"
    echo "(on = journal, fdatasync at most every 50 ms; fsync0 = --journal-fsync-ms 0; off = --no-journal)"
    echo "journal bytes written per event (on, totals): $(awk -F'\t' '$1=="tp" && $3=="on" {print $7/$6}' "$RESULTS" | median | xargs printf '%.1f') (corpus line avg $AVG_LINE B incl. LF; a record is the line without LF + 44 B of header)"
    echo
    echo "4. recovery after SIGKILL, --checkpoint-ms 0 (everything replayed), target ${RECOVERY_MB} MB of journal ($REC_EVENTS lines)"
    printf 'journal on disk %.0f MB, replayed %s lines in %s s: %s s/GB, %s lines/s\n' \
        "$(awk -v v="$(col rec - 7)" 'BEGIN{print v/1e6}')" "$(col rec - 6)" "$(col rec - 8)" \
        "$(extra rec s_per_GB)" "$(col rec - 4)"
    printf 'as an operator sees it: launch to listening %s ms (journal scan before replay, not in the figure above), launch to recovered %s ms: %s s/GB\n' \
        "$(extra rec listen_ms)" "$(extra rec ready_ms)" "$(extra rec ready_s_per_GB)"
    echo
    echo "every run: $RESULTS"
} >"$SUMMARY"
cat "$SUMMARY"
