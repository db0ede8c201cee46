"""Per-client-agent cost for bench/gossip.sh: CPU ticks, RSS and gossip bytes of each client.

    python3 bench/gossip_clients.py snapshot PIDS_FILE > before.json
    python3 bench/gossip_clients.py report PIDS_FILE before.json SECONDS SIZE   # one JSON line

PIDS_FILE has one "pid http_port" pair per line.
"""
import json
import os
import sys
import urllib.request


def sample(pids_file):
    out = {}
    for line in open(pids_file):
        pid, port = line.split()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        rss_kb = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/gossip/stats", timeout=5) as r:
            s = json.load(r)
        out[pid] = {"ticks": ticks, "rss_kb": rss_kb, "bytes": s["bytes_sent"] + s["bytes_received"]}
    return out


def main():
    if sys.argv[1] == "snapshot":
        print(json.dumps(sample(sys.argv[2])))
        return
    _, _, pids_file, before_file, seconds, size = sys.argv
    before, after = json.load(open(before_file)), sample(pids_file)
    hz, secs = os.sysconf("SC_CLK_TCK"), float(seconds)
    cpu = [(after[p]["ticks"] - before[p]["ticks"]) / hz / secs * 100 for p in after]
    bps = [(after[p]["bytes"] - before[p]["bytes"]) / secs for p in after]
    rss = [after[p]["rss_kb"] / 1024 for p in after]
    avg = lambda v: sum(v) / len(v)
    print(json.dumps({"size": int(size), "kind": "per_client", "result": {
        "clients": len(rss), "rss_mb_avg": round(avg(rss), 1), "rss_mb_max": round(max(rss), 1),
        "cpu_pct_avg": round(avg(cpu), 2), "cpu_pct_max": round(max(cpu), 2),
        "gossip_bytes_per_s_avg": round(avg(bps)), "gossip_bytes_per_s_max": round(max(bps))}}))


main()
