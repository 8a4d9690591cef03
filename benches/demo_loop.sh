#!/usr/bin/env bash
# Times `serve --demo` from an empty data dir through the whole loop: the API up (history
# generated and stored), live traffic under the starting policy, a recommendation, Apply, and
# the first traffic under the applied policy. The demo must get there within two minutes.
# Usage: benches/demo_loop.sh [BINARY] (default target/release/switchyard); needs curl, python3.
set -euo pipefail
bin=${1:-target/release/switchyard}
dir=$(mktemp -d)
trap 'kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
api=127.0.0.1:18070
t0=$(date +%s.%N)
"$bin" serve --demo --data-dir "$dir/data" --listen "$api" --proxy-listen 127.0.0.1:18071 >"$dir/out" 2>"$dir/err" &
pid=$!
until curl -sf "$api/healthz" >/dev/null; do sleep 0.2; done
t_up=$(date +%s.%N)
live() { curl -s "$api/api/reports/live_traffic?since=30m"; }
until live | grep -q '"baseline"'; do sleep 0.2; done
t_live=$(date +%s.%N)
curl -s "$api/api/policy/proposal" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["policy"]))' >"$dir/policy.json"
t_rec=$(date +%s.%N)
v=$(curl -s -X POST "$api/api/policy/apply" --data-binary @"$dir/policy.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
until live | grep -q "\"$v\""; do sleep 0.2; done
t_new=$(date +%s.%N)
python3 - "$t0" "$t_up" "$t_live" "$t_rec" "$t_new" <<'PY'
import sys
t0, up, live, rec, new = map(float, sys.argv[1:])
print(f"api up {up - t0:.1f} s · live traffic {live - t0:.1f} s · recommendation {rec - t0:.1f} s · "
      f"traffic under the applied policy {new - t0:.1f} s (goal: under 120 s)")
PY
