#!/usr/bin/env python3
"""Writes the small seed corpora of the fuzz harnesses (Tests/Fuzz/<harness>/corpus/) from the
test fixtures, shrunk so that each seed stays a few KB: tiny copies of the seq2seq checkpoints
(every width 128 -> 4 etc., same tensor names), a tiny Llama GGUF with a SentencePiece vocabulary,
cut-down tokenizer files and chat templates. Run from anywhere; rerun to regenerate."""
import json, os, random, struct

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "../QuillModelsTests/Fixtures/seq2seq")
SEP = b"\n#####\n"
random.seed(7)

def corpus(harness, name, data):
    d = os.path.join(here, harness, "corpus"); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data if isinstance(data, bytes) else data.encode())

def floats(n):
    return struct.pack("<%df" % n, *[random.uniform(-0.5, 0.5) for _ in range(n)])

def safetensors(tensors):  # name -> (shape, bytes)
    header, blob = {}, b""
    for name, (shape, data) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + blob

# --- checkpoint: config.json SEP generation_config.json SEP model.safetensors, dimensions shrunk.
for model in ["tiny-marian", "tiny-bart", "tiny-t5"]:
    src = os.path.join(fixtures, model)
    config = json.load(open(os.path.join(src, "config.json")))
    generation = open(os.path.join(src, "generation_config.json")).read()
    vocab = 16
    dims = {config["d_model"]: 4, config.get("encoder_ffn_dim", config.get("d_ff", 0)): 8, config["vocab_size"]: vocab}
    if "max_position_embeddings" in config:
        dims[config["max_position_embeddings"] + 2] = 10  # BART's learned table has 2 extra rows
        config["max_position_embeddings"] = 8
    config.update({"d_model": 4, "vocab_size": vocab})
    for key in ["encoder_ffn_dim", "decoder_ffn_dim", "d_ff"]:
        if key in config: config[key] = 8
    for key in ["encoder_attention_heads", "decoder_attention_heads", "num_heads"]:
        if key in config: config[key] = 2
    if "d_kv" in config: config["d_kv"] = 2; dims[config.get("num_heads", 4) * 32] = 4
    if "decoder_vocab_size" in config: config["decoder_vocab_size"] = vocab
    for key in ["pad_token_id", "decoder_start_token_id", "bos_token_id", "eos_token_id", "forced_eos_token_id", "forced_bos_token_id"]:
        if isinstance(config.get(key), int): config[key] = min(config[key], vocab - 1)
    g = json.loads(generation)
    for key in list(g):
        if key.endswith("token_id") and isinstance(g[key], int): g[key] = min(g[key], vocab - 1)
    if "bad_words_ids" in g: g["bad_words_ids"] = [[vocab - 1]]
    f = open(os.path.join(src, "model.safetensors"), "rb")
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__": continue
        shape = [dims.get(d, d) if d != 1 and d != 32 else d for d in info["shape"]]
        if name.endswith("relative_attention_bias.weight"): shape = [32, 2]
        count = 1
        for d in shape: count *= d
        tensors[name] = (shape, floats(count))
    seed = json.dumps(config).encode() + SEP + json.dumps(g).encode() + SEP + safetensors(tensors)
    corpus("checkpoint", model, seed)

# --- sentencepiece: the T5 model with its first 60 pieces and no precompiled normaliser map.
def read_fields(data):
    i, out = 0, []
    while i < len(data):
        key, i = varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0: value, i = varint(data, i); out.append((field, wire, value))
        elif wire == 2:
            length, i = varint(data, i); out.append((field, wire, data[i:i + length])); i += length
        elif wire == 5: out.append((field, wire, data[i:i + 4])); i += 4
        elif wire == 1: out.append((field, wire, data[i:i + 8])); i += 8
        else: raise ValueError(wire)
    return out
def varint(data, i):
    shift = value = 0
    while True:
        b = data[i]; i += 1; value |= (b & 0x7F) << shift; shift += 7
        if b < 0x80: return value, i
def encode_varint(v):
    out = b""
    while True:
        b = v & 0x7F; v >>= 7
        if v: out += bytes([b | 0x80])
        else: return out + bytes([b])
def write_fields(fields):
    out = b""
    for field, wire, value in fields:
        out += encode_varint(field << 3 | wire)
        if wire == 0: out += encode_varint(value)
        elif wire == 2: out += encode_varint(len(value)) + value
        else: out += value
    return out
spm = open(os.path.join(fixtures, "tiny-t5/spiece.model"), "rb").read()
fields = read_fields(spm)
pieces = [f for f in fields if f[0] == 1][:60]
rest = []
for f in fields:
    if f[0] == 3:  # normalizer_spec: drop precompiled_charsmap (field 2)
        rest.append((3, 2, write_fields([g for g in read_fields(f[2]) if g[0] != 2])))
    elif f[0] != 1:
        rest.append(f)
small_spm = write_fields(pieces + rest)
corpus("sentencepiece", "t5-60-pieces.model", small_spm)

# --- gguf: a tiny Llama (width 8, 2 heads, 1 KV head, 1 layer) with those 60 pieces as a llama vocabulary.
def gstr(s): b = s.encode(); return struct.pack("<Q", len(b)) + b
def kv(key, vtype, payload): return gstr(key) + struct.pack("<I", vtype) + payload
spm_pieces = []
for _, _, p in pieces:
    sub = {f: v for f, _, v in read_fields(p)}
    spm_pieces.append((sub.get(1, b"").decode(), struct.unpack("<f", sub[2])[0] if 2 in sub else 0.0, sub.get(3, 1)))
def tiny_gguf(arch, tokenizer_meta, vocabulary, layers=1, extra_meta=(), layer_extras=lambda p, W, hd: []):
    """A GGUF decoder of width 8 (2 heads of 4, 1 KV head, feed-forward 16) with f32 weights."""
    W, F, hd = 8, 16, 4
    meta = [
        kv("general.architecture", 8, gstr(arch)),
        kv(arch + ".block_count", 4, struct.pack("<I", layers)), kv(arch + ".context_length", 4, struct.pack("<I", 32)),
        kv(arch + ".embedding_length", 4, struct.pack("<I", W)), kv(arch + ".feed_forward_length", 4, struct.pack("<I", F)),
        kv(arch + ".attention.head_count", 4, struct.pack("<I", 2)), kv(arch + ".attention.head_count_kv", 4, struct.pack("<I", 1)),
        kv(arch + ".rope.freq_base", 6, struct.pack("<f", 10000.0)),
        kv(arch + ".attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
    ] + list(extra_meta) + tokenizer_meta + [
        kv("tokenizer.chat_template", 8, gstr("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")),
    ]
    tensors = [("token_embd.weight", [W, vocabulary]), ("output_norm.weight", [W]), ("output.weight", [W, vocabulary])]
    for l in range(layers):
        p = "blk.%d." % l
        tensors += [(p + "attn_norm.weight", [W]), (p + "attn_q.weight", [W, W]), (p + "attn_k.weight", [W, hd]),
                    (p + "attn_v.weight", [W, hd]), (p + "attn_output.weight", [W, W]), (p + "ffn_norm.weight", [W]),
                    (p + "ffn_gate.weight", [W, F]), (p + "ffn_up.weight", [W, F]), (p + "ffn_down.weight", [F, W])]
        tensors += layer_extras(p, W, hd)
    infos, data = b"", b""
    for name, dims in tensors:
        count = 1
        for d in dims: count *= d
        infos += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", 0, len(data))
        data += floats(count)
        data += b"\0" * (-len(data) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + infos
    head += b"\0" * (-len(head) % 32)
    return head + data

V = len(spm_pieces)
spm_meta = [
    kv("tokenizer.ggml.model", 8, gstr("llama")),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, V) + b"".join(gstr(p) for p, _, _ in spm_pieces)),
    kv("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, V) + b"".join(struct.pack("<f", s) for _, s, _ in spm_pieces)),
    kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, V) + b"".join(struct.pack("<i", t) for _, _, t in spm_pieces)),
    kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)), kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
]
corpus("gguf", "tiny-llama-spm", tiny_gguf("llama", spm_meta, V))

# --- tokenizer.json and vocab.json + merges.txt: the BART tokenizer cut to its first 300 ids.
tj = json.load(open(os.path.join(fixtures, "tiny-bart/tokenizer.json")))
vocab = {t: i for t, i in tj["model"]["vocab"].items() if i < 300}
merges = [m for m in tj["model"]["merges"] if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
tj["model"]["vocab"], tj["model"]["merges"] = vocab, merges
corpus("tokenizer-json", "bart-300.json", json.dumps(tj, ensure_ascii=False, separators=(",", ":")))
tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                       {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
tj["model"]["merges"] = [" ".join(m) for m in merges]
corpus("tokenizer-json", "smollm-style-300.json", json.dumps(tj, ensure_ascii=False, separators=(",", ":")))
corpus("bpe-files", "bart-300", json.dumps(vocab, ensure_ascii=False).encode() + SEP
       + ("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n").encode())

# --- gguf: Qwen2 (attention biases) with a byte-level BPE vocabulary (those 300 ids and merges), and
# Gemma 3 (query/key norms, post-norms, sliding window) with the SentencePiece one.
bpe_tokens = sorted((t for t in vocab if vocab[t] < 150), key=vocab.get)  # the first 150 ids keep the seed small
bpe_merges = [m for m in merges if m[0] in bpe_tokens and m[1] in bpe_tokens and m[0] + m[1] in bpe_tokens]
bpe_meta = [
    kv("tokenizer.ggml.model", 8, gstr("gpt2")), kv("tokenizer.ggml.pre", 8, gstr("qwen2")),
    kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(bpe_tokens)) + b"".join(gstr(t) for t in bpe_tokens)),
    kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(bpe_merges)) + b"".join(gstr(" ".join(m)) for m in bpe_merges)),
    kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2)),
]
corpus("gguf", "tiny-qwen2-bpe", tiny_gguf("qwen2", bpe_meta, len(bpe_tokens), layer_extras=lambda p, W, hd: [
    (p + "attn_q.bias", [W]), (p + "attn_k.bias", [hd]), (p + "attn_v.bias", [hd])]))
corpus("gguf", "tiny-gemma3-spm", tiny_gguf("gemma3", spm_meta, V, layers=2,
    extra_meta=[kv("gemma3.attention.sliding_window", 4, struct.pack("<I", 4))],
    layer_extras=lambda p, W, hd: [(p + "attn_q_norm.weight", [hd]), (p + "attn_k_norm.weight", [hd]),
                                   (p + "post_attention_norm.weight", [W]), (p + "post_ffw_norm.weight", [W])]))

# --- chat templates: ChatML with and without a default system prompt, and two other families.
chatml = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
corpus("chat-template", "smollm2", chatml)
corpus("chat-template", "chatml-plain", "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
corpus("chat-template", "llama2", "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% endif %}{% endfor %}")
corpus("chat-template", "gemma", "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}")

# --- detokenizer: the first byte seeds the chunking; the rest is UTF-8 (valid and not).
corpus("detokenizer", "mixed", bytes([3]) + "Hello wörld 你好 🙂👍🏽 ∑".encode())
corpus("detokenizer", "invalid", bytes([9]) + b"ab\xe2\x82 \xf0\x9f\x99 \xc3\x28 \xed\xa0\x80 \xff\xfe \xf4\x90\x80\x80 z")
