#!/usr/bin/env bash
# Quill vs llama.cpp (built without AMX by build.sh) on the same GGUF file, side by side in one run:
# pp512 / tg128 at 1 and 2 threads (llama-bench's method, -r repetitions, medians reported),
# peak RSS while generating 128 tokens with a 2048-token context, and both engines' perplexity
# on the reference pack's hamlet.md (speed is only worth comparing between correct engines).
#
#   Benchmarks/llama.cpp/compare.sh [MODEL]
# Environment: LLAMA_BIN (default /tmp/quill-llama.cpp/build/bin), QUILL (default .build/release/quill),
#              REPS (5), THREADS (1,2), CORPUS (the reference pack's hamlet.md), SKIP_PPL=1.
set -euo pipefail
MODEL=${1:-${QUILL_MODEL:-$HOME/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf}}
LLAMA_BIN=${LLAMA_BIN:-/tmp/quill-llama.cpp/build/bin}
QUILL=${QUILL:-.build/release/quill}
REPS=${REPS:-5}
THREADS=${THREADS:-1,2}
CORPUS=${CORPUS:-/work/shared/reference/smollm2/corpus/hamlet.md}
OUT=$(mktemp -d)

echo "load before: $(uptime)"
# Alternate the engines per thread count so that a change in machine load hits both.
for t in ${THREADS//,/ }; do
    "$LLAMA_BIN/llama-bench" -m "$MODEL" -p 512 -n 128 -r "$REPS" -t "$t" -o json > "$OUT/llama-$t.json" 2>/dev/null
    "$QUILL" bench -m "$MODEL" -p 512 -n 128 -r "$REPS" -t "$t" -o json > "$OUT/quill-$t.json" 2>/dev/null
done
echo "load after:  $(uptime)"

python3 - "$OUT" "$THREADS" <<'PY'
import json, statistics, sys, glob
out, threads = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
def load(engine, t):
    rows = json.load(open(f"{out}/{engine}-{t}.json"))
    return {("pp" if r["n_prompt"] else "tg") + str(r["n_prompt"] or r["n_gen"]): r for r in rows}
print("\n| test | threads | llama.cpp t/s (median) | Quill t/s (median) | Quill / llama.cpp |")
print("| --- | ---: | ---: | ---: | ---: |")
for t in threads:
    l, q = load("llama", t), load("quill", t)
    for test in ("pp512", "tg128"):
        ml, mq = statistics.median(l[test]["samples_ts"]), statistics.median(q[test]["samples_ts"])
        print(f"| {test} | {t} | {ml:.1f} ± {l[test]['stddev_ts']:.1f} | {mq:.1f} ± {q[test]['stddev_ts']:.1f} | {mq / ml:.2f}× |")
PY

echo
echo "peak RSS generating 128 tokens, -c 2048, 1 thread (ru_maxrss via /usr/bin/time):"
PROMPT="Once upon a time"
/usr/bin/time -f "llama.cpp %M KiB" "$LLAMA_BIN/llama-completion" -m "$MODEL" -p "$PROMPT" -n 128 -c 2048 -t 1 \
    --ignore-eos -no-cnv --no-warmup > /dev/null 2> "$OUT/llama-rss.txt" < /dev/null || true
tail -1 "$OUT/llama-rss.txt"
printf '%s' "$PROMPT" | /usr/bin/time -f "quill     %M KiB" "$QUILL" complete -m "$MODEL" -n 128 -c 2048 -t 1 --ignore-eos \
    > /dev/null 2> "$OUT/quill-rss.txt"
tail -1 "$OUT/quill-rss.txt"

if [ -z "${SKIP_PPL:-}" ]; then
    echo
    echo "perplexity, $CORPUS, 8 windows of 512 tokens (reference: llama.cpp 25.3986, transformers fp32 25.3859):"
    "$LLAMA_BIN/llama-perplexity" -m "$MODEL" -f "$CORPUS" -c 512 -b 512 --chunks 8 -t 2 2>&1 | grep -E "Final estimate" | sed 's/^/llama.cpp: /'
    "$QUILL" perplexity -m "$MODEL" -f "$CORPUS" -c 512 --chunks 8 -t 2 | sed 's/^/quill:     /'
fi
rm -rf "$OUT"
