#!/usr/bin/env bash
# The cost of being watched: put and linearizable get at c=64 on a single-node conclave,
# without scrapes, with /metrics and /v1/status scraped every second (what Prometheus does),
# and scraped with the dashboard open besides (a real headless Chromium on /ui#/overview,
# refreshing every 2 s), alternating the three so drift on a shared machine hits all alike.
#
#   bash bench/observability.sh            # ≈ 2 min; writes bench/observability-results.md
#   ROUNDS=5 POINT_SECONDS=10 bash bench/observability.sh
#
# The request metrics (a counter and a histogram per request) are always on: "without" is
# without scrapes, not without instrumentation; the instrumentation's own cost is in the
# comparison with bench/results.md from before it existed (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
POINT_SECONDS=${POINT_SECONDS:-5}
ROUNDS=${ROUNDS:-3}
OUT_JSON=bench/observability-results.jsonl
OUT_MD=bench/observability-results.md
source bench/prepare.sh

WORK=$(mktemp -d "$PWD/target/bench-work.XXXXXX")
PIDS=()
SCRAPER=""
BROWSER=""
CHROMIUM=$(command -v /usr/lib/chromium/chromium chromium 2>/dev/null | head -1 || true)
cleanup() {
  [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null || true
  [ -n "$BROWSER" ] && kill "$BROWSER" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ADDR=127.0.0.1:17420
"$BIN" agent --data-dir "$WORK/conclave" --http-addr $ADDR --rpc-addr 127.0.0.1:17421 --log-level warn \
  >"$WORK/conclave.log" 2>&1 &
PIDS+=("$!")
wait_ok curl -sf "http://$ADDR/v1/health"

scrape_every_second() {
  while true; do
    curl -sf "http://$ADDR/metrics" >/dev/null || true
    curl -sf "http://$ADDR/v1/status" >/dev/null || true
    sleep 1
  done
}

: >"$OUT_JSON"
for round in $(seq 1 "$ROUNDS"); do
  for watched in no yes dashboard; do
    if [ "$watched" = dashboard ] && [ -z "$CHROMIUM" ]; then continue; fi
    if [ "$watched" != no ]; then scrape_every_second & SCRAPER=$!; fi
    if [ "$watched" = dashboard ]; then
      "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$WORK/chromium" "http://$ADDR/ui#/overview" >/dev/null 2>&1 &
      BROWSER=$!
      sleep 3
    fi
    for op in put get; do
      "$BENCH" load --system conclave --addr $ADDR --op $op -c 64 --seconds "$POINT_SECONDS" \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r['watched']='$watched'; r['round']=$round; print(json.dumps(r))" >>"$OUT_JSON"
    done
    if [ "$watched" != no ]; then kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=""; fi
    if [ "$watched" = dashboard ]; then kill "$BROWSER"; wait "$BROWSER" 2>/dev/null || true; BROWSER=""; fi
  done
done
# The agent's own CPU (utime + stime of its process, not the browser's) over 30 s with no
# load: nothing open, then the dashboard open on the overview (it refreshes every 2 s).
agent_cpu_ms() { # seconds
  local pid=${PIDS[0]} hz; hz=$(getconf CLK_TCK)
  local a; a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep "$1"
  local b; b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  echo $(( (b - a) * 1000 / hz ))
}
IDLE_CPU_MS=$(agent_cpu_ms 30)
DASH_CPU_MS="–"
if [ -n "$CHROMIUM" ]; then
  "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$WORK/chromium" "http://$ADDR/ui#/overview" >/dev/null 2>&1 &
  BROWSER=$!
  sleep 3
  DASH_CPU_MS=$(agent_cpu_ms 30)
  kill "$BROWSER"; wait "$BROWSER" 2>/dev/null || true; BROWSER=""
fi
SERIES=$(curl -sf "http://$ADDR/metrics" | grep -vc '^#')
SCRAPE_MS=$(python3 - "$ADDR" <<'PY'
import sys, time, urllib.request
url = f"http://{sys.argv[1]}/metrics"
times = []
for _ in range(20):
    t = time.perf_counter(); urllib.request.urlopen(url).read(); times.append((time.perf_counter() - t) * 1000)
times.sort(); print(f"{times[len(times)//2]:.2f}")
PY
)

python3 - "$OUT_JSON" "$OUT_MD" "$SERIES" "$SCRAPE_MS" "$IDLE_CPU_MS" "$DASH_CPU_MS" <<'PY'
import json, statistics, subprocess, sys
src, dst, series, scrape_ms, idle_cpu, dash_cpu = sys.argv[1:7]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
modes = sorted({r["watched"] for r in rows}, key=["no", "yes", "dashboard"].index)
out = [f"commit `{commit}` · single node · c=64 · {max(r['round'] for r in rows)} rounds, alternating", "",
       "| op | without scrapes ops/s (median) | scraped every second | difference | scraped + dashboard open | difference | p99 µs without / scraped / dashboard |",
       "|---|---:|---:|---:|---:|---:|---|"]
for op in ["put", "get"]:
    med = {m: statistics.median(r["ops_per_sec"] for r in rows if r["op"] == op and r["watched"] == m) for m in modes}
    p99 = {m: statistics.median(r["p99_us"] for r in rows if r["op"] == op and r["watched"] == m) for m in modes}
    a = med["no"]
    cell = lambda m: (f"{med[m]:.0f} | {(med[m]-a)/a*100:+.1f} %" if m in med else "– | –")
    out.append(f"| {op} | {a:.0f} | {cell('yes')} | {cell('dashboard')} | " + " / ".join(f"{p99[m]:.0f}" for m in modes) + " |")
out += ["", f"/metrics after the run: {series} series, answered in {scrape_ms} ms (median of 20).",
        "", f"The agent's own CPU over 30 s without load: {idle_cpu} ms with nothing open, {dash_cpu} ms with the dashboard open."]
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
