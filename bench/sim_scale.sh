#!/usr/bin/env bash
# Scale by simulation (docs/scale.md): runs the probemesh-sim `scale` binary (release)
# for N nodes x W workers, on the seeded model and on real chitchat over its in-memory
# transport, in paused time; one JSON line per run in $OUT, then a table on stdout.
#
#   bench/sim_scale.sh                       # the default grid
#   NODES="16 64" WORKERS="100" BACKENDS=model bench/sim_scale.sh
#
# Each run is bounded by TIMEOUT seconds of wall time (default 900) and by the
# machine's memory; a run that does not finish is recorded as such, with why.
set -u
cd "$(dirname "$0")/.."
NODES=${NODES:-"16 64 128 256"}
WORKERS=${WORKERS:-"100 1000"}
BACKENDS=${BACKENDS:-"model chitchat"}
TIMEOUT=${TIMEOUT:-900}
INTERVAL=${INTERVAL:-200ms}
OUT=${OUT:-target/sim_scale.jsonl}
cargo build --release -q -p probemesh-sim --bin scale || exit 1
BIN=target/release/scale
: > "$OUT"
for w in $WORKERS; do
  for n in $NODES; do
    for b in $BACKENDS; do
      log=$(mktemp)
      start=$(date +%s.%N)
      # %M: peak resident set of the whole run, in KiB.
      if /usr/bin/time -f '%M' -o "$log.mem" timeout "$TIMEOUT" "$BIN" --nodes "$n" --workers "$w" --backend "$b" --interval "$INTERVAL" > "$log" 2> "$log.err"; then
        peak=$(cat "$log.mem")
        python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read()); d["peak_rss_kib"]=int(sys.argv[2]); print(json.dumps(d))' "$log" "$peak" >> "$OUT"
      else
        rc=$?
        wall=$(python3 -c "import time; print(round(time.time()-$start,1))")
        why="exit $rc"; [ "$rc" = 124 ] && why="timeout after ${TIMEOUT}s"
        echo "{\"backend\":\"$b\",\"nodes\":$n,\"workers\":$w,\"failed\":\"$why\",\"wall_s\":$wall,\"stderr\":$(tail -c 300 "$log.err" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >> "$OUT"
      fi
      tail -n 1 "$OUT" >&2
      rm -f "$log" "$log.err" "$log.mem"
    done
  done
done
python3 - "$OUT" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def theory(n, f=3):
    # push-pull, fan-out f: log_{1+2f} N rounds to reach half, log_f ln N to finish
    return math.log(n, 1 + 2 * f) + math.log(max(math.log(n), 1.0001), f)
print("| N | W | backend | members | imported | ready | new member | newcomer caught up | evicted | bytes/node/s | digest share | RSS/node | wall |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if "failed" in r:
        print(f"| {r['nodes']} | {r['workers']} | {r['backend']} | did not finish: {r['failed']} ({r['wall_s']} s) | | | | | | | | | |")
        continue
    s = lambda k: f"{r[k]/1000:.2f} s"
    share = "n/a" if r['backend'] != 'model' else f"{r['digest_share']:.0%}"
    print(f"| {r['nodes']} | {r['workers']} | {r['backend']} | {s('membership_ms')} | {s('imported_everywhere_ms')} | {s('ready_everywhere_ms')} | {s('new_node_member_everywhere_ms')} | {s('new_node_caught_up_ms')} | {s('evicted_everywhere_ms')} | {r['steady_bytes_per_node_per_s']/1024:.1f} KiB | {share} | {r['rss_per_node_kib']/1024:.2f} MiB | {r['wall_s']:.0f} s |")
print()
print("| N | push-pull rounds (log_7 N + log_3 ln N) | log_3 N |")
print("|---|---|---|")
for n in sorted({r['nodes'] for r in rows}):
    print(f"| {n} | {theory(n):.1f} | {math.log(n, 3):.1f} |")
PY
