"""Builds the SentencePiece library reference cases (sentencepiece 0.2.3).

bpe_bytefallback.model: a small BPE model with byte_fallback, trained here on the first 60 kB of
the Hamlet fixture (identity normalisation, like Llama/Gemma), plus a user-defined piece.
spm_random_cases.jsonl: random strings (ASCII, Latin, mixed scripts, emoji, whitespace, controls)
with the library's ids, pieces, normalised text and decode, for the three models.
Run from this directory: python3 make_spm_cases.py
"""
import json, random
import sentencepiece as spm

text = open("../corpus/hamlet.md", encoding="utf-8").read()[:60000]
open("/tmp/spm_train.txt", "w", encoding="utf-8").write(text)
spm.SentencePieceTrainer.train(input="/tmp/spm_train.txt", model_prefix="bpe_bytefallback", vocab_size=600,
                               model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                               character_coverage=1.0, user_defined_symbols=["<sep>"], num_threads=1)

models = {
    "marian": "../seq2seq/tiny-marian/source.spm",
    "t5": "../seq2seq/tiny-t5/spiece.model",
    "bpe": "bpe_bytefallback.model",
}
rng = random.Random(20261126)
alphabets = [
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ.,;:!?'\"-",
    "áéíóúàèñçüößÆœ ﬁﬂ",
    "  \t\n\r\u00a0\u3000\u2028\u200b",
    "日本語テキスト中文한국어",
    "Привет мир Γεια σου مرحبا",
    "😀👍🏽❤️\ufe0f🇩🇪",
    "０１２３ＡＢＣ①②½²Ⅸ",
    "e\u0301a\u0308\u0327",
    "\x00\x01\x1f\x7f\u0085\ufffd\ufeff",
    "▁<sep><s></s><unk>",
]
strings = []
for n in range(400):
    k = rng.randint(1, 3)
    pool = "".join(rng.sample(alphabets, k))
    length = rng.randint(0, 40)
    strings.append("".join(rng.choice(pool) for _ in range(length)))
with open("spm_random_cases.jsonl", "w", encoding="utf-8") as f:
    for name, path in models.items():
        sp = spm.SentencePieceProcessor(model_file=path)
        for i, s in enumerate(strings):
            ids = sp.encode(s)
            rec = {"model": name, "name": f"{name}-{i:03d}", "text": s, "ids": ids,
                   "pieces": [sp.id_to_piece(x) for x in ids], "normalized": sp.normalize(s),
                   "decoded": sp.decode(ids)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
