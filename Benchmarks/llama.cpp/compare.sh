#!/usr/bin/env bash
# Quill vs llama.cpp (built without AMX by build.sh) on the same GGUF file, side by side in one run:
# pp512 / tg128 at 1 and 2 threads (llama-bench's method, -r repetitions, medians reported),
# peak RSS while generating 128 and 2,000 tokens with a 2048-token context, and both engines' perplexity
# on the reference pack's hamlet.md (speed is only worth comparing between correct engines).
#
#   Benchmarks/llama.cpp/compare.sh [MODEL]
# MODEL: a GGUF path or a name Weights/fetch knows (smollm2, gemma3-270m, qwen2.5-coder-0.5b); default
# $QUILL_MODEL or smollm2.
# Environment: LLAMA_BIN (default /tmp/quill-llama.cpp/build/bin), QUILL (default .build/release/quill),
#              REPS (5), THREADS (1,2), PROMPT_TOKENS (512; 0 skips pp), GEN_TOKENS (128),
#              ROUNDS (1: A/B rounds, samples pooled), DEPTH (0: tokens already in the cache before each test, llama-bench's -d),
#              CORPUS (the reference pack's hamlet.md), CHUNKS (0: every 512-token window of it), SKIP_PPL=1, SKIP_RSS=1.
set -euo pipefail
MODELS_DIR=${QUILL_HOME:-$HOME/.cache/quill}/models
MODEL=${1:-${QUILL_MODEL:-smollm2}}
case "$MODEL" in
    smollm2) MODEL=$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3-270m) MODEL=$MODELS_DIR/gemma-3-270m-q4_k_m.gguf ;;
    qwen2.5-coder-0.5b) MODEL=$MODELS_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ;;
esac
[ -f "$MODEL" ] || { echo "compare.sh: no model file $MODEL (run Weights/fetch NAME)" >&2; exit 1; }
LLAMA_BIN=${LLAMA_BIN:-/tmp/quill-llama.cpp/build/bin}
QUILL=${QUILL:-.build/release/quill}
REPS=${REPS:-5}
THREADS=${THREADS:-1,2}
PROMPT_TOKENS=${PROMPT_TOKENS:-512}
GEN_TOKENS=${GEN_TOKENS:-128}
DEPTH=${DEPTH:-0}
CHUNKS=${CHUNKS:-0}
CORPUS=${CORPUS:-/work/shared/reference/smollm2/corpus/hamlet.md}
OUT=$(mktemp -d)

echo "model: $MODEL"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "load before: $(uptime)"
# Alternate the engines per thread count, ROUNDS times (default 1), so that a change in machine load
# hits both; each round adds REPS samples per engine and test.
for round in $(seq "${ROUNDS:-1}"); do
    for t in ${THREADS//,/ }; do
        "$LLAMA_BIN/llama-bench" -m "$MODEL" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -d "$DEPTH" -r "$REPS" -t "$t" \
            -o json > "$OUT/llama-$t-$round.json" 2>/dev/null
        "$QUILL" bench -m "$MODEL" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -d "$DEPTH" -r "$REPS" -t "$t" \
            -o json > "$OUT/quill-$t-$round.json" 2>/dev/null
    done
done
echo "load after:  $(uptime)"

python3 - "$OUT" "$THREADS" <<'PY'
import json, statistics, sys, glob
out, threads = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
def load(engine, t):
    samples = {}
    for path in glob.glob(f"{out}/{engine}-{t}-*.json"):
        for r in json.load(open(path)):
            test = ("pp" if r["n_prompt"] else "tg") + str(r["n_prompt"] or r["n_gen"])
            test += f" @ d{r['n_depth']}" if r.get("n_depth") else ""
            samples.setdefault(test, []).extend(r["samples_ts"])
    return samples
print("\n| test | threads | llama.cpp t/s (median ± sd) | Quill t/s (median ± sd) | Quill / llama.cpp |")
print("| --- | ---: | ---: | ---: | ---: |")
for t in threads:
    l, q = load("llama", t), load("quill", t)
    for test in sorted(l, reverse=True):
        ml, mq = statistics.median(l[test]), statistics.median(q[test])
        sl = statistics.stdev(l[test]) if len(l[test]) > 1 else 0
        sq = statistics.stdev(q[test]) if len(q[test]) > 1 else 0
        print(f"| {test} | {t} | {ml:.1f} ± {sl:.1f} | {mq:.1f} ± {sq:.1f} | {mq / ml:.2f}× |")
PY
[ -n "${SKIP_RSS:-}" ] && [ -n "${SKIP_PPL:-}" ] && { rm -rf "$OUT"; exit 0; }

if [ -z "${SKIP_RSS:-}" ]; then
echo
PROMPT="Once upon a time"
# 128 tokens (weights and runtime) and 2,000 (#9's figure: the F16 KV cache nearly full).
for N in 128 2000; do
    echo "peak RSS generating $N tokens, -c 2048, 1 thread (ru_maxrss via /usr/bin/time):"
    /usr/bin/time -f "llama.cpp %M KiB" "$LLAMA_BIN/llama-completion" -m "$MODEL" -p "$PROMPT" -n $N -c 2048 -t 1 \
        --ignore-eos -no-cnv --no-warmup > /dev/null 2> "$OUT/llama-rss.txt" < /dev/null || true
    tail -1 "$OUT/llama-rss.txt"
    printf '%s' "$PROMPT" | /usr/bin/time -f "quill     %M KiB" "$QUILL" complete -m "$MODEL" -n $N -c 2048 -t 1 --ignore-eos \
        > /dev/null 2> "$OUT/quill-rss.txt"
    tail -1 "$OUT/quill-rss.txt"
done
fi

if [ -z "${SKIP_PPL:-}" ]; then
    # The whole corpus by default (Hamlet: 119 windows, 30,345 scored positions): on 8 windows the
    # int8 activations' rounding alone moves the quantised path's figure by about ±0.3 %.
    echo
    if [ "$CHUNKS" = 0 ]; then WINDOWS="every window"; LLAMA_CHUNKS=(); else WINDOWS="$CHUNKS windows"; LLAMA_CHUNKS=(--chunks "$CHUNKS"); fi
    echo "perplexity, $CORPUS, $WINDOWS of 512 tokens (second halves; on 8 windows transformers fp32 gives 25.3859):"
    "$LLAMA_BIN/llama-perplexity" -m "$MODEL" -f "$CORPUS" -c 512 -b 512 "${LLAMA_CHUNKS[@]}" -t 2 2>&1 | grep -E "Final estimate" | sed 's/^/llama.cpp:  /'
    "$QUILL" perplexity -m "$MODEL" -f "$CORPUS" -c 512 --chunks "$CHUNKS" -t 2 | tee "$OUT/ppl-quantized.txt" | sed 's/^/quill:      /'
    "$QUILL" perplexity -m "$MODEL" -f "$CORPUS" -c 512 --chunks "$CHUNKS" -t 2 --precision f32 | tee "$OUT/ppl-f32.txt" | sed 's/^/quill f32:  /'
    python3 - "$OUT/ppl-quantized.txt" "$OUT/ppl-f32.txt" <<'PY'
import re, sys
def second_half(path):
    return float(re.search(r"PPL ([0-9.]+) \(second halves", open(path).read()).group(1))
q, f = second_half(sys.argv[1]), second_half(sys.argv[2])
print(f"quill's quantised path against its f32 path: {100 * (q / f - 1):+.2f} %")
PY
fi
rm -rf "$OUT"
