#!/usr/bin/env bash
# Gossip at scale on loopback: 3 voters + (N-3) client agents, default gossip timings.
#   - detection: kill -9 a client -> every other agent shows it `dead` (TRIALS per size);
#   - propagation: SIGTERM a client -> every other agent shows it `left` (a gossiped key change);
#   - tag propagation: PUT /v1/agent/tags on a client -> every other agent's membership watch
#     reports the new tag (bench/gossip_tag.py, TRIALS per size);
#   - false positives: STEADY_SECONDS with nothing stopped while a write benchmark (c=64) loads
#     the voters; any member seen suspect or dead counts;
#   - per client agent: RSS, CPU and gossip bytes/s over the steady window.
#
#   bash bench/gossip.sh                          # sizes 50 and 100, 300 s steady (≈ 10 min)
#   SIZES=20 TRIALS=2 STEADY_SECONDS=20 bash bench/gossip.sh
#
# Writes bench/gossip-results.md and .jsonl. Every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"50 100"}
TRIALS=${TRIALS:-5}
STEADY_SECONDS=${STEADY_SECONDS:-300}
OUT_JSON=${OUT_JSON:-bench/gossip-results.jsonl}
OUT_MD=${OUT_MD:-bench/gossip-results.md}
ulimit -n 65536 2>/dev/null || true

[ "${REPORT_ONLY:-0}" = 1 ] || cargo build --release -q -p conclave -p conclave-bench
BIN=$PWD/target/release/conclave
BENCH=$PWD/target/release/conclave-bench
WORK=$(mktemp -d "$PWD/target/bench-gossip.XXXXXX")
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
export CONCLAVE_CLUSTER_TOKEN=bench-token

http_of() { echo "127.0.0.1:$((20000 + $1))"; }
rpc_of() { echo "127.0.0.1:$((22000 + $1))"; }
MEMBERS="1=$(rpc_of 1),2=$(rpc_of 2),3=$(rpc_of 3)"
JOIN="$(rpc_of 1),$(rpc_of 2),$(rpc_of 3)"

start() { # n: 1-3 voters, others clients
  local n=$1 args
  if [ "$n" -le 3 ]; then args=(--initial-members "$MEMBERS"); else args=(--role client --join "$JOIN"); fi
  "$BIN" agent --data-dir "$WORK/a$n" --http-addr "$(http_of "$n")" --rpc-addr "$(rpc_of "$n")" \
    --log-level warn "${args[@]}" >>"$WORK/a$n.log" 2>&1 &
  PID[$n]=$!
}
stop_all() {
  for n in "${!PID[@]}"; do kill -9 "${PID[$n]}" 2>/dev/null || true; done
  for n in "${!PID[@]}"; do { wait "${PID[$n]}"; } 2>/dev/null || true; done
  PID=()
  rm -rf "$WORK"/a*
}
node_id() { curl -sf -m 2 "http://$(http_of "$1")/v1/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['node_id'])"; }
all_alive() { # size
  python3 - "$1" <<'PY'
import json, sys, urllib.request
n = int(sys.argv[1])
for i in range(1, n + 1):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{20000+i}/v1/members", timeout=2) as r:
            ms = json.load(r)
    except Exception:
        sys.exit(1)
    if len(ms) != n or any(m["state"] != "alive" for m in ms):
        sys.exit(1)
PY
}
wait_all_alive() {
  for _ in $(seq 1 240); do all_alive "$1" && return 0; sleep 0.5; done
  echo "agents did not converge on $1 alive members" >&2; return 1
}
addrs_except() { # size skip
  for i in $(seq 1 "$1"); do [ "$i" = "$2" ] || http_of "$i"; done >"$WORK/addrs"
}

# APPEND=1 keeps earlier rows (e.g. a steady run) and adds this run's; REPORT_ONLY=1 only
# rebuilds the table from the rows.
[ "${APPEND:-0}" = 1 ] || [ "${REPORT_ONLY:-0}" = 1 ] || : >"$OUT_JSON"
[ "${REPORT_ONLY:-0}" = 1 ] && SIZES=""
for size in $SIZES; do
  echo "== $size agents" >&2
  for n in $(seq 1 "$size"); do start "$n"; done
  wait_all_alive "$size"
  sleep 2
  for t in $(seq 1 "$TRIALS"); do
    victim=$((size - t + 1))
    id=$(node_id "$victim")
    addrs_except "$size" "$victim"
    kill -9 "${PID[$victim]}"
    r=$("$BENCH" watch --addrs-file "$WORK/addrs" --id "$id" --state dead --timeout 60)
    echo "{\"size\":$size,\"kind\":\"detection\",\"result\":$r}" >>"$OUT_JSON"; echo "detection: $r" >&2
    { wait "${PID[$victim]}"; } 2>/dev/null || true
    start "$victim"; wait_all_alive "$size"
    id=$(node_id "$victim")
    kill -TERM "${PID[$victim]}"
    r=$("$BENCH" watch --addrs-file "$WORK/addrs" --id "$id" --state left --timeout 60)
    echo "{\"size\":$size,\"kind\":\"propagation\",\"result\":$r}" >>"$OUT_JSON"; echo "propagation: $r" >&2
    { wait "${PID[$victim]}"; } 2>/dev/null || true
    start "$victim"; wait_all_alive "$size"
  done
  for t in $(seq 1 "$TRIALS"); do
    changed=$((size - t + 1))
    addrs_except "$size" "$changed"
    r=$(python3 bench/gossip_tag.py "$WORK/addrs" "$(http_of "$changed")" "$(node_id "$changed")" "t$t")
    echo "{\"size\":$size,\"kind\":\"tag\",\"result\":$r}" >>"$OUT_JSON"; echo "tag: $r" >&2
  done
  if [ "$STEADY_SECONDS" = 0 ]; then stop_all; continue; fi
  # Steady window under write load: false positives and per-client cost.
  addrs_except "$size" 0
  for c in $(seq 4 "$size"); do echo "${PID[$c]} $((20000 + c))"; done >"$WORK/pids"
  python3 bench/gossip_clients.py snapshot "$WORK/pids" >"$WORK/before.json"
  "$BENCH" load --system conclave --addr "$(http_of 1),$(http_of 2),$(http_of 3)" --op put -c 64 \
    --seconds "$STEADY_SECONDS" >"$WORK/load.json" &
  LOAD=$!
  r=$("$BENCH" steady --addrs-file "$WORK/addrs" --seconds "$STEADY_SECONDS")
  wait "$LOAD"
  echo "{\"size\":$size,\"kind\":\"steady\",\"result\":$r,\"load\":$(cat "$WORK/load.json")}" >>"$OUT_JSON"; echo "steady: $r" >&2
  python3 bench/gossip_clients.py report "$WORK/pids" "$WORK/before.json" "$STEADY_SECONDS" "$size" >>"$OUT_JSON"
  stop_all
done

python3 - "$OUT_JSON" "$OUT_MD" <<'PY'
import json, sys, subprocess, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = [f"commit `{commit}` · default gossip timings (SWIM: probe every 300 ms, probe timeout 120 ms, suspicion 800 ms, gossip every 100 ms)", ""]
out.append("| agents | measure | trials | p50 of agents (median over trials) | p99 of agents (median) | seen by all: median | seen by all: max | agents that missed it |")
out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
for size in sorted({r["size"] for r in rows}):
    for kind in ("detection", "propagation", "tag"):
        rs = [r["result"] for r in rows if r["size"] == size and r["kind"] == kind]
        if not rs: continue
        med = lambda k: statistics.median(x[k] for x in rs)
        out.append(f"| {size} | {kind} ({rs[0]['state']}) | {len(rs)} | {med('p50_ms'):.0f} ms | {med('p99_ms'):.0f} ms | {med('all_ms'):.0f} ms | {max(x['all_ms'] for x in rs):.0f} ms | {sum(x['missing'] for x in rs)} |")
out.append("")
for r in rows:
    if r["kind"] == "steady":
        s, l = r["result"], r["load"]
        out.append(f"Steady, {r['size']} agents, {s['seconds']:.0f} s under a put load (c=64, {l['ops_per_sec']:.0f} writes/s): "
                   f"{s['polls']} member-list polls, suspect (observer, member) pairs: {s['suspect_pairs']}, dead pairs: {s['dead_pairs']} {s['dead_examples'] or ''}")
    if r["kind"] == "per_client":
        c = r["result"]
        out.append(f"Per client agent, {r['size']} agents ({c['clients']} clients): RSS {c['rss_mb_avg']} MB avg / {c['rss_mb_max']} MB max, "
                   f"CPU {c['cpu_pct_avg']}% avg / {c['cpu_pct_max']}% max of one core, gossip {c['gossip_bytes_per_s_avg']} B/s avg / {c['gossip_bytes_per_s_max']} B/s max (sent + received)")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
