#!/usr/bin/env bash
# Side-by-side benchmark: a single-node conclave and a single-node etcd (Debian's etcd-server,
# default settings apart from loopback ports and a fresh data dir), driven by the same load
# generator over HTTP/1.1 keep-alive, in the same run, on the same disk.
#
#   bash bench/run.sh                 # full run (≈ 3 min), writes bench/results.md
#   POINT_SECONDS=2 bash bench/run.sh # quicker
#
# Every process it starts is stopped by PID on exit; nothing listens beyond loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

POINT_SECONDS=${POINT_SECONDS:-5}
CONCURRENCY=${CONCURRENCY:-"1 16 64 256"}
OUT_JSON=bench/results.jsonl
OUT_MD=bench/results.md

source bench/prepare.sh

WORK=$(mktemp -d "$PWD/target/bench-work.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() { # url
  for _ in $(seq 1 200); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not up: $1" >&2; return 1
}

C_HTTP=127.0.0.1:17400
E_HTTP=127.0.0.1:12379
"$BIN" agent --data-dir "$WORK/conclave" --http-addr $C_HTTP --rpc-addr 127.0.0.1:17401 --log-level warn \
  >"$WORK/conclave.log" 2>&1 &
C_PID=$!; PIDS+=("$C_PID")
etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://$E_HTTP" --advertise-client-urls "http://$E_HTTP" \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster bench=http://127.0.0.1:12380 --log-level warn >"$WORK/etcd.log" 2>&1 &
E_PID=$!; PIDS+=("$E_PID")
wait_http "http://$C_HTTP/v1/health"
wait_http "http://$E_HTTP/health"
sleep 2
rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
C_IDLE=$(rss_kb "$C_PID"); E_IDLE=$(rss_kb "$E_PID")

: >"$OUT_JSON"
status_field() { curl -sf "http://$C_HTTP/v1/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['storage']['$1'])"; }
WPF=""
for op in put get stale-get; do
  for c in $CONCURRENCY; do
    if [ "$op" = put ] && [ "$c" = 64 ]; then
      f0=$(status_field log_fsyncs); w0=$(status_field commands_proposed)
    fi
    "$BENCH" load --system conclave --addr $C_HTTP --op $op -c "$c" --seconds "$POINT_SECONDS" >>"$OUT_JSON"
    if [ "$op" = put ] && [ "$c" = 64 ]; then
      f1=$(status_field log_fsyncs); w1=$(status_field commands_proposed)
      WPF=$(python3 -c "print(round(($w1-$w0)/max(1,$f1-$f0),1))")
    fi
    "$BENCH" load --system etcd --addr $E_HTTP --op $op -c "$c" --seconds "$POINT_SECONDS" >>"$OUT_JSON"
  done
done
C_LOAD=$(rss_kb "$C_PID"); E_LOAD=$(rss_kb "$E_PID")
FSYNC=$("$BENCH" fsync --dir "$WORK/probe")

python3 - "$OUT_JSON" "$OUT_MD" "$C_IDLE" "$E_IDLE" "$C_LOAD" "$E_LOAD" "$WPF" "$FSYNC" <<'PY'
import json, sys, subprocess, platform
src, dst, c_idle, e_idle, c_load, e_load, wpf, fsync = sys.argv[1:9]
rows = [json.loads(l) for l in open(src) if l.strip()]
fs = json.loads(fsync)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
out = []
out.append(f"commit `{commit}` · {cpu} · {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores · kernel {platform.release()}")
out.append("")
out.append(f"Disk ceiling: {fs['ops_per_sec']:.0f} fsyncs/s (4 KiB write + fdatasync, one thread; p50 {fs['p50_us']} µs, p99 {fs['p99_us']} µs)")
out.append("")
out.append("| op | c | conclave ops/s | etcd ops/s | ratio | conclave p50/p99/p999 µs | etcd p50/p99/p999 µs | errors c/e |")
out.append("|---|---:|---:|---:|---:|---|---|---|")
by = {(r["system"], r["op"], r["concurrency"]): r for r in rows}
for (sysname, op, c), r in sorted(by.items(), key=lambda kv: (["put","get","staleget"].index(kv[0][1]), kv[0][2])):
    if sysname != "conclave": continue
    e = by.get(("etcd", op, c))
    if not e: continue
    ratio = r["ops_per_sec"] / e["ops_per_sec"] if e["ops_per_sec"] else float("inf")
    out.append(f"| {op} | {c} | {r['ops_per_sec']:.0f} | {e['ops_per_sec']:.0f} | {ratio:.2f}× | {r['p50_us']}/{r['p99_us']}/{r['p999_us']} | {e['p50_us']}/{e['p99_us']}/{e['p999_us']} | {r['errors']}/{e['errors']} |")
out.append("")
out.append(f"Writes per fsync (conclave, put at c=64): {wpf}")
out.append(f"RSS idle: conclave {int(c_idle)/1024:.1f} MB, etcd {int(e_idle)/1024:.1f} MB · after the run: conclave {int(c_load)/1024:.1f} MB, etcd {int(e_load)/1024:.1f} MB")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
