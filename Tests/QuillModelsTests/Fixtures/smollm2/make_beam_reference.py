"""Beam-search references for `quill complete --beam 4 --precision f32` (beam4.jsonl beside this file).

transformers fp32 on the SmolLM2 GGUF (every tensor dequantised to float32, as the reference pack does),
generate(num_beams=4, num_return_sequences=4, do_sample=False, length_penalty=1.0, early_stopping=False),
end of sequence = <|im_end|> (2), 1 thread. Prompts: four of the pack's greedy cases (two plain, two chat).

Usage: python make_beam_reference.py ~/.cache/quill/models/SmolLM2-135M-Instruct.Q4_1.gguf > beam4.jsonl
(needs torch, transformers, gguf from PyPI).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
path = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                             dtype=torch.float32)
model.eval()
cases = [json.loads(line) for line in open(os.path.join(here, "greedy.jsonl"))]
EOS = 2
for case in [cases[0], cases[2], cases[6], cases[9]]:
    ids = case["prompt_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), num_beams=4, num_return_sequences=4, do_sample=False,
                             max_new_tokens=32, length_penalty=1.0, early_stopping=False, eos_token_id=EOS,
                             pad_token_id=EOS, output_scores=True, return_dict_in_generate=True)
    hypotheses = []
    for row, score in zip(out.sequences.tolist(), out.sequences_scores.tolist()):
        new = row[len(ids):]
        if EOS in new:
            new = new[: new.index(EOS) + 1]
        hypotheses.append({"ids": new, "score": score})
    print(json.dumps({"name": case["name"], "prompt_ids": ids, "max_new_tokens": 32, "num_beams": 4,
                      "eos": [EOS], "hypotheses": hypotheses}))
