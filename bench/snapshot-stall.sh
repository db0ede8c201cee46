#!/usr/bin/env bash
# How long a snapshot stalls writes: a single agent holding a ~50 MB state (50,000 keys of
# 1,000 bytes) takes a snapshot every 1,000 log entries while one client writes in a loop;
# the slowest write of the run is the longest stall. Prints one JSON line per run and
# appends it to bench/snapshot-stall-results.jsonl with the commit.
#
#   bash bench/snapshot-stall.sh           # ≈ 1 min after the build
#   VARIANT="a note" bash bench/snapshot-stall.sh   # labels the result line
#
# Everything it starts is stopped by PID on exit; it listens on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
WORK=$(mktemp -d "$PWD/target/bench-stall.XXXXXX")
HTTP=127.0.0.1:17700
cleanup() { [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
CONCLAVE_RAFT__SNAPSHOT_THRESHOLD=1000 "$BIN" agent --data-dir "$WORK/d" --http-addr "$HTTP" \
  --rpc-addr 127.0.0.1:17701 --log-level warn >"$WORK/agent.log" 2>&1 &
APID=$!
wait_ok curl -sf "http://$HTTP/v1/health"
# Fill: every one of the 50,000 keys written at least once (c=32, group commit).
"$BENCH" load --system conclave --addr "$HTTP" --op put -c 32 --seconds 10 --keys 50000 --value-size 1000 >/dev/null
STATE_KEYS=$(curl -sf "http://$HTTP/v1/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['storage']['keys'])")
SNAPS_BEFORE=$(ls "$WORK/d/snapshots" | wc -l)
# Measure: one writer, one log entry per write, a snapshot of the whole state every 1,000.
"$BENCH" load --system conclave --addr "$HTTP" --op put -c 1 --seconds 15 --keys 1000 --value-size 100 >"$WORK/run.json"
SNAP_BYTES=$(stat -c %s "$WORK"/d/snapshots/* 2>/dev/null | sort -n | tail -1)
python3 - "$WORK/run.json" "$STATE_KEYS" "${SNAP_BYTES:-0}" <<'PY' | tee -a bench/snapshot-stall-results.jsonl
import json, sys, subprocess
r = json.load(open(sys.argv[1]))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "crates"], capture_output=True, text=True).stdout.strip() != ""
import os
print(json.dumps({"commit": commit + ("+changes" if dirty else ""), "variant": os.environ.get("VARIANT", ""), "state_keys": int(sys.argv[2]),
                  "snapshot_bytes": int(sys.argv[3]), "writes": r["ops"], "ops_per_sec": round(r["ops_per_sec"]),
                  "p50_us": r["p50_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"], "max_us": r["max_us"]}))
PY
