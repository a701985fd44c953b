#!/usr/bin/env bash
# Concurrency 1 against `quill bench`: one stream's decoding speed through `quill serve` (1000 / mean
# inter-token latency, prompts of 128-512 tokens, 128 output tokens) beside `quill bench`'s tg128 at
# depth 320 (a stream attends over its prompt, 320 tokens on average), alternated ROUNDS times in one
# run at the same thread count. The issue's goal: the server within 10 % of tg.
#
#   Benchmarks/serve/c1-vs-tg.sh [MODEL] [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-smollm2}
THREADS=${2:-2}
ROUNDS=${3:-3}
WORK=${WORK:-/tmp/quill-serve-bench}
QUILL=${QUILL:-.build/release/quill}
PORT=${PORT:-8933}
mkdir -p "$WORK"
[ -x "$WORK/venv/bin/python" ] || { python3 -m venv "$WORK/venv"; "$WORK/venv/bin/pip" install -q httpx; }
PY="$WORK/venv/bin/python"
for round in $(seq "$ROUNDS"); do
    "$QUILL" serve -m "$MODEL" --port "$PORT" -t "$THREADS" --parallel 1 -c 4096 2>"$WORK/c1-server.log" &
    pid=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
    server=$("$PY" Benchmarks/serve/loadgen.py --url "http://127.0.0.1:$PORT" --concurrency 1 --requests 4 \
        --seed "$round" --label c1)
    kill -TERM $pid; wait $pid || true
    itl=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['itl_mean_ms'])" "$server")
    tg=$("$QUILL" bench -m "$MODEL" -t "$THREADS" -p 0 -n 128 -d 320 -r 2 | awk -F'|' '/tg128/ { split($8, a, " "); print a[1] }')
    awk -v itl="$itl" -v tg="$tg" -v r="$round" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        printf "round %d: server c1 %.1f tok/s (mean ITL %.1f ms), bench tg128 @ d320 %.1f tok/s, ratio %.3f (load %s)\n",
               r, 1000 / itl, itl, tg, 1000 / itl / tg, load }'
done
