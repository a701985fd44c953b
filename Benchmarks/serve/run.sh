#!/usr/bin/env bash
# Serving benchmark: quill serve against llama.cpp's llama-server on the same GGUF, side by side.
#
#   Benchmarks/serve/run.sh [MODEL] [THREADS]        (MODEL: a path or smollm2 / gemma3-270m / qwen2.5-coder-0.5b)
#
# For each concurrency 1, 4, 8, 16: a closed loop of streaming requests (prompts of 128-512 tokens,
# 128 output tokens, ignore_eos) against each server, started fresh with -np/--parallel = concurrency
# and its prompt cache on. Then the shared-prefix scenario (16 clients, one ~500-token system text,
# different questions) with Quill's prefix cache on and off. Prints one JSON line per run.
# Needs: a release build of quill, `pip install httpx` (a venv is made in $WORK), and optionally
# llama-server from Benchmarks/llama.cpp/build.sh (LLAMA_SERVER=path; skipped when absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-smollm2}
THREADS=${2:-2}
WORK=${WORK:-/tmp/quill-serve-bench}
QUILL=${QUILL:-.build/release/quill}
LLAMA_SERVER=${LLAMA_SERVER:-/tmp/quill-llama.cpp/build/bin/llama-server}
LLAMA_THREADS=${LLAMA_THREADS:-1}
REQUESTS_PER_CLIENT=${REQUESTS_PER_CLIENT:-3}
PORT=${PORT:-8931}
mkdir -p "$WORK"
[ -x "$WORK/venv/bin/python" ] || { python3 -m venv "$WORK/venv"; "$WORK/venv/bin/pip" install -q httpx; }
PY="$WORK/venv/bin/python"
if [ -f "$MODEL" ]; then MODEL_PATH=$MODEL; else
    Weights/fetch "$MODEL" >&2
    MODEL_PATH=$(Weights/fetch --list | awk -v m="$MODEL" '$1 == m { print $4 }')
fi

wait_healthy() {
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "server did not become healthy" >&2; return 1
}

run_load() {  # label concurrency [extra loadgen args]
    local label=$1 c=$2; shift 2
    "$PY" Benchmarks/serve/loadgen.py --url "http://127.0.0.1:$PORT" --concurrency "$c" \
        --requests $((c * REQUESTS_PER_CLIENT)) --label "$label" "$@"
}

# CONCURRENCY: the sweep's levels (default "1 4 8 16"). SCENARIOS: "load" (the concurrency sweep) and/or "shared-prefix"; ROUNDS: how many times the
# shared-prefix pair (cache on, then off) is repeated, interleaved.
SCENARIOS=${SCENARIOS:-load shared-prefix}
ROUNDS=${ROUNDS:-1}
QUILL_ARGS=${QUILL_ARGS:-}          # extra options for quill serve, e.g. "--prompt-chunk 64"
[[ " $SCENARIOS " == *" load "* ]] && for c in ${CONCURRENCY:-1 4 8 16}; do
    "$QUILL" serve -m "$MODEL_PATH" --port "$PORT" -t "$THREADS" $QUILL_ARGS --parallel "$c" -c 16384 2>"$WORK/quill.log" &
    pid=$!; wait_healthy
    run_load "quill t$THREADS" "$c"
    kill -TERM $pid; wait $pid || true
    if [ -x "$LLAMA_SERVER" ]; then
        "$LLAMA_SERVER" -m "$MODEL_PATH" --port "$PORT" -t "$LLAMA_THREADS" -tb "$LLAMA_THREADS" -np "$c" \
            -c $((c * 1024)) --cache-prompt 2>"$WORK/llama.log" >/dev/null &
        pid=$!; wait_healthy
        run_load "llama-server t$LLAMA_THREADS" "$c"
        kill -TERM $pid; wait $pid || true
    fi
done

[[ " $SCENARIOS " == *" shared-prefix "* ]] && for round in $(seq "$ROUNDS"); do for cache in prefix-cache no-prefix-cache; do
    "$QUILL" serve -m "$MODEL_PATH" --port "$PORT" -t "$THREADS" $QUILL_ARGS --parallel 16 -c 16384 "--$cache" 2>"$WORK/quill.log" &
    pid=$!; wait_healthy
    run_load "quill shared-prefix $cache" 16 --shared-prefix 500
    echo "{\"label\": \"metrics $cache\", $(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^quill_prompt_tokens/ { printf "\"%s\": %s, ", $1, $2 }') \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
    kill -TERM $pid; wait $pid || true
done; done
true
