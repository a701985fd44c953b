"""Makes the CTranslate2 conversions of tiny-marian used by CTranslate2TransformerTests.

    python -m venv v && v/bin/pip install ctranslate2 transformers torch sentencepiece safetensors
    v/bin/python Tests/QuillModelsTests/Fixtures/ct2-marian/make.py

tiny-marian's pad row (id 999, the decoder start token) is random; real OPUS-MT conversions have a
zero row there, which is what CTranslate2 assumes (it drops the pad token from the vocabulary and
starts decoding from a zero embedding). So the pad row is zeroed first (the test does the same to
its safetensors copy), then the checkpoint is converted with ct2-transformers-converter to float32/
and int8/. ct2_outputs.json holds CTranslate2's own greedy ids for the fixture's sources (12 cases,
24 new tokens) with each model, for reference.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import ctranslate2
import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "seq2seq", "tiny-marian")
PAD = 999

with tempfile.TemporaryDirectory() as work:
    for name in os.listdir(SOURCE):
        if os.path.isfile(os.path.join(SOURCE, name)) and name != "model.safetensors":
            shutil.copy(os.path.join(SOURCE, name), work)
    tensors = load_file(os.path.join(SOURCE, "model.safetensors"))
    tensors["model.shared.weight"][PAD] = 0
    save_file(tensors, os.path.join(work, "model.safetensors"), metadata={"format": "pt"})
    converter = os.path.join(os.path.dirname(sys.executable), "ct2-transformers-converter")
    for quantization in ("float32", "int8"):
        out = os.path.join(HERE, quantization)
        subprocess.run([converter, "--model", work, "--output_dir", out, "--quantization", quantization, "--force"], check=True)

cases = [json.loads(line) for line in open(os.path.join(SOURCE, "cases.jsonl"))]
vocabulary = json.load(open(os.path.join(HERE, "float32", "shared_vocabulary.json")))
outputs = {}
for quantization in ("float32", "int8"):
    translator = ctranslate2.Translator(os.path.join(HERE, quantization), compute_type=quantization, intra_threads=1)
    sources = [[vocabulary[i] for i in c["source_ids"]] for c in cases]
    results = translator.translate_batch(sources, beam_size=1, max_decoding_length=24, return_end_token=True)
    outputs[quantization] = [[vocabulary.index(t) for t in r.hypotheses[0]] for r in results]
json.dump({"note": "CTranslate2 %s greedy ids (without the start token) per tiny-marian case" % ctranslate2.__version__,
           "greedy": outputs}, open(os.path.join(HERE, "ct2_outputs.json"), "w"))
print("wrote", HERE)
