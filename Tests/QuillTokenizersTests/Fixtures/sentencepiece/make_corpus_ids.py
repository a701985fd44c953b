"""Reference ids of the two corpus fixtures for the seq2seq tokenizers and the byte-fallback BPE model.

t5 / bart: Hugging Face `tokenizers` 0.23.3 with the pack's tokenizer.json (what transformers 5 uses),
no special tokens. bpe: sentencepiece 0.2.3. Writes corpus_ids.json (count, first 500 ids, sha256 of
the comma-joined ids). Run from this directory: python3 make_corpus_ids.py
"""
import hashlib, json
import sentencepiece as spm
from tokenizers import Tokenizer

ref = "/work/shared/reference/seq2seq"
encoders = {
    "t5": lambda s: Tokenizer.from_file(f"{ref}/tiny-t5/tokenizer.json").encode(s, add_special_tokens=False).ids,
    "bart": lambda s: Tokenizer.from_file(f"{ref}/tiny-bart/tokenizer.json").encode(s, add_special_tokens=False).ids,
    "bpe": lambda s: spm.SentencePieceProcessor(model_file="bpe_bytefallback.model").encode(s),
}
out = {}
for name, enc in encoders.items():
    for f in ["hamlet.md", "kjv_genesis.txt"]:
        ids = enc(open(f"../corpus/{f}", encoding="utf-8").read())
        out[f"{name}/{f}"] = {"count": len(ids), "first_500": ids[:500],
                              "sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()}
json.dump(out, open("corpus_ids.json", "w"), indent=0)
print({k: v["count"] for k, v in out.items()})
