#!/usr/bin/env bash
# The dashboard's speed in a real headless Chromium: first contentful paint of /ui, the
# embedded assets' size, and how long the overview takes from its first request to its data
# on screen (each 2-second refresh), against a 3-node cluster on loopback. Runs the browser
# test (tests/it/dashboard.rs, debug build of the agent) ROUNDS times and writes
# bench/dashboard-results.md. Needs Debian's chromium and chromium-driver.
#
#   bash bench/dashboard.sh            # ≈ 1 min
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
OUT_JSON=bench/dashboard-results.jsonl
OUT_MD=bench/dashboard-results.md
command -v chromedriver >/dev/null || {
  echo "install Debian's chromium and chromium-driver first (apt-get install chromium chromium-driver)" >&2
  exit 1
}
: >"$OUT_JSON"
for round in $(seq 1 "$ROUNDS"); do
  T=$(mktemp)
  CONCLAVE_DASHBOARD_TIMINGS="$T" cargo test -q -p conclave --test it dashboard::the_dashboard -- --ignored >/dev/null
  python3 -c "import json,sys; r=json.load(open('$T')); r['round']=$round; print(json.dumps(r))" >>"$OUT_JSON"
  rm -f "$T"
done
python3 - "$OUT_JSON" "$OUT_MD" <<'PY'
import json, statistics, subprocess, sys
src, dst = sys.argv[1:3]
rows = [json.loads(l) for l in open(src) if l.strip()]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()
paint = [r["first_contentful_paint_ms"] for r in rows]
renders = sorted(x for r in rows for x in r["overview_render_ms"])
out = [f"commit `{commit}` · {chromium} headless · 3-node cluster on loopback (debug build) · {len(rows)} rounds", "",
       "| measure | value |", "|---|---:|",
       f"| embedded assets (HTML + JS + CSS) | {rows[0]['assets_bytes'] / 1024:.1f} KB |",
       f"| first contentful paint of `/ui` (median of {len(paint)}) | {statistics.median(paint):.0f} ms |",
       f"| overview refresh, first request to data drawn (median of {len(renders)}) | {statistics.median(renders):.0f} ms |",
       f"| overview refresh, slowest | {renders[-1]:.0f} ms |"]
open(dst, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
