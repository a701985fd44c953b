"""Whisper-base side by side: Quill vs CTranslate2, seconds per clip (encoder + decoding), 1 and 2 threads.

    python3 Benchmarks/whisper/bench.py                     # uses the defaults below
    python3 Benchmarks/whisper/bench.py --threads 1 2 --repeats 3 --beam 5

Needs a Python with ctranslate2 + numpy (--python, e.g. a venv: python3 -m venv v && v/bin/pip install
ctranslate2 numpy), the release build of quill, the model (`Weights/fetch whisper-base`) and the reference
pack's whisper_feats.py for CTranslate2's features (Quill computes the same features itself; its front end
is not timed, as CTranslate2 takes features). Quill's seconds are its own encoder + decoder timings
(`quill transcribe --timings`), CTranslate2's the wall time of `generate` (encoder included); both with the
language given (no detection), best of --repeats. The engines run alternately, clip by clip, so load from
other processes hits both alike. Compute types compared: Quill f32 (weights widened at load) vs
CTranslate2 float32, and Quill q8_0 vs CTranslate2 int8.
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../.."))
LANG = {"en": "en", "de": "de", "fr": "fr", "es": "es", "de_slow": "de"}

ap = argparse.ArgumentParser()
ap.add_argument("--quill", default=os.path.join(ROOT, ".build/release/quill"))
ap.add_argument("--python", default=os.environ.get("CT2_PYTHON", "/tmp/ct2venv/bin/python"))
ap.add_argument("--model", default=os.path.join(os.environ.get("QUILL_HOME", os.path.expanduser("~/.cache/quill")), "models/whisper-base"))
ap.add_argument("--clips", default=os.path.join(ROOT, "Tests/QuillModelsTests/Fixtures/whisper"))
ap.add_argument("--tools", default=os.path.abspath(os.path.join(ROOT, "../shared/reference/tools")))
ap.add_argument("--reference", default=None, help="ct2_outputs.json (default: the copy in the clips folder)")
ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--beam", type=int, default=5)
ap.add_argument("--task", default="transcribe")
ap.add_argument("--only", nargs="*", default=list(LANG))
a = ap.parse_args()
reference = json.load(open(a.reference or os.path.join(a.clips, "ct2_outputs.json")))


def quill(clip, threads, weights):
    wav = os.path.join(a.clips, clip + ".wav")
    r = subprocess.run([a.quill, "transcribe", "-m", a.model, "--language", LANG[clip], "--task", a.task,
                        "--beam", str(a.beam), "-t", str(threads), "--weights", weights, "--ids", "--timings"]
                       + [wav] * a.repeats, capture_output=True, text=True, check=True)
    times = [float(m.group(1)) + float(m.group(2))
             for m in re.finditer(r"encoder ([0-9.]+) s, decoder ([0-9.]+) s", r.stderr)]
    ids = [int(t) for t in r.stdout.splitlines()[0].split()]
    return min(times), ids


def ct2(clip, threads, compute_type):
    script = os.path.join(HERE, "ct2_bench.py")
    r = subprocess.run([a.python, script, a.model, a.clips, "--tools", a.tools, "--compute-type", compute_type,
                        "--threads", str(threads), "--beam", str(a.beam), "--repeats", str(a.repeats),
                        "--task", a.task, "--clips-only", clip], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["seconds"], out["ids"]


rows = []
for threads in a.threads:
    for clip in a.only:
        expected = reference[clip][f"{a.task}_beam{a.beam}"]["ids"] if a.beam in (1, 5) else None
        qf, qf_ids = quill(clip, threads, "f32")
        cf, cf_ids = ct2(clip, threads, "float32")
        q8, q8_ids = quill(clip, threads, "q8_0")
        c8, c8_ids = ct2(clip, threads, "int8")
        rows.append((threads, clip, qf, cf, qf_ids == expected, cf_ids == expected, q8, c8, q8_ids == expected, c8_ids == expected))
        print(f"  measured {clip} threads {threads}", file=sys.stderr, flush=True)

print(f"Whisper-base, {a.task}, beam {a.beam}, seconds per clip (encoder + decoding, best of {a.repeats}); "
      f"ids = same ids as the pack's CTranslate2 float32 result")
print(f"{'threads':>7} {'clip':>8} | {'quill f32':>9} {'ct2 f32':>8} {'speed-up':>8} {'ids q/c':>7} | "
      f"{'quill q8':>8} {'ct2 int8':>8} {'speed-up':>8} {'ids q/c':>7}")
yes = {True: "y", False: "n"}
for t, clip, qf, cf, qfi, cfi, q8, c8, q8i, c8i in rows:
    print(f"{t:>7} {clip:>8} | {qf:9.3f} {cf:8.3f} {cf / qf:7.2f}x {yes[qfi]:>3}/{yes[cfi]:<3} | "
          f"{q8:8.3f} {c8:8.3f} {c8 / q8:7.2f}x {yes[q8i]:>3}/{yes[c8i]:<3}")
for t in a.threads:
    sub = [r for r in rows if r[0] == t]
    qf, cf = sum(r[2] for r in sub), sum(r[3] for r in sub)
    q8, c8 = sum(r[6] for r in sub), sum(r[7] for r in sub)
    print(f"{t:>7} {'total':>8} | {qf:9.3f} {cf:8.3f} {cf / qf:7.2f}x {'':7} | {q8:8.3f} {c8:8.3f} {c8 / q8:7.2f}x")
