"""Tag propagation on real agents: every agent's /v1/members/watch stream is open before one
agent's tags change (PUT /v1/agent/tags); the time until each agent reports the new tag.

    python3 bench/gossip_tag.py ADDRS_FILE CHANGED_HTTP_ADDR NODE_ID VALUE

Prints {"agents", "p50_ms", "p99_ms", "all_ms", "missing", "state": "tag"} (the shape of
conclave-bench watch). The token comes from CONCLAVE_TOKEN when ACLs are on.
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

addrs = [l.strip() for l in open(sys.argv[1]) if l.strip()]
target, node_id, value = sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = os.environ.get("CONCLAVE_TOKEN")
seen = {}
ready = threading.Barrier(len(addrs) + 1, timeout=30)
lock = threading.Lock()


def request(url, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    return req


def follow(addr):
    try:
        stream = urllib.request.urlopen(
            request(f"http://{addr}/v1/members/watch?events=update"), timeout=30)
    except Exception:
        ready.abort()
        return
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        return
    for raw in stream:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[5:])
        except ValueError:
            continue
        member = event.get("member", {}) if isinstance(event, dict) else {}
        if member.get("id") == node_id and member.get("tags", {}).get("bench") == value:
            with lock:
                seen.setdefault(addr, time.monotonic())
            return


threads = [threading.Thread(target=follow, args=(a,), daemon=True) for a in addrs]
for t in threads:
    t.start()
ready.wait()
time.sleep(0.2)
start = time.monotonic()
urllib.request.urlopen(
    request(f"http://{target}/v1/agent/tags", "PUT", json.dumps({"bench": value}).encode()),
    timeout=5).read()
deadline = start + 30
while time.monotonic() < deadline and len(seen) < len(addrs):
    time.sleep(0.02)
times = sorted((t - start) * 1000 for t in seen.values())
q = lambda p: times[min(len(times) - 1, int(p * len(times)))] if times else None
print(json.dumps({
    "agents": len(addrs),
    "p50_ms": statistics.median(times) if times else None,
    "p99_ms": q(0.99),
    "all_ms": times[-1] if len(times) == len(addrs) else None,
    "missing": len(addrs) - len(times),
    "state": "tag",
}))
