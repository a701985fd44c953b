"""Quill vs CTranslate2 on the opus-mt-shaped Marian (issue #9's table): tok/s, greedy and beam 4,
batch 1 and 16, at 1 and 2 threads; Quill Q8_0 vs CTranslate2 int8 and Quill F32 vs CTranslate2 float32.

    python3 Benchmarks/ctranslate2/bench.py [--threads 1 2] [--repeats 3] [--work /tmp/quill-ct2]

Builds what it needs under --work unless present: a venv from PyPI (ctranslate2, transformers, torch,
sentencepiece, safetensors, numpy), the random opus-mt-shaped checkpoint (Weights/make-opus-mt-shaped.py),
and its CTranslate2 conversion (ct2-transformers-converter, float32; CTranslate2 quantises to int8 at
load time with compute_type="int8", as with an int8 conversion). The checkpoint has no tokenizer, so the
conversion gets a stand-in vocab.json of 58,101 entries (</s> 0, <unk> 1, <pad> 58100) and tiny-marian's
source.spm/target.spm, which the converter only needs to exist.

Both engines translate the same 16 sources: `quill bench --seq2seq`'s seeded ids (xoshiro256** seeded by
SplitMix64 with --seed, 16-40 ids each plus </s>; reproduced here for CTranslate2), in batches of 1 or 16,
at most 32 new tokens, counting the generated tokens of each best hypothesis (end token included).
Each cell: one warm-up batch, then --repeats passes over all 16 sources, mean tok/s. The engines run
alternately (Quill q8_0, CT2 int8, Quill f32, CT2 float32) for each thread count.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
VOCAB, PAD, EOS = 58101, 58100, 0
CELLS = [(1, 1), (1, 16), (4, 1), (4, 16)]  # (beams, batch)

ap = argparse.ArgumentParser()
ap.add_argument("--quill", default=os.path.join(ROOT, ".build/release/quill"))
ap.add_argument("--work", default="/tmp/quill-ct2")
ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--ct2-only", action="store_true", help=argparse.SUPPRESS)
a = ap.parse_args()

venv = os.path.join(a.work, "venv")
python = os.path.join(venv, "bin", "python")
model = os.path.join(a.work, "opus-mt-shaped")
staging = os.path.join(a.work, "opus-mt-shaped-with-vocab")
converted = os.path.join(a.work, "opus-mt-shaped-ct2")


def run(*args):
    subprocess.run(list(args), check=True)


def setup():
    if not os.path.exists(python):
        run(sys.executable, "-m", "venv", venv)
        run(python, "-m", "pip", "install", "-q", "ctranslate2", "transformers", "torch", "sentencepiece", "safetensors", "numpy")
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        run(python, os.path.join(ROOT, "Weights/make-opus-mt-shaped.py"), model)
    if not os.path.exists(os.path.join(converted, "model.bin")):
        os.makedirs(staging, exist_ok=True)
        for name in ("config.json", "generation_config.json", "model.safetensors"):
            target = os.path.join(staging, name)
            if not os.path.exists(target):
                os.symlink(os.path.join(model, name), target)
        vocab = {"</s>": 0, "<unk>": 1, "<pad>": PAD}
        vocab.update({f"▁t{i}": i for i in range(2, PAD)})
        json.dump(vocab, open(os.path.join(staging, "vocab.json"), "w"))
        json.dump({"tokenizer_class": "MarianTokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                   "model_max_length": 512, "separate_vocabs": False, "source_lang": "en", "target_lang": "de"},
                  open(os.path.join(staging, "tokenizer_config.json"), "w"))
        spm = os.path.join(ROOT, "Tests/QuillModelsTests/Fixtures/seq2seq/tiny-marian")
        for name in ("source.spm", "target.spm"):
            shutil.copy(os.path.join(spm, name), staging)
        run(os.path.join(venv, "bin", "ct2-transformers-converter"), "--model", staging, "--output_dir", converted,
            "--quantization", "float32", "--force")


def sources(seed, count=16):
    """quill bench --seq2seq's ids for a checkpoint without a tokenizer (Xoshiro256StarStar, SplitMix64 seeding)."""
    mask = (1 << 64) - 1
    x = seed

    def splitmix():
        nonlocal x
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    s = [splitmix() for _ in range(4)]

    def rotl(v, k):
        return ((v << k) | (v >> (64 - k))) & mask

    def next_():
        result = (rotl((s[1] * 5) & mask, 7) * 9) & mask
        t = (s[1] << 17) & mask
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    out = []
    for _ in range(count):
        length = 16 + next_() % 25
        ids = []
        while len(ids) < length:
            i = next_() % VOCAB
            if i not in (EOS, PAD):
                ids.append(i)
        out.append(ids + [EOS])
    return out


def quill(threads, quantize):
    args = [a.quill, "bench", "-m", model, "--seq2seq", "--beam", "1,4", "--batch", "1,16", "--sentences", "16",
            "--max-length", "32", "--seed", str(a.seed), "-t", str(threads), "-r", str(a.repeats), "-o", "jsonl"]
    if quantize:
        args += ["--quantize", "q8_0"]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return {(row["n_beams"], row["n_batch"]): (row["avg_ts"], row.get("avg_cpu_ts", float("nan"))) for row in rows}


def ct2(threads, compute_type):
    r = subprocess.run([python, os.path.abspath(__file__), "--ct2-only", "--work", a.work, "--seed", str(a.seed),
                        "--repeats", str(a.repeats), "--threads", str(threads), "--quill", compute_type],
                       capture_output=True, text=True, check=True)
    return {tuple(k): tuple(v) for k, v in json.loads(r.stdout.strip().splitlines()[-1])}


def ct2_measure(threads, compute_type):
    import ctranslate2
    translator = ctranslate2.Translator(converted, device="cpu", compute_type=compute_type, intra_threads=threads, inter_threads=1)
    vocabulary = json.load(open(os.path.join(converted, "shared_vocabulary.json")))
    tokens = [[vocabulary[i] for i in ids] for ids in sources(a.seed)]
    results = []
    for beams, batch in CELLS:
        def once(subset):
            count = 0
            for start in range(0, len(subset), batch):
                out = translator.translate_batch(subset[start:start + batch], beam_size=beams, max_decoding_length=32,
                                                 max_batch_size=batch, return_end_token=True)
                count += sum(len(o.hypotheses[0]) for o in out)
            return count
        once(tokens[:batch])
        rates, cpu_rates = [], []
        for _ in range(a.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            n = once(tokens)
            rates.append(n / (time.perf_counter() - t0))
            cpu_rates.append(n / (time.process_time() - c0))
        results.append([[beams, batch], [sum(rates) / len(rates), sum(cpu_rates) / len(cpu_rates)]])
    print(json.dumps(results))


if a.ct2_only:
    ct2_measure(a.threads[0], a.quill)
    sys.exit(0)

setup()
table = {}
for threads in a.threads:
    table[(threads, "q8")] = quill(threads, True)
    table[(threads, "int8")] = ct2(threads, "int8")
    table[(threads, "f32")] = quill(threads, False)
    table[(threads, "float32")] = ct2(threads, "float32")
    print(f"  measured {threads} thread(s)", file=sys.stderr, flush=True)

load = os.getloadavg()
print(f"opus-mt-shaped Marian (random weights), 16 sources of 16-40 ids, 32 new tokens, mean of {a.repeats}; "
      f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
print("tok/s = generated tokens per wall-clock second; tok/cpu-s = per processor second of all the engine's threads "
      "(steadier on a shared machine)")
for quill_key, ct2_key, quill_label, ct2_label in (("q8", "int8", "Quill Q8_0", "CTranslate2 int8"),
                                                    ("f32", "float32", "Quill F32", "CTranslate2 float32")):
    for threads in a.threads:
        print()
        print(f"| {threads} thread{'s' if threads > 1 else ''} | greedy bs1 | greedy bs16 | beam4 bs1 | beam4 bs16 |")
        print("|---|---:|---:|---:|---:|")
        c, q = table[(threads, ct2_key)], table[(threads, quill_key)]
        for unit, i in (("tok/s", 0), ("tok/cpu-s", 1)):
            print(f"| {ct2_label}, {unit} | " + " | ".join(f"{c[cell][i]:.0f}" for cell in CELLS) + " |")
            print(f"| {quill_label}, {unit} | " + " | ".join(f"{q[cell][i]:.0f}" for cell in CELLS) + " |")
            print(f"| ratio, {unit} | " + " | ".join(f"{q[cell][i] / c[cell][i]:.2f}×" for cell in CELLS) + " |")
