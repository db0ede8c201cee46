#!/usr/bin/env bash
# Coordination benchmarks on a 3-node conclave cluster on loopback (release build):
#   - watch fan-out: WATCHERS concurrent SSE watchers on one prefix (spread over the three
#     nodes, then all on one node) while a writer puts timestamped values at RATE/s:
#     delivery latency p50/p99/max, events delivered, agent RSS with the watchers attached;
#   - role failover: every node declares a role (ttl ROLE_TTL); kill -9 the holder, time
#     until another node's on_acquire hook runs, TRIALS times (the killed node restarts and
#     rejoins between trials); then the same with SIGTERM (the holder releases and resigns).
#
#   bash bench/coordination.sh              # ≈ 4 min, writes bench/coordination-results.md
#   WATCHERS=200 TRIALS=3 bash bench/coordination.sh
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

WATCHERS=${WATCHERS:-1000}
RATE=${RATE:-100}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-20}
TRIALS=${TRIALS:-10}
ROLE_TTL=${ROLE_TTL:-3s}
OUT_JSON=bench/coordination-results.jsonl
OUT_MD=bench/coordination-results.md

cargo build --release -q -p conclave -p conclave-bench
BIN=target/release/conclave
BENCH=target/release/conclave-bench
# 1,000 watchers hold 1,000 sockets on each side.
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d "$PWD/target/bench-coord.XXXXXX")
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK" "$OUT_JSON.keep"
}
trap cleanup EXIT

http() { echo "127.0.0.1:$((18400 + 10 * $1))"; }
rpc() { echo "127.0.0.1:$((18401 + 10 * $1))"; }
MEMBERS="1=$(rpc 1),2=$(rpc 2),3=$(rpc 3)"

for n in 1 2 3; do
  cat >"$WORK/agent-$n.toml" <<TOML
[[roles]]
name = "bench-gateway"
ttl = "$ROLE_TTL"
on_acquire = { exec = ["sh", "-c", "date +%s%N >> $WORK/acquired-$n"] }
TOML
done

start() { # n
  "$BIN" agent --data-dir "$WORK/d$1" --http-addr "$(http "$1")" --rpc-addr "$(rpc "$1")" \
    --initial-members "$MEMBERS" --log-level warn -c "$WORK/agent-$1.toml" >>"$WORK/n$1.log" 2>&1 &
  PID[$1]=$!
}
wait_ok() {
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}
healthy() { for n in 1 2 3; do curl -sf -m 1 "http://$(http "$n")/v1/health" || return 1; done; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

for n in 1 2 3; do start "$n"; done
wait_ok healthy
[ -f "$OUT_JSON" ] && cp "$OUT_JSON" "$OUT_JSON.keep"
: >"$OUT_JSON"

fanout() { # label addrs
  local before during
  before="$(rss_kb "${PID[1]}") $(rss_kb "${PID[2]}") $(rss_kb "${PID[3]}")"
  "$BENCH" sse-fanout --addr "$2" --watchers "$WATCHERS" --writes-per-sec "$RATE" \
    --seconds "$SECONDS_PER_POINT" >"$WORK/fanout.json" &
  local bench=$!
  sleep $((SECONDS_PER_POINT / 2 + 5))
  during="$(rss_kb "${PID[1]}") $(rss_kb "${PID[2]}") $(rss_kb "${PID[3]}")"
  wait "$bench"
  python3 - "$1" "$before" "$during" "$WORK/fanout.json" >>"$OUT_JSON" <<'PY'
import json, sys
label, before, during, path = sys.argv[1:]
r = json.load(open(path))
r.update(label=label, rss_before_mb=[round(int(k)/1024, 1) for k in before.split()],
         rss_during_mb=[round(int(k)/1024, 1) for k in during.split()])
print(json.dumps(r))
PY
  tail -1 "$OUT_JSON"
}

if [ "${SKIP_FANOUT:-0}" = 1 ]; then
  grep '"watchers"' "$OUT_JSON.keep" >>"$OUT_JSON" 2>/dev/null || true
else
  fanout "spread over 3 nodes" "$(http 1),$(http 2),$(http 3)"
  fanout "all on one node" "$(http 2)"
fi

holder() { # node number holding the role, as the first node that answers sees it
  for n in 1 2 3; do
    local body
    body=$(curl -sf -m 1 "http://$(http "$n")/v1/roles/bench-gateway" 2>/dev/null) || continue
    python3 -c "
import json, sys
r = json.loads(sys.argv[1]); ids = sys.argv[2:]
print(ids.index(str(r['holder'])) + 1 if r.get('holder') is not None and str(r['holder']) in ids else '')" "$body" "${IDS[@]}"
    return
  done
}
has_holder() { [ -n "$(holder)" ]; }
IDS=()
for n in 1 2 3; do
  IDS+=("$(curl -sf "http://$(http "$n")/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')")
done
failover_trials() { # signal label
  local sig=$1 label=$2
  for trial in $(seq 1 "$TRIALS"); do
    wait_ok has_holder
    h=$(holder)
    others=()
    for n in 1 2 3; do [ "$n" != "$h" ] && others+=("$n"); done
    declare -A lines=()
    for n in "${others[@]}"; do lines[$n]=$( (wc -l <"$WORK/acquired-$n") 2>/dev/null || echo 0); done
    leader=$(curl -sf -m 1 "http://$(http "$h")/v1/status" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(str(s.get("leader_id")) == str(s["node_id"]))' || echo False)
    t0=$(date +%s%N)
    kill "-$sig" "${PID[$h]}"
    got=""
    for _ in $(seq 1 1500); do
      for n in "${others[@]}"; do
        now=$( (wc -l <"$WORK/acquired-$n") 2>/dev/null || echo 0)
        if [ "$now" -gt "${lines[$n]}" ]; then got=$(tail -1 "$WORK/acquired-$n"); break 2; fi
      done
      sleep 0.02
    done
    wait "${PID[$h]}" 2>/dev/null || true
    [ -n "$got" ] || { echo "trial $trial: no new holder" >&2; exit 1; }
    ms=$(( (got - t0) / 1000000 ))
    echo "{\"label\": \"$label\", \"trial\": $trial, \"ttl\": \"$ROLE_TTL\", \"holder_was_leader\": \"$leader\", \"ms\": $ms}" | tee -a "$OUT_JSON"
    start "$h"
    wait_ok healthy
    sleep 1   # the restarted node advertises its candidacy
  done
}
failover_trials KILL "role failover"
failover_trials TERM "role failover (sigterm)"

python3 - "$OUT_JSON" "$OUT_MD" "$WATCHERS" "$RATE" "$SECONDS_PER_POINT" "$ROLE_TTL" <<'PY'
import json, statistics, sys
src, dst, watchers, rate, secs, ttl = sys.argv[1:]
rows = [json.loads(l) for l in open(src)]
fan = [r for r in rows if "watchers" in r]
fail = [r["ms"] for r in rows if r.get("label") == "role failover"]
term = [r["ms"] for r in rows if r.get("label") == "role failover (sigterm)"]
def split(label):
    rs = [r for r in rows if r.get("label") == label]
    lead = [r["ms"] for r in rs if r.get("holder_was_leader") == "True"]
    follow = [r["ms"] for r in rs if r.get("holder_was_leader") != "True"]
    med = lambda v: f"{statistics.median(v):.0f} ms ({len(v)})" if v else "–"
    return f"holder a follower: median {med(follow)}; holder also the Raft leader: median {med(lead)}"
out = ["# Coordination benchmark", "",
       f"3-node conclave on loopback (release build), {watchers} SSE watchers on one prefix, "
       f"{rate} writes/s for {secs} s.", "",
       "| watchers | events delivered | delivery p50 | p99 | max | agent RSS before → with watchers (MB) |",
       "|---|---:|---:|---:|---:|---|"]
for r in fan:
    out.append(f"| {r['label']} | {r['received_events']:,} of {r['expected_events']:,} | "
               f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms | "
               f"{r['rss_before_mb']} → {r['rss_during_mb']} |")
if fail:
    out += ["", f"Role failover (ttl {ttl}): kill -9 the holder → another node's on_acquire runs, "
            f"{len(fail)} trials: median {statistics.median(fail):.0f} ms, "
            f"min {min(fail)} ms, max {max(fail)} ms.", "",
            "All trials (ms): " + ", ".join(str(f) for f in fail), "", split("role failover")]
if term:
    out += ["", f"Role failover (ttl {ttl}): SIGTERM the holder (it releases, then resigns; no on_release hook here) → "
            f"another node's on_acquire runs, {len(term)} trials: median {statistics.median(term):.0f} ms, "
            f"min {min(term)} ms, max {max(term)} ms.", "",
            "All trials (ms): " + ", ".join(str(f) for f in term), "", split("role failover (sigterm)")]
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
