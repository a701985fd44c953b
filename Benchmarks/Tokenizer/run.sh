#!/bin/sh
# Runs Quill's tokenizer-bench and HF tokenizers (PyPI) on the same ~4 MB of English prose, one
# thread each, and prints a comparison table. Usage: Benchmarks/Tokenizer/run.sh [--mb N]
# Needs: swift, python3 with `tokenizers` (pip install tokenizers).
set -eu
cd "$(dirname "$0")"
SCRATCH=${SCRATCH:-.build}
swift build -c release --scratch-path "$SCRATCH" >&2
OUT=$(mktemp)
"$SCRATCH/release/tokenizer-bench" "$@" | tee "$OUT" >&2
python3 hf_tokenizers.py "$@" | tee -a "$OUT" >&2
awk '
/^RESULT/ { v[$2] = $3 }
END {
    if (v["quill_fnv"] != v["hf_fnv"] || v["quill_tokens"] != v["hf_tokens"]) print "WARNING: token ids differ (Quill " v["quill_tokens"] " tokens, HF " v["hf_tokens"] ")"
    else print "ids identical: " v["quill_tokens"] " tokens, fnv " v["quill_fnv"]
    printf "\n| 1 thread, SmolLM2 vocabulary | Quill | HF tokenizers | Quill / HF |\n|---|---|---|---|\n"
    printf "| encode MB/s | %.1f | %.2f | %.1f× |\n", v["quill_encode_mbs"], v["hf_encode_mbs"], v["quill_encode_mbs"] / v["hf_encode_mbs"]
    printf "| encode M tokens/s | %.2f | %.3f | %.1f× |\n", v["quill_encode_mtoks"], v["hf_encode_mtoks"], v["quill_encode_mtoks"] / v["hf_encode_mtoks"]
    printf "| encode MB/s, one call per paragraph (%d calls) | %.1f | %.2f | %.1f× |\n", v["quill_chunks"], v["quill_chunked_mbs"], v["hf_chunked_mbs"], v["quill_chunked_mbs"] / v["hf_chunked_mbs"]
    printf "| decode MB/s | %.1f | %.1f | %.1f× |\n", v["quill_decode_mbs"], v["hf_decode_mbs"], v["quill_decode_mbs"] / v["hf_decode_mbs"]
    printf "| decode M tokens/s | %.2f | %.2f | %.1f× |\n", v["quill_decode_mtoks"], v["hf_decode_mtoks"], v["quill_decode_mtoks"] / v["hf_decode_mtoks"]
    printf "| load tokenizer.json ms | %.0f | %.0f | |\n", v["quill_load_ms"], v["hf_load_ms"]
    printf "| load resident MB | %.1f | %.1f | |\n", v["quill_load_mb"], v["hf_load_mb"]
    if ("hf_t5_encode_mbs" in v) {
        same = (v["quill_t5_fnv"] == v["hf_t5_fnv"]) ? "identical ids" : "IDS DIFFER"
        printf "\n| 1 thread, tiny-t5 unigram (nmt_nfkc) | Quill | HF tokenizers | Quill / HF |\n|---|---|---|---|\n"
        printf "| encode MB/s (%s, %d tokens) | %.1f | %.2f | %.1f× |\n", same, v["quill_t5_tokens"], v["quill_t5_encode_mbs"], v["hf_t5_encode_mbs"], v["quill_t5_encode_mbs"] / v["hf_t5_encode_mbs"]
        printf "| decode MB/s | %.1f | %.1f | %.1f× |\n", v["quill_t5_decode_mbs"], v["hf_t5_decode_mbs"], v["quill_t5_decode_mbs"] / v["hf_t5_decode_mbs"]
    }
    if ("gemma_load_ms" in v || "qwen_load_ms" in v) {
        printf "\n| 1 thread, real GGUF vocabularies (same text) | SmolLM2 BPE | Gemma 3 SentencePiece (262,144) | Qwen2.5 BPE (151,936) |\n|---|---|---|---|\n"
        printf "| load ms (GGUF metadata + tokenizer build) | %.0f (tokenizer.json) | %.0f (%.0f + %.0f) | %.0f (%.0f + %.0f) |\n", v["quill_load_ms"], v["gemma_load_ms"], v["gemma_parse_ms"], v["gemma_build_ms"], v["qwen_load_ms"], v["qwen_parse_ms"], v["qwen_build_ms"]
        printf "| encode MB/s | %.1f | %.1f | %.1f |\n", v["quill_encode_mbs"], v["gemma_encode_mbs"], v["qwen_encode_mbs"]
        printf "| encode MB/s, one call per paragraph | %.1f | %.1f | %.1f |\n", v["quill_chunked_mbs"], v["gemma_chunked_mbs"], v["qwen_chunked_mbs"]
        printf "| decode MB/s | %.1f | %.1f | %.1f |\n", v["quill_decode_mbs"], v["gemma_decode_mbs"], v["qwen_decode_mbs"]
        printf "| tokens | %d | %d | %d |\n", v["quill_tokens"], v["gemma_tokens"], v["qwen_tokens"]
    }
    if ("sp262k_load_ms" in v) {
        printf "\n| synthetic 262,144-piece SentencePiece BPE (Gemma-3 size) | Quill |\n|---|---|\n"
        printf "| parse .model + build, ms | %.0f |\n| resident MB after load | %.1f |\n| encode MB/s (1 MB) | %.1f |\n", v["sp262k_load_ms"], v["sp262k_load_mb"], v["sp262k_encode_mbs"]
    }
}' "$OUT"
rm -f "$OUT"
