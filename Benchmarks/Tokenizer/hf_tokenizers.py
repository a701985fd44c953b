"""Hugging Face `tokenizers` on the same text as tokenizer-bench, one thread.

Usage: python3 hf_tokenizers.py [--tokenizer PATH] [--corpus DIR] [--mb N] [--rounds N]
Prints `RESULT key value` lines (run.sh makes the table). Needs `pip install tokenizers`.
"""
import argparse, os, resource, time

# One thread: tokenizers parallelises only batch calls, but make sure of it.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "../../Tests/QuillTokenizersTests/Fixtures")
ap = argparse.ArgumentParser()
ap.add_argument("--tokenizer", default=os.path.join(fixtures, "tokenizer.json"))
ap.add_argument("--corpus", default=os.path.join(fixtures, "corpus"))
ap.add_argument("--mb", type=float, default=4)
ap.add_argument("--rounds", type=int, default=3)
a = ap.parse_args()


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


before = rss()
t = time.perf_counter()
tok = Tokenizer.from_file(a.tokenizer)
load = time.perf_counter() - t
print(f"RESULT hf_load_ms {load * 1e3}")
print(f"RESULT hf_load_mb {(rss() - before) / 1e6}")

# Same text as tokenizer-bench: files in name order, joined, repeated to >= N MB.
files = sorted(f for f in os.listdir(a.corpus) if f.endswith((".md", ".txt")))
one = "".join(open(os.path.join(a.corpus, f), encoding="utf-8").read() for f in files)
text = one
while len(text.encode()) < a.mb * 1e6:
    text += one
mb = len(text.encode()) / 1e6

best = float("inf")
for _ in range(a.rounds):
    t = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    best = min(best, time.perf_counter() - t)
h = 0xCBF29CE484222325
for i in ids:
    h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
print(f"RESULT hf_encode_mbs {mb / best}")
print(f"RESULT hf_encode_mtoks {len(ids) / best / 1e6}")
print(f"RESULT hf_tokens {len(ids)}")
print(f"RESULT hf_fnv {h:x}")

chunks = [c + "\n\n" for c in text.split("\n\n")]
best = float("inf")
for _ in range(a.rounds):
    t = time.perf_counter()
    for c in chunks:
        tok.encode(c, add_special_tokens=False)
    best = min(best, time.perf_counter() - t)
print(f"RESULT hf_chunked_mbs {mb / best}")
print(f"RESULT hf_chunks {len(chunks)}")

best = float("inf")
for _ in range(a.rounds):
    t = time.perf_counter()
    out = tok.decode(ids, skip_special_tokens=False)
    best = min(best, time.perf_counter() - t)
assert out == text, "HF decode(encode(text)) != text"
print(f"RESULT hf_decode_mbs {mb / best}")
print(f"RESULT hf_decode_mtoks {len(ids) / best / 1e6}")

# SentencePiece unigram (tiny-t5's tokenizer.json, converted by transformers from spiece.model).
t5 = Tokenizer.from_file(os.path.join(fixtures, "seq2seq/tiny-t5/tokenizer.json"))
best = float("inf")
for _ in range(a.rounds):
    t = time.perf_counter()
    t5ids = t5.encode(text, add_special_tokens=False).ids
    best = min(best, time.perf_counter() - t)
h = 0xCBF29CE484222325
for i in t5ids:
    h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
print(f"RESULT hf_t5_encode_mbs {mb / best}")
print(f"RESULT hf_t5_tokens {len(t5ids)}")
print(f"RESULT hf_t5_fnv {h:x}")
best = float("inf")
for _ in range(a.rounds):
    t = time.perf_counter()
    t5.decode(t5ids, skip_special_tokens=True)
    best = min(best, time.perf_counter() - t)
print(f"RESULT hf_t5_decode_mbs {mb / best}")
