#!/usr/bin/env bash
# IPAM allocations per second through a 3-node cluster's HTTP API, conclave side by side with
# the same allocation built on a 3-node etcd 3.4 (Debian's etcd-server, default timings) as a
# compare-and-swap transaction over a free-list key (see crates/conclave-bench/src/bin/
# ipam-load.rs for both), on loopback, clients spread over all nodes:
#   - c=1 and c=64, a new hostname per allocation, p50/p99;
#   - conclave again at c=64 with the network already holding FILL allocations (default
#     1,000,000): the latency must not depend on how full the network is.
#
#   bash bench/ipam.sh                       # writes bench/ipam-results.jsonl and .md
#   POINT_SECONDS=2 FILL=100000 bash bench/ipam.sh
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

POINT_SECONDS=${POINT_SECONDS:-5}
FILL=${FILL:-1000000}
OUT_JSON=bench/ipam-results.jsonl
OUT_MD=bench/ipam-results.md

source bench/prepare.sh
cargo build --release -q -p conclave-bench --bin ipam-load
LOAD=target/release/ipam-load

WORK=$(mktemp -d "$PWD/target/bench-ipam.XXXXXX")
declare -A CPID EPID
cleanup() {
  for p in "${CPID[@]}" "${EPID[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CPID[@]}" "${EPID[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

c_http() { echo "127.0.0.1:$((18400 + 10 * $1))"; }
c_rpc() { echo "127.0.0.1:$((18401 + 10 * $1))"; }
e_http() { echo "127.0.0.1:$((13379 + 10 * $1))"; }
e_peer() { echo "127.0.0.1:$((13380 + 10 * $1))"; }
MEMBERS="1=$(c_rpc 1),2=$(c_rpc 2),3=$(c_rpc 3)"
E_CLUSTER="e1=http://$(e_peer 1),e2=http://$(e_peer 2),e3=http://$(e_peer 3)"

for n in 1 2 3; do
  "$BIN" agent --data-dir "$WORK/c$n" --http-addr "$(c_http "$n")" --rpc-addr "$(c_rpc "$n")" \
    --initial-members "$MEMBERS" --log-level warn >>"$WORK/c$n.log" 2>&1 &
  CPID[$n]=$!
  etcd --name "e$n" --data-dir "$WORK/e$n" \
    --listen-client-urls "http://$(e_http "$n")" --advertise-client-urls "http://$(e_http "$n")" \
    --listen-peer-urls "http://$(e_peer "$n")" --initial-advertise-peer-urls "http://$(e_peer "$n")" \
    --initial-cluster "$E_CLUSTER" --initial-cluster-state new --initial-cluster-token bench-ipam \
    --log-level warn >>"$WORK/e$n.log" 2>&1 &
  EPID[$n]=$!
done
healthy_conclave() { for n in 1 2 3; do curl -sf -m 1 "http://$(c_http "$n")/v1/health" || return 1; done; }
healthy_etcd() { for n in 1 2 3; do curl -sf -m 1 "http://$(e_http "$n")/health" | grep -q '"true"' || return 1; done; }
wait_ok healthy_conclave
wait_ok healthy_etcd
sleep 2

C_ALL="$(c_http 1),$(c_http 2),$(c_http 3)"
E_ALL="$(e_http 1),$(e_http 2),$(e_http 3)"
"$LOAD" --system conclave --addr "$(c_http 1)" --setup --network empty
"$LOAD" --system etcd --addr "$(e_http 1)" --setup --network bench
: >"$OUT_JSON"
point() { # system addr network c label
  "$LOAD" --system "$1" --addr "$2" --network "$3" -c "$4" --seconds "$POINT_SECONDS" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['network_state']='$5'; print(json.dumps(r))" >>"$OUT_JSON"
  tail -n1 "$OUT_JSON" >&2
}
for c in 1 64; do
  point conclave "$C_ALL" empty "$c" "empty /8"
  point etcd "$E_ALL" bench "$c" "empty /8"
done
echo "filling a second conclave /8 with $FILL allocations" >&2
started=$(date +%s)
"$LOAD" --system conclave --addr "$(c_http 1)" --setup --network full --cidr 11.0.0.0/8 --fill "$FILL"
echo "filled in $(( $(date +%s) - started )) s" >&2
point conclave "$C_ALL" full 64 "/8 holding $FILL"
point conclave "$C_ALL" full 1 "/8 holding $FILL"

python3 - "$OUT_JSON" "$OUT_MD" <<'PY'
import json, sys, subprocess, platform
src, dst = sys.argv[1:3]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
out = [f"commit `{commit}` · {cpu} · {nproc} cores · kernel {platform.release()} · 3 nodes each on loopback, clients spread over all 3", ""]
out.append("| system | network | c | allocations/s | p50 µs | p99 µs | errors | CAS tries per allocation |")
out.append("|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    tries = r.get("cas_tries_per_allocation")
    out.append(f"| {r['system']} | {r['network_state']} | {r['concurrency']} | {r['ops_per_sec']:.0f} | {r['p50_us']} | {r['p99_us']} | {r['errors']} | {'' if tries is None else f'{tries:.2f}'} |")
by = {(r["system"], r["network_state"], r["concurrency"]): r for r in rows}
out.append("")
for c in (1, 64):
    a, b = by.get(("conclave", "empty /8", c)), by.get(("etcd", "empty /8", c))
    if a and b and b["ops_per_sec"]:
        out.append(f"- c={c}: conclave {a['ops_per_sec'] / b['ops_per_sec']:.1f}× etcd's allocations/s")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
