#!/usr/bin/env bash
# Soak test: quill serve at closed-loop concurrency 16 for DURATION seconds (default 600), 20 % of
# requests disconnecting after their 8th token. Passes when no other request failed, the RSS at the
# end is within 5 % of the RSS after a warm-up (rounds until the KV pool stops growing), and every KV
# block is free again (idle cached blocks count as free).
#
#   Benchmarks/serve/soak.sh [DURATION] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-600}
MODEL=${2:-smollm2}
WORK=${WORK:-/tmp/quill-serve-bench}
QUILL=${QUILL:-.build/release/quill}
PORT=${PORT:-8932}
mkdir -p "$WORK"
[ -x "$WORK/venv/bin/python" ] || { python3 -m venv "$WORK/venv"; "$WORK/venv/bin/pip" install -q httpx; }
PY="$WORK/venv/bin/python"

"$QUILL" serve -m "$MODEL" --port "$PORT" --parallel 16 -c 16384 2>"$WORK/soak-server.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# Warm-up: 60-s rounds of the same load until one writes no KV block that was never written before
# (at most WARMUP_ROUNDS). The KV pool keeps the blocks of its highest use so far, and 16 streams of
# random lengths reach that high-water mark only after some dozens of requests; measuring growth from
# before it would count a working set still filling up, not a leak.
WARMUP_ROUNDS=${WARMUP_ROUNDS:-5}
resident_warm=0
for round in $(seq "$WARMUP_ROUNDS"); do
    "$PY" Benchmarks/serve/loadgen.py --url "http://127.0.0.1:$PORT" --concurrency 16 --duration 60 --abort 0.2 \
        --seed $((100 + round)) --label "warm-up $round" >/dev/null
    resident=$(metric quill_kv_blocks_resident)
    echo "warm-up round $round: KV blocks written ${resident_warm} -> ${resident}, RSS $(rss) kB"
    [ "$resident" = "$resident_warm" ] && break
    resident_warm=$resident
done
rss_warm=$(rss); resident_warm=$(metric quill_kv_blocks_resident)
"$PY" Benchmarks/serve/loadgen.py --url "http://127.0.0.1:$PORT" --concurrency 16 --duration "$DURATION" --abort 0.2 \
    --seed 2 --label soak | tee "$WORK/soak.json"
sleep 1
rss_end=$(rss); in_use=$(metric quill_kv_blocks_in_use); running=$(metric quill_running_sequences)
resident_end=$(metric quill_kv_blocks_resident)
failed=$("$PY" -c "import json,sys; print(json.load(open('$WORK/soak.json'))['failed'])")
echo "RSS after warm-up ${rss_warm} kB, at the end ${rss_end} kB; KV blocks written ${resident_warm} -> ${resident_end}; KV blocks in use ${in_use}; running ${running}; failed ${failed}; load $(cut -d' ' -f1-3 /proc/loadavg)"
growth=$(awk -v a="$rss_warm" -v b="$rss_end" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
[ "$failed" = 0 ] && [ "$in_use" = 0 ] && [ "$running" = 0 ] && awk -v g="$growth" 'BEGIN { exit !(g <= 5) }' \
    && echo "soak passed (RSS growth ${growth} %)" || { echo "soak FAILED (RSS growth ${growth} %)"; exit 1; }
