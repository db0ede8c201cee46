#!/usr/bin/env bash
# Side-by-side benchmark of a 3-node conclave and a 3-node etcd (Debian's etcd-server, default
# timings) on loopback, driven by the same load generator in the same run:
#   - writes at c=1/16/64/256 with clients spread over all nodes, and pinned to a follower;
#   - linearizable and stale reads at c=64, spread;
#   - failover: kill -9 the leader -> first acknowledged write through a survivor, TRIALS
#     times each (the killed node is restarted and rejoins between trials);
#   - RSS per node idle and peak (VmHWM) under load.
#
#   bash bench/cluster.sh                   # full run (≈ 6 min), writes bench/cluster-results.md
#   POINT_SECONDS=2 TRIALS=3 bash bench/cluster.sh
#   PEER_SECURITY=1 bash bench/cluster.sh   # conclave with a cluster token, etcd with peer
#                                           # mTLS (a CA made here with openssl); writes
#                                           # bench/cluster-results-secure.md
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

POINT_SECONDS=${POINT_SECONDS:-5}
TRIALS=${TRIALS:-10}
export PEER_SECURITY=${PEER_SECURITY:-0}
if [ "$PEER_SECURITY" = 1 ]; then
  OUT_JSON=bench/cluster-results-secure.jsonl
  OUT_MD=bench/cluster-results-secure.md
else
  OUT_JSON=bench/cluster-results.jsonl
  OUT_MD=bench/cluster-results.md
fi

source bench/prepare.sh

WORK=$(mktemp -d "$PWD/target/bench-cluster.XXXXXX")
declare -A CPID EPID
cleanup() {
  for p in "${CPID[@]}" "${EPID[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CPID[@]}" "${EPID[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

c_http() { echo "127.0.0.1:$((17400 + 10 * $1))"; }
c_rpc() { echo "127.0.0.1:$((17401 + 10 * $1))"; }
e_http() { echo "127.0.0.1:$((12379 + 10 * $1))"; }
e_peer() { echo "127.0.0.1:$((12380 + 10 * $1))"; }
MEMBERS="1=$(c_rpc 1),2=$(c_rpc 2),3=$(c_rpc 3)"
PEER_SCHEME=http
ETCD_PEER_TLS=()
if [ "$PEER_SECURITY" = 1 ]; then
  # conclave: node RPC authenticated and sealed with the token. etcd: peer traffic over
  # mutual TLS with certificates from a CA made for this run (IP SAN 127.0.0.1).
  export CONCLAVE_CLUSTER_TOKEN=bench-peer-secret
  PEER_SCHEME=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=etcd-peer \
    -keyout "$WORK/peer.key" -out "$WORK/peer.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$WORK/peer.ext"
  openssl x509 -req -in "$WORK/peer.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -extfile "$WORK/peer.ext" -out "$WORK/peer.crt" 2>/dev/null
  ETCD_PEER_TLS=(--peer-cert-file "$WORK/peer.crt" --peer-key-file "$WORK/peer.key"
    --peer-trusted-ca-file "$WORK/ca.crt" --peer-client-cert-auth)
fi
E_CLUSTER="e1=$PEER_SCHEME://$(e_peer 1),e2=$PEER_SCHEME://$(e_peer 2),e3=$PEER_SCHEME://$(e_peer 3)"

start_conclave() { # n
  "$BIN" agent --data-dir "$WORK/c$1" --http-addr "$(c_http "$1")" --rpc-addr "$(c_rpc "$1")" \
    --initial-members "$MEMBERS" --log-level warn >>"$WORK/c$1.log" 2>&1 &
  CPID[$1]=$!
}
start_etcd() { # n
  etcd --name "e$1" --data-dir "$WORK/e$1" \
    --listen-client-urls "http://$(e_http "$1")" --advertise-client-urls "http://$(e_http "$1")" \
    --listen-peer-urls "$PEER_SCHEME://$(e_peer "$1")" --initial-advertise-peer-urls "$PEER_SCHEME://$(e_peer "$1")" \
    "${ETCD_PEER_TLS[@]}" \
    --initial-cluster "$E_CLUSTER" --initial-cluster-state new --initial-cluster-token bench \
    --log-level warn >>"$WORK/e$1.log" 2>&1 &
  EPID[$1]=$!
}

# The node number (1-3) that leads, as every live node agrees, or nothing.
conclave_leader() {
  local ids=""
  for n in 1 2 3; do
    ids+=$(curl -sf -m 1 "http://$(c_http "$n")/v1/status" \
      | python3 -c "import json,sys; print(json.load(sys.stdin).get('leader_id') or '')" 2>/dev/null || true)
    ids+=" "
  done
  python3 -c "import sys; s=set(sys.argv[1].split()); print(s.pop() if len(s)==1 and len(sys.argv[1].split())==3 else '')" "$ids"
}
etcd_leader() {
  local out=""
  for n in 1 2 3; do
    out+=$(curl -sf -m 1 -X POST "http://$(e_http "$n")/v3/maintenance/status" -d '{}' \
      | python3 -c "import json,sys; s=json.load(sys.stdin); print('$n' if s['header']['member_id']==s['leader'] else '')" 2>/dev/null || true)
  done
  echo "$out"
}
healthy_conclave() { [ -n "$(conclave_leader)" ] && for n in 1 2 3; do curl -sf -m 1 "http://$(c_http "$n")/v1/health" || return 1; done; }
healthy_etcd() { [ -n "$(etcd_leader)" ] && for n in 1 2 3; do curl -sf -m 1 "http://$(e_http "$n")/health" | grep -q '"true"' || return 1; done; }

for n in 1 2 3; do start_conclave "$n"; start_etcd "$n"; done
wait_ok healthy_conclave
wait_ok healthy_etcd
sleep 2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
sum_rss() { local t=0; for p in "$@"; do t=$((t + $(rss_kb "$p"))); done; echo $t; }
max_hwm() { local m=0 v; for p in "$@"; do v=$(hwm_kb "$p"); [ "$v" -gt "$m" ] && m=$v; done; echo $m; }
C_IDLE=$(sum_rss "${CPID[@]}"); E_IDLE=$(sum_rss "${EPID[@]}")

CL=$(conclave_leader); EL=$(etcd_leader)
C_FOLLOWER=$(( CL % 3 + 1 )); E_FOLLOWER=$(( EL % 3 + 1 ))
C_ALL="$(c_http 1),$(c_http 2),$(c_http 3)"
E_ALL="$(e_http 1),$(e_http 2),$(e_http 3)"
echo "conclave leader: node $CL (pinned follower: $C_FOLLOWER); etcd leader: e$EL (pinned follower: e$E_FOLLOWER)" >&2

: >"$OUT_JSON"
point() { # placement op c
  local c_addr e_addr
  if [ "$1" = spread ]; then c_addr=$C_ALL; e_addr=$E_ALL; else c_addr=$(c_http "$C_FOLLOWER"); e_addr=$(e_http "$E_FOLLOWER"); fi
  for sys in conclave etcd; do
    local addr=$c_addr; [ $sys = etcd ] && addr=$e_addr
    "$BENCH" load --system $sys --addr "$addr" --op "$2" -c "$3" --seconds "$POINT_SECONDS" \
      | python3 -c "import json,sys; r=json.load(sys.stdin); r['placement']='$1'; print(json.dumps(r))" >>"$OUT_JSON"
  done
}
for c in 1 16 64 256; do point spread put "$c"; done
for c in 1 16 64 256; do point follower put "$c"; done
point spread get 64
point spread stale-get 64
C_PEAK=$(max_hwm "${CPID[@]}"); E_PEAK=$(max_hwm "${EPID[@]}")

# Failover trials: kill -9 the leader, time the first acknowledged write through the others,
# restart the killed node and wait until all three agree on a leader again.
FAIL_JSON=$WORK/failover.jsonl
: >"$FAIL_JSON"
for sys in conclave etcd; do
  for t in $(seq 1 "$TRIALS"); do
    if [ $sys = conclave ]; then
      wait_ok healthy_conclave; L=$(conclave_leader); pid=${CPID[$L]}
      survivors=$(for n in 1 2 3; do [ "$n" = "$L" ] || printf '%s,' "$(c_http "$n")"; done)
    else
      wait_ok healthy_etcd; L=$(etcd_leader); pid=${EPID[$L]}
      survivors=$(for n in 1 2 3; do [ "$n" = "$L" ] || printf '%s,' "$(e_http "$n")"; done)
    fi
    sleep 1 # let the leader settle into steady heartbeats
    "$BENCH" failover --system $sys --kill-pid "$pid" --addr "$survivors" >>"$FAIL_JSON"
    { wait "$pid"; } 2>/dev/null || true
    if [ $sys = conclave ]; then start_conclave "$L"; else start_etcd "$L"; fi
    echo "$sys trial $t: $(tail -n1 "$FAIL_JSON")" >&2
  done
done
wait_ok healthy_conclave
wait_ok healthy_etcd
cat "$FAIL_JSON" >>"$OUT_JSON"

python3 - "$OUT_JSON" "$OUT_MD" "$C_IDLE" "$E_IDLE" "$C_PEAK" "$E_PEAK" <<'PY'
import json, sys, subprocess, platform, statistics
src, dst, c_idle, e_idle, c_peak, e_peak = sys.argv[1:7]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
import os
peers = "peer traffic secured: conclave with a cluster token (sealed node RPC), etcd with peer mTLS" if os.environ.get("PEER_SECURITY") == "1" else "peer traffic: conclave without a token, etcd plain http"
out = [f"commit `{commit}` · {cpu} · {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores · kernel {platform.release()} · 3 nodes each on loopback · {peers}", ""]
out.append("| op | clients on | c | conclave ops/s | etcd ops/s | ratio | conclave p50/p99/p999 µs | etcd p50/p99/p999 µs | errors c/e |")
out.append("|---|---|---:|---:|---:|---:|---|---|---|")
loads = [r for r in rows if "op" in r]
by = {(r["system"], r["placement"], r["op"], r["concurrency"]): r for r in loads}
for r in loads:
    if r["system"] != "conclave": continue
    e = by.get(("etcd", r["placement"], r["op"], r["concurrency"]))
    ratio = r["ops_per_sec"] / e["ops_per_sec"] if e["ops_per_sec"] else float("inf")
    where = "all 3 nodes" if r["placement"] == "spread" else "a follower"
    out.append(f"| {r['op']} | {where} | {r['concurrency']} | {r['ops_per_sec']:.0f} | {e['ops_per_sec']:.0f} | {ratio:.2f}× | {r['p50_us']}/{r['p99_us']}/{r['p999_us']} | {e['p50_us']}/{e['p99_us']}/{e['p999_us']} | {r['errors']}/{e['errors']} |")
out.append("")
out.append("Failover (kill -9 the leader → first acknowledged write through a survivor), ms:")
out.append("")
out.append("| system | trials | median | max | min | all |")
out.append("|---|---:|---:|---:|---:|---|")
for s in ("conclave", "etcd"):
    f = [r["failover_ms"] for r in rows if r.get("system") == s and "failover_ms" in r]
    if f:
        out.append(f"| {s} | {len(f)} | {statistics.median(f):.0f} | {max(f):.0f} | {min(f):.0f} | {' '.join(f'{x:.0f}' for x in f)} |")
out.append("")
out.append(f"RSS, sum of 3 nodes idle: conclave {int(c_idle)/1024:.1f} MB, etcd {int(e_idle)/1024:.1f} MB · "
           f"peak of the largest node under load (VmHWM): conclave {int(c_peak)/1024:.1f} MB, etcd {int(e_peak)/1024:.1f} MB")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
