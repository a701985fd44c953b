"""CTranslate2 side of the Whisper benchmark: seconds per clip (encoder + decoding) for the given
features, compute type and thread count. Prints one JSON object per line.

    python ct2_bench.py MODEL_DIR CLIPS_DIR --tools REFERENCE_TOOLS --compute-type float32 --threads 1 --beam 5

Features come from the reference pack's whisper_feats.py (REFERENCE_TOOLS = shared/reference/tools), which
Quill's front end reproduces exactly, so both engines see the same input and only encoder + decoding is
timed (CTranslate2 takes features, not audio). The best of --repeats runs is reported.
"""
import argparse
import json
import os
import time

import sys

import ctranslate2
import numpy as np

PROMPTS = {"en": 50259, "de": 50261, "fr": 50265, "es": 50262, "de_slow": 50261}

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("clips")
ap.add_argument("--tools", default="/work/shared/reference/tools")
ap.add_argument("--compute-type", default="float32")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--beam", type=int, default=5)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--task", default="transcribe")
ap.add_argument("--clips-only", nargs="*", default=None, help="only these clips")
a = ap.parse_args()
sys.path.insert(0, a.tools)
from whisper_feats import load_wav, log_mel  # noqa: E402

model = ctranslate2.models.Whisper(a.model, device="cpu", compute_type=a.compute_type, intra_threads=a.threads, inter_threads=1)
task = 50359 if a.task == "transcribe" else 50358
for clip, lang in PROMPTS.items():
    if a.clips_only and clip not in a.clips_only:
        continue
    path = os.path.join(a.clips, clip + ".wav")
    if not os.path.exists(path):
        continue
    feats = log_mel(load_wav(path))[None]
    sv = ctranslate2.StorageView.from_array(feats)
    best, best_cpu, ids = None, None, None
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        r = model.generate(sv, [[50258, lang, task, 50363]], beam_size=a.beam, max_length=448, return_scores=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best = dt if best is None else min(best, dt)
        best_cpu = dc if best_cpu is None else min(best_cpu, dc)
        ids = r[0].sequences_ids[0]
    print(json.dumps({"engine": "ctranslate2", "compute_type": a.compute_type, "threads": a.threads, "clip": clip,
                      "task": a.task, "beam": a.beam, "seconds": best, "cpu_seconds": best_cpu, "ids": ids}), flush=True)
