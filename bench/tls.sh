#!/usr/bin/env bash
# What security at the edge costs: a single-node conclave over plain HTTP, over mutual TLS,
# and over mutual TLS with ACLs (every request carries a token checked against its policy),
# and a single-node etcd with client and peer TLS (client certificates required), driven by
# the same load generator (one keep-alive connection per client, TLS session set up once per
# connection as any pooled client does), in the same run, on the same loopback and disk.
#
#   bash bench/tls.sh                  # ≈ 3 min, writes bench/tls-results.md
#   POINT_SECONDS=2 bash bench/tls.sh  # quicker
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

POINT_SECONDS=${POINT_SECONDS:-5}
ROUNDS=${ROUNDS:-2}
OUT_JSON=bench/tls-results.jsonl
OUT_MD=bench/tls-results.md

source bench/prepare.sh

WORK=$(mktemp -d "$PWD/target/bench-work.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PKI="$WORK/tls"
"$BIN" tls ca create --dir "$PKI" >/dev/null
"$BIN" tls cert create --dir "$PKI" --name server --ip 127.0.0.1 >/dev/null
"$BIN" tls cert create --dir "$PKI" --name client >/dev/null
CURL_TLS=(--cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client-key.pem")
LOAD_TLS=(--ca-file "$PKI/ca.pem" --cert-file "$PKI/client.pem" --key-file "$PKI/client-key.pem")

PLAIN=127.0.0.1:17400
SECURE=127.0.0.1:17410
ACL=127.0.0.1:17420
ETCD=127.0.0.1:12379
"$BIN" agent --data-dir "$WORK/plain" --http-addr $PLAIN --rpc-addr 127.0.0.1:17401 --log-level warn \
  >"$WORK/plain.log" 2>&1 &
PIDS+=("$!")
"$BIN" agent --data-dir "$WORK/secure" --http-addr $SECURE --rpc-addr 127.0.0.1:17411 --log-level warn \
  --tls-ca-file "$PKI/ca.pem" --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server-key.pem" \
  >"$WORK/secure.log" 2>&1 &
PIDS+=("$!")
CONCLAVE_ACL__ENABLED=true "$BIN" agent --data-dir "$WORK/acl" --http-addr $ACL --rpc-addr 127.0.0.1:17421 \
  --log-level warn --tls-ca-file "$PKI/ca.pem" --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server-key.pem" \
  >"$WORK/acl.log" 2>&1 &
PIDS+=("$!")
etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "https://$ETCD" --advertise-client-urls "https://$ETCD" \
  --cert-file "$PKI/server.pem" --key-file "$PKI/server-key.pem" \
  --client-cert-auth --trusted-ca-file "$PKI/ca.pem" \
  --listen-peer-urls https://127.0.0.1:12380 --initial-advertise-peer-urls https://127.0.0.1:12380 \
  --peer-cert-file "$PKI/server.pem" --peer-key-file "$PKI/server-key.pem" \
  --peer-client-cert-auth --peer-trusted-ca-file "$PKI/ca.pem" \
  --initial-cluster bench=https://127.0.0.1:12380 --log-level warn >"$WORK/etcd.log" 2>&1 &
PIDS+=("$!")
wait_ok curl -sf "http://$PLAIN/v1/health"
wait_ok curl -sf "${CURL_TLS[@]}" "https://$SECURE/v1/health"
wait_ok curl -sf "${CURL_TLS[@]}" "https://$ETCD/health"
wait_ok curl -sf "${CURL_TLS[@]}" "https://$ACL/v1/health"
# A token that may read and write the benchmark's keys only (not the management token).
MGMT=$("$BIN" acl bootstrap -o json --addr "https://$ACL" --ca-file "$PKI/ca.pem" --cert-file "$PKI/client.pem" \
  --key-file "$PKI/client-key.pem" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_id"])')
ACLCLI=(--addr "https://$ACL" --ca-file "$PKI/ca.pem" --cert-file "$PKI/client.pem" --key-file "$PKI/client-key.pem")
CONCLAVE_TOKEN=$MGMT "$BIN" acl policy put bench --rule kv:bench/:write "${ACLCLI[@]}" >/dev/null
TOKEN=$(CONCLAVE_TOKEN=$MGMT "$BIN" acl token create --policy bench -o json "${ACLCLI[@]}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_id"])')
sleep 1

: >"$OUT_JSON"
point() { # label system addr op extra...
  local label=$1 system=$2 addr=$3 op=$4; shift 4
  "$BENCH" load --system "$system" --addr "$addr" --op "$op" -c 64 --seconds "$POINT_SECONDS" "$@" |
    python3 -c "import json,sys; r=json.load(sys.stdin); r['setup']='$label'; print(json.dumps(r))" >>"$OUT_JSON"
}
for _ in $(seq 1 "$ROUNDS"); do
  for op in put get; do
    point "conclave plain" conclave $PLAIN $op
    point "conclave mTLS" conclave $SECURE $op "${LOAD_TLS[@]}"
    point "conclave mTLS+ACL" conclave $ACL $op "${LOAD_TLS[@]}" --token "$TOKEN"
    point "etcd mTLS" etcd $ETCD $op "${LOAD_TLS[@]}"
  done
done

python3 - "$OUT_JSON" "$OUT_MD" <<'PY'
import json, sys, subprocess, platform, statistics
src, dst = sys.argv[1:3]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
out = [f"commit `{commit}` · {cpu} · {nproc} cores · kernel {platform.release()} · c=64, one keep-alive connection per client", ""]
out.append("| op | setup | ops/s (median of rounds) | p50 / p99 µs | errors | vs conclave plain | conclave mTLS+ACL vs this |")
out.append("|---|---|---:|---|---:|---:|---:|")
def med(op, setup):
    rs = [r for r in rows if r["op"] == op and r["setup"] == setup]
    return statistics.median(r["ops_per_sec"] for r in rs), rs[-1]
for op in ["put", "get"]:
    plain, _ = med(op, "conclave plain")
    secure, _ = med(op, "conclave mTLS+ACL")
    for setup in ["conclave plain", "conclave mTLS", "conclave mTLS+ACL", "etcd mTLS"]:
        ops, last = med(op, setup)
        errors = sum(r["errors"] for r in rows if r["op"] == op and r["setup"] == setup)
        vs_plain = f"{(ops / plain - 1) * 100:+.1f} %"
        vs_this = f"{secure / ops:.2f}×"
        out.append(f"| {op} | {setup} | {ops:.0f} | {last['p50_us']} / {last['p99_us']} | {errors} | {vs_plain} | {vs_this} |")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
