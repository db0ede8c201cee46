#!/usr/bin/env bash
# Leadership handover under a write load, conclave vs etcd (Debian's etcd-server and
# etcd-client, default timings), each as 3 nodes on loopback (release build):
#   while CONCURRENCY writers put through all three nodes, leadership is moved TRIALS times
#   (`conclave leader transfer --to N`, `etcdctl move-leader N`), one every SPACING seconds;
#   per handover: wall time of the command, the term it moved by (1 = one election);
#   for the load: writes ok, failed, p99.9 and max latency.
#
#   bash bench/handover.sh            # ≈ 1 min, writes bench/handover-results.md
#   TRIALS=5 bash bench/handover.sh
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIALS=${TRIALS:-10}
SPACING=${SPACING:-1.5}
CONCURRENCY=${CONCURRENCY:-16}
OUT_MD=bench/handover-results.md

source bench/prepare.sh
if ! command -v etcdctl >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client) >/dev/null
fi

WORK=$(mktemp -d "$PWD/target/bench-handover.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

http() { echo "127.0.0.1:$((19400 + 10 * $1))"; }
rpc() { echo "127.0.0.1:$((19401 + 10 * $1))"; }
ALL="$(http 1),$(http 2),$(http 3)"
LOAD_SECONDS=$(python3 -c "print($TRIALS * $SPACING + 3)")

now_ms() { date +%s%3N; }

# conclave -------------------------------------------------------------------------------
MEMBERS="1=$(rpc 1),2=$(rpc 2),3=$(rpc 3)"
for n in 1 2 3; do
  "$BIN" agent --data-dir "$WORK/c$n" --http-addr "$(http "$n")" --rpc-addr "$(rpc "$n")" \
    --initial-members "$MEMBERS" --log-level warn >>"$WORK/c$n.log" 2>&1 &
  PIDS+=($!)
done
for n in 1 2 3; do wait_ok curl -sf "http://$(http "$n")/v1/health"; done
ADDRS="http://$(http 1),http://$(http 2),http://$(http 3)"
"$BENCH" load --system conclave --addr "$ALL" --op put -c "$CONCURRENCY" \
  --seconds "$LOAD_SECONDS" >"$WORK/conclave-load.json" &
LOAD=$!
sleep 1.5
: >"$WORK/conclave-trials"
for t in $(seq 1 "$TRIALS"); do
  st=$(curl -sf "http://$(http 1)/v1/status")
  leader=$(jq -r .leader_id <<<"$st"); term=$(jq -r .term <<<"$st")
  to=$(( leader % 3 + 1 ))
  s=$(now_ms)
  out=$("$BIN" leader transfer --to "$to" --addr "$ADDRS" -o json)
  e=$(now_ms)
  echo "$((e - s)) $(( $(jq -r .term <<<"$out") - term ))" >>"$WORK/conclave-trials"
  sleep "$SPACING"
done
wait "$LOAD"
# etcd takes the same ports.
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()

# etcd -----------------------------------------------------------------------------------
CLUSTER="e1=http://$(rpc 1),e2=http://$(rpc 2),e3=http://$(rpc 3)"
for n in 1 2 3; do
  etcd --name "e$n" --data-dir "$WORK/e$n" --listen-client-urls "http://$(http "$n")" \
    --advertise-client-urls "http://$(http "$n")" --listen-peer-urls "http://$(rpc "$n")" \
    --initial-advertise-peer-urls "http://$(rpc "$n")" --initial-cluster "$CLUSTER" \
    --initial-cluster-state new --log-level error >>"$WORK/e$n.log" 2>&1 &
  PIDS+=($!)
done
for n in 1 2 3; do wait_ok curl -sf "http://$(http "$n")/health"; done
export ETCDCTL_API=3
"$BENCH" load --system etcd --addr "$ALL" --op put -c "$CONCURRENCY" \
  --seconds "$LOAD_SECONDS" >"$WORK/etcd-load.json" &
LOAD=$!
sleep 1.5
: >"$WORK/etcd-trials"
for t in $(seq 1 "$TRIALS"); do
  # Member ids are 64-bit: jq's doubles would round them, so Python picks them out.
  read -r leader_ep to_hex term < <(etcdctl --endpoints "$ALL" endpoint status -w json | python3 -c '
import json, sys
st = json.load(sys.stdin)
leader = st[0]["Status"]["leader"]
ep = next(s["Endpoint"] for s in st if s["Status"]["header"]["member_id"] == leader)
to = next(s["Status"]["header"]["member_id"] for s in st if s["Status"]["header"]["member_id"] != leader)
print(ep, format(to, "x"), st[0]["Status"]["raftTerm"])')
  s=$(now_ms)
  etcdctl --endpoints "$leader_ep" move-leader "$to_hex" >/dev/null
  e=$(now_ms)
  after=$(etcdctl --endpoints "$ALL" endpoint status -w json | jq -r '.[0].Status.raftTerm')
  echo "$((e - s)) $((after - term))" >>"$WORK/etcd-trials"
  sleep "$SPACING"
done
wait "$LOAD"

# results --------------------------------------------------------------------------------
python3 - "$WORK" "$TRIALS" "$CONCURRENCY" >"$OUT_MD" <<'PY'
import json, statistics, sys
work, trials, conc = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"# Leadership handover under a c={conc} write load (3 nodes, loopback, {trials} handovers each)\n")
print("| system | handover median ms | max ms | terms per handover | writes ok | writes failed | put p99.9 ms | put max ms |")
print("|---|---|---|---|---|---|---|---|")
for s in ("conclave", "etcd"):
    rows = [tuple(map(int, l.split())) for l in open(f"{work}/{s}-trials") if l.strip()]
    ms = [r[0] for r in rows]
    terms = sorted({r[1] for r in rows})
    load = json.loads(open(f"{work}/{s}-load.json").read())
    print(f"| {s} | {statistics.median(ms):.0f} | {max(ms)} | {', '.join(map(str, terms))} | "
          f"{load['ops']} | {load['errors']} | {load['p999_us']/1000:.1f} | {load['max_us']/1000:.1f} |")
print("\nHandover time is the wall time of the CLI command (`conclave leader transfer --to N`, "
      "`etcdctl move-leader N` against the leader), process start included.")
PY
cat "$OUT_MD"
