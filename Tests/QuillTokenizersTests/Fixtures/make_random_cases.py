"""Generates random_cases.jsonl: random strings tokenized by Hugging Face `tokenizers` (0.23.3)
with the SmolLM2 vocabulary under three pre-tokenizers (smollm = the shipped tokenizer.json,
gpt2 = ByteLevel only, llama3 = Llama 3 Split regex + ByteLevel(use_regex=False)).
Run from this directory: python3 make_random_cases.py"""
import json, random
from tokenizers import Tokenizer

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
base = json.load(open("tokenizer.json"))

def variant(pre):
    d = json.loads(json.dumps(base))
    d["pre_tokenizer"] = pre
    return Tokenizer.from_str(json.dumps(d))

tokenizers = {
    "smollm": Tokenizer.from_file("tokenizer.json"),
    "gpt2": variant({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}),
    "llama3": variant({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}),
}

rng = random.Random(20261126)
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680",
          "\u2000", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\u180e",
          "\x1c", "\x1f", " \n ", "\t \t"]
WORDS = ["the", "The", "hello", "world", "don't", "I'm", "we'll", "THEY'RE", "it's", "'s", "'S", "'ll",
         "'LL", "'ve", "'d", "'t", "'", "''", "naïve", "café", "Straße", "ﬁ", "ſ", "İ", "<|im_start|>",
         "<|im_end|>", "<|endoftext|>", "<repo_name>", "<|im_start", "...", "!?", "(x)", "a+b=c", "#",
         "'ſa", "'Sx", "x'LLy", "'ſ", "'Ve", "'REx"]
RANGES = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff),
          (0x660, 0x669), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f),
          (0x2150, 0x218f), (0x2460, 0x24ff), (0x3000, 0x30ff), (0x4e00, 0x4eff), (0xac00, 0xacff),
          (0xff00, 0xffef), (0x1d400, 0x1d7ff), (0x1f300, 0x1f6ff), (0x10000, 0x1007f), (0x0, 0x10ffff)]

def rand_char():
    lo, hi = rng.choice(RANGES)
    while True:
        c = rng.randint(lo, hi)
        if not 0xd800 <= c <= 0xdfff:
            return chr(c)

def rand_text():
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.25: parts.append(rng.choice(SPACES))
        elif r < 0.5: parts.append(rng.choice(WORDS))
        elif r < 0.65: parts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6))))
        else: parts.append("".join(rand_char() for _ in range(rng.randint(1, 5))))
    return "".join(parts)

with open("random_cases.jsonl", "w") as f:
    for i in range(1500):
        t = rand_text()
        row = {"text": t}
        for name, tk in tokenizers.items():
            row[name] = tk.encode(t, add_special_tokens=False).ids
        f.write(json.dumps(row, ensure_ascii=True) + "\n")
