"""Whisper-base side by side: Quill vs CTranslate2, seconds per clip (encoder + decoding), 1 and 2 threads.

    python3 Benchmarks/whisper/bench.py                     # uses the defaults below
    python3 Benchmarks/whisper/bench.py --threads 1 2 --repeats 3 --beam 5

Needs a Python with ctranslate2 + numpy (--python, e.g. a venv: python3 -m venv v && v/bin/pip install
ctranslate2 numpy), the release build of quill, the model (`Weights/fetch whisper-base`) and the reference
pack's whisper_feats.py for CTranslate2's features (Quill computes the same features itself; its front end
is not timed, as CTranslate2 takes features). Quill's seconds are its own encoder + decoder timings
(`quill transcribe --timings`), CTranslate2's the wall time of `generate` (encoder included); both with the
language given (no detection), best of --repeats. The engines run alternately, clip by clip, so load from
other processes hits both alike. Compute types compared: Quill's f32 path (f32 arithmetic on the file's
f16 values, the same values CTranslate2 widens to f32: the encoder's products on weights packed to f32 at
load, the decoder's per-step matrices packed keeping f16) vs CTranslate2 float32, and Quill q8_0 vs
CTranslate2 int8.
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
    found = list(re.finditer(r"encoder ([0-9.]+) s, decoder ([0-9.]+) s, processor ([0-9.]+) s", r.stderr))
    ids = [int(t) for t in r.stdout.splitlines()[0].split()]
    return min(float(m.group(1)) + float(m.group(2)) for m in found), min(float(m.group(3)) for m in found), ids


def ct2(clip, threads, compute_type):
    script = os.path.join(HERE, "ct2_bench.py")
    r = subprocess.run([a.python, script, a.model, a.clips, "--tools", a.tools, "--compute-type", compute_type,
                        "--threads", str(threads), "--beam", str(a.beam), "--repeats", str(a.repeats),
                        "--task", a.task, "--clips-only", clip], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["seconds"], out["cpu_seconds"], out["ids"]


rows = []
for threads in a.threads:
    for clip in a.only:
        expected = reference[clip][f"{a.task}_beam{a.beam}"]["ids"] if a.beam in (1, 5) else None
        qf = quill(clip, threads, "stored")
        cf = ct2(clip, threads, "float32")
        q8 = quill(clip, threads, "q8_0")
        c8 = ct2(clip, threads, "int8")
        rows.append((threads, clip, qf, cf, q8, c8, expected))
        print(f"  measured {clip} threads {threads}", file=sys.stderr, flush=True)

yes = {True: "y", False: "n"}
print(f"Whisper-base, {a.task}, beam {a.beam}: seconds per clip (encoder + decoding, best of {a.repeats}), wall clock and "
      f"processor time (all threads); ids = same ids as the pack's CTranslate2 float32 result")
for label, quill_column, ct2_column in (("Quill f32 path vs CTranslate2 float32", 2, 3), ("Quill q8_0 vs CTranslate2 int8", 4, 5)):
    print()
    print(label)
    print(f"{'threads':>7} {'clip':>8} | {'quill s':>8} {'ct2 s':>8} {'ratio':>6} | {'quill cpu':>9} {'ct2 cpu':>8} {'ratio':>6} | ids q/c")
    for t in a.threads:
        sub = [r for r in rows if r[0] == t]
        for r in sub:
            q, c = r[quill_column], r[ct2_column]
            print(f"{t:>7} {r[1]:>8} | {q[0]:8.3f} {c[0]:8.3f} {c[0] / q[0]:5.2f}x | {q[1]:9.3f} {c[1]:8.3f} {c[1] / q[1]:5.2f}x | "
                  f"{yes[q[2] == r[6]]}/{yes[c[2] == r[6]]}")
        qw, cw = sum(r[quill_column][0] for r in sub), sum(r[ct2_column][0] for r in sub)
        qc, cc = sum(r[quill_column][1] for r in sub), sum(r[ct2_column][1] for r in sub)
        same = sum(r[quill_column][2] == r[6] for r in sub), sum(r[ct2_column][2] == r[6] for r in sub)
        print(f"{t:>7} {'total':>8} | {qw:8.3f} {cw:8.3f} {cw / qw:5.2f}x | {qc:9.3f} {cc:8.3f} {cc / qc:5.2f}x | "
              f"{same[0]}/{len(sub)} {same[1]}/{len(sub)}")
