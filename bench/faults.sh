#!/usr/bin/env bash
# Write outage under faults that do not refuse a port, conclave vs etcd (Debian's
# etcd-server, default timings), each as 3 nodes on hosts in network namespaces this script
# creates (veth + bridge), measured the same way in the same run:
#   - leader isolated: iptables DROP between the leader's host and the others (clients can
#     still reach it);
#   - leader paused: SIGSTOP on the leader's process;
#   - leader host silent: iptables DROP of everything on the leader host's interface;
#   each TRIALS times: inject, time the first acknowledged write through a survivor
#   (conclave-bench failover --inject), heal, wait until all three are healthy again;
#   - quorum loss: kill -9 both followers, time how long one write to the leader takes to be
#     answered, and with what, at once and again 2 s later.
#
#   sudo bash bench/faults.sh                # ≈ 4 min, writes bench/faults-results.md
#   TRIALS=3 sudo bash bench/faults.sh
#
# Needs root. Every process it starts is stopped by PID, the namespaces, the bridge and its
# FORWARD rule are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-10}
OUT_JSON=bench/faults-results.jsonl
OUT_MD=bench/faults-results.md
[ "$(id -u)" = 0 ] || { echo "bench/faults.sh needs root (network namespaces)" >&2; exit 1; }
source bench/prepare.sh
export WAIT_SECONDS=60

WORK=$(mktemp -d "$PWD/target/bench-faults.XXXXXX")
TAG=$(( $$ % 10000 ))
BR=ccbf$TAG
SUB=10.214.$(( $$ % 250 ))
declare -A PID
ns() { echo "ccf${TAG}n$1"; }
ip_of() { echo "$SUB.$1"; }
cleanup() {
  for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in 1 2 3; do ip netns del "$(ns $n)" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  iptables -w -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip link add "$BR" type bridge
ip addr add "$SUB.254/24" dev "$BR"
ip link set "$BR" up
# Docker sets FORWARD to DROP and makes bridged frames pass through it.
iptables -w -I FORWARD -i "$BR" -o "$BR" -j ACCEPT
for n in 1 2 3; do
  ip netns add "$(ns $n)"
  ip link add "ccf${TAG}h$n" type veth peer name eth0 netns "$(ns $n)"
  ip link set "ccf${TAG}h$n" master "$BR"
  ip link set "ccf${TAG}h$n" up
  ip netns exec "$(ns $n)" ip addr add "$(ip_of $n)/24" dev eth0
  ip netns exec "$(ns $n)" ip link set eth0 up
  ip netns exec "$(ns $n)" ip link set lo up
done

export CONCLAVE_CLUSTER_TOKEN=bench-faults-token
MEMBERS="1=$(ip_of 1):7401,2=$(ip_of 2):7401,3=$(ip_of 3):7401"
E_CLUSTER="e1=http://$(ip_of 1):2380,e2=http://$(ip_of 2):2380,e3=http://$(ip_of 3):2380"
http_of() { # sys n
  if [ "$1" = conclave ]; then echo "$(ip_of "$2"):7400"; else echo "$(ip_of "$2"):2379"; fi
}
start() { # sys n
  local n=$2
  if [ "$1" = conclave ]; then
    ip netns exec "$(ns "$n")" "$BIN" agent --data-dir "$WORK/c$n" --http-addr "$(ip_of "$n"):7400" \
      --rpc-addr "$(ip_of "$n"):7401" --initial-members "$MEMBERS" --log-level warn --insecure >>"$WORK/c$n.log" 2>&1 &
  else
    ip netns exec "$(ns "$n")" etcd --name "e$n" --data-dir "$WORK/e$n" \
      --listen-client-urls "http://$(ip_of "$n"):2379" --advertise-client-urls "http://$(ip_of "$n"):2379" \
      --listen-peer-urls "http://$(ip_of "$n"):2380" --initial-advertise-peer-urls "http://$(ip_of "$n"):2380" \
      --initial-cluster "$E_CLUSTER" --initial-cluster-state new --initial-cluster-token bench \
      --log-level warn >>"$WORK/e$n.log" 2>&1 &
  fi
  PID[$1$n]=$!
}
stop_all() { # sys
  for n in 1 2 3; do kill -9 "${PID[$1$n]}" 2>/dev/null || true; wait "${PID[$1$n]}" 2>/dev/null || true; done
}
# The node (1-3) that leads, when every node agrees, else nothing.
leader() { # sys
  local out=""
  for n in 1 2 3; do
    if [ "$1" = conclave ]; then
      out+=$(curl -sf -m 1 "http://$(http_of conclave "$n")/v1/status" \
        | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['leader_id'] or '')" 2>/dev/null || true)
    else
      out+=$(curl -sf -m 1 -X POST "http://$(http_of etcd "$n")/v3/maintenance/status" -d '{}' \
        | python3 -c "import json,sys; s=json.load(sys.stdin); print('$n' if s['header']['member_id']==s['leader'] else '')" 2>/dev/null || true)
    fi
    out+=" "
  done
  if [ "$1" = conclave ]; then
    python3 -c "import sys; s=set(sys.argv[1].split()); print(s.pop() if len(s)==1 and len(sys.argv[1].split())==3 else '')" "$out"
  else
    echo "$out" | tr -d ' '
  fi
}
healthy() { # sys
  [ -n "$(leader "$1")" ] || return 1
  for n in 1 2 3; do
    if [ "$1" = conclave ]; then curl -sf -m 1 "http://$(http_of conclave "$n")/v1/health" >/dev/null || return 1
    else curl -sf -m 1 "http://$(http_of etcd "$n")/health" | grep -q '"true"' || return 1; fi
  done
}
inject_cmd() { # fault sys leader
  local l=$3 others="" cmd=""
  case $1 in
    isolated)
      for n in 1 2 3; do [ "$n" = "$l" ] && continue
        cmd+="ip netns exec $(ns "$l") iptables -w -A INPUT -s $(ip_of "$n") -j DROP; "
        cmd+="ip netns exec $(ns "$l") iptables -w -A OUTPUT -d $(ip_of "$n") -j DROP; "
      done ;;
    paused) cmd="kill -STOP ${PID[$2$l]}" ;;
    silent) cmd="ip netns exec $(ns "$l") iptables -w -A INPUT -i eth0 -j DROP; ip netns exec $(ns "$l") iptables -w -A OUTPUT -o eth0 -j DROP" ;;
  esac
  echo "$cmd"
}
heal() { # sys leader
  kill -CONT "${PID[$1$2]}" 2>/dev/null || true
  for n in 1 2 3; do ip netns exec "$(ns "$n")" iptables -w -F INPUT; ip netns exec "$(ns "$n")" iptables -w -F OUTPUT; done
}

: >"$OUT_JSON"
for sys in conclave etcd; do
  for n in 1 2 3; do start $sys $n; done
  wait_ok healthy $sys
  sleep 2
  for fault in isolated paused silent; do
    for t in $(seq 1 "$TRIALS"); do
      wait_ok healthy $sys
      L=$(leader $sys)
      survivors=$(for n in 1 2 3; do [ "$n" = "$L" ] || printf '%s,' "$(http_of $sys "$n")"; done)
      sleep 1 # steady heartbeats before the fault
      "$BENCH" failover --system $sys --inject "$(inject_cmd $fault $sys "$L")" --addr "$survivors" \
        | python3 -c "import json,sys; r=json.load(sys.stdin); r['fault']='$fault'; print(json.dumps(r))" >>"$OUT_JSON"
      echo "$sys $fault trial $t: $(tail -n1 "$OUT_JSON")" >&2
      sleep 0.5
      heal $sys "$L"
    done
  done
  # Quorum loss: both followers die; one write to the leader.
  wait_ok healthy $sys
  L=$(leader $sys)
  sleep 1
  for n in 1 2 3; do [ "$n" = "$L" ] || { kill -9 "${PID[$sys$n]}"; wait "${PID[$sys$n]}" 2>/dev/null || true; }; done
  "$BENCH" answer --system $sys --addr "$(http_of $sys "$L")" --timeout 60 \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['fault']='quorum-loss'; print(json.dumps(r))" >>"$OUT_JSON"
  echo "$sys quorum loss: $(tail -n1 "$OUT_JSON")" >&2
  sleep 2 # a write that arrives once the leader has been without its quorum for a while
  "$BENCH" answer --system $sys --addr "$(http_of $sys "$L")" --timeout 60 \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['fault']='quorum-loss-later'; print(json.dumps(r))" >>"$OUT_JSON"
  echo "$sys quorum loss, 2 s later: $(tail -n1 "$OUT_JSON")" >&2
  if [ $sys = conclave ]; then
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$(http_of conclave "$L")/v1/health" || true)
    echo "{\"system\": \"conclave\", \"fault\": \"quorum-loss-health\", \"http_code\": \"$code\"}" >>"$OUT_JSON"
  fi
  stop_all $sys
done

python3 - "$OUT_JSON" "$OUT_MD" <<'PY'
import json, sys, subprocess, platform, statistics
src, dst = sys.argv[1:3]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()
out = [f"commit `{commit}` · {cpu} · {nproc} cores · kernel {platform.release()} · 3 nodes each on hosts in network namespaces (veth + bridge) · default timings", ""]
out.append("Write outage (fault injected → first acknowledged write through a survivor), ms:")
out.append("")
out.append("| fault | system | trials | median | max | min | all |")
out.append("|---|---|---:|---:|---:|---:|---|")
names = {"isolated": "leader isolated (iptables)", "paused": "leader paused (SIGSTOP)", "silent": "leader host silent"}
for f in ("isolated", "paused", "silent"):
    for s in ("conclave", "etcd"):
        v = [r["failover_ms"] for r in rows if r.get("system") == s and r.get("fault") == f]
        if v:
            out.append(f"| {names[f]} | {s} | {len(v)} | {statistics.median(v):.0f} | {max(v):.0f} | {min(v):.0f} | {' '.join(f'{x:.0f}' for x in v)} |")
out.append("")
out.append("Quorum loss (both followers kill -9) → one write to the leader, sent at once and 2 s later:")
out.append("")
out.append("| system | sent | answered after ms | answer |")
out.append("|---|---|---:|---|")
for r in rows:
    if r.get("fault") in ("quorum-loss", "quorum-loss-later"):
        when = "at once" if r["fault"] == "quorum-loss" else "2 s later"
        out.append(f"| {r['system']} | {when} | {r['answer_ms']:.0f} | {r['answer'][:160].replace('|', '/')} |")
for r in rows:
    if r.get("fault") == "quorum-loss-health":
        out.append("")
        out.append(f"conclave's /v1/health on that leader afterwards: HTTP {r['http_code']}")
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
