"""Tiny random Llamas with RoPE scaling, written as GGUF files, and transformers' logits for them.

Two models (same shapes, own random weights), each written to `<name>.gguf` as Llama GGUF converters
write Llama 3.x files, with transformers fp32 (eager attention, 1 thread) logits of every position of
one token sequence beside it:

- `tiny-llama3-rope`: rope_type "llama3" (Llama 3.1/3.2), factor 8, low/high frequency factors 1/4,
  original_max_position_embeddings 64. The GGUF carries it as `rope_freqs.weight`: per RoPE pair the
  divisor of its frequency (1 for short wavelengths, the factor for long ones, smoothed between).
- `tiny-linear-rope`: rope_type "linear", factor 4: `llama.rope.scaling.type` = linear and
  `llama.rope.scaling.factor` = 4.

Head dimension 16 with RoPE base 10,000 gives wavelengths 6.3, 19.9, 62.8, 199, 628… positions, so the
llama3 model has an unscaled pair, two smoothed pairs and five fully scaled ones. The sequence has 192
tokens: positions run to 3× the original context. `reference.json` also records, per model, the largest
logit difference transformers gives for the same weights WITHOUT the scaling: a test tolerance far
below it shows the scaling is really exercised.

Q and K rows are permuted for ggml's adjacent-pair RoPE, as Llama GGUF converters do.
Logits are little-endian float32, (tokens, vocabulary), row-major, in `<name>.logits.f32`.

Usage: python make_fixtures.py   (needs torch, transformers, gguf, numpy from PyPI; writes beside itself)
"""
import json
import math
import os

import gguf
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

torch.set_num_threads(1)
here = os.path.dirname(os.path.abspath(__file__))

VOCAB, WIDTH, FFN, LAYERS, HEADS, KV_HEADS = 64, 64, 96, 2, 4, 2
HEAD_DIM = WIDTH // HEADS
THETA, EPS, MAX_POSITIONS, TOKENS = 10_000.0, 1e-5, 256, 192

MODELS = {
    "tiny-llama3-rope": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64},
    "tiny-linear-rope": {"rope_type": "linear", "factor": 4.0},
}


def config(scaling):
    kwargs = dict(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=FFN, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
                  max_position_embeddings=MAX_POSITIONS, rms_norm_eps=EPS, tie_word_embeddings=False,
                  attention_bias=False, mlp_bias=False, hidden_act="silu")
    if int(transformers.__version__.split(".")[0]) >= 5:
        kwargs["rope_parameters"] = {"rope_theta": THETA, **(scaling or {"rope_type": "default"})}
    else:
        kwargs["rope_theta"] = THETA
        kwargs["rope_scaling"] = scaling
    c = LlamaConfig(**kwargs)
    c._attn_implementation = "eager"
    return c


def random_model(scaling, seed):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config(scaling)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.8, 1.2)
            elif "embed_tokens" in name:
                p.normal_(0, 1.0)
            else:  # std ≈ 1.5/√fan_in: attention scores and logits spread enough to notice any error
                p.normal_(0, 1.5 / math.sqrt(p.shape[1]))
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def llama3_frequency_factors(s):
    """Per RoPE pair, the divisor of its frequency that transformers' llama3 rope type applies."""
    inv_freq = 1.0 / (THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM))
    old = s["original_max_position_embeddings"]
    low_wavelength, high_wavelength = old / s["low_freq_factor"], old / s["high_freq_factor"]
    factors = []
    for f in inv_freq:
        wavelength = 2 * math.pi / f
        if wavelength < high_wavelength:
            factors.append(1.0)
        elif wavelength > low_wavelength:
            factors.append(s["factor"])
        else:
            smooth = (old / wavelength - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            factors.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def permute_for_adjacent_rope(w, heads):
    """HF rotates halves of each head; ggml's normal RoPE rotates adjacent pairs: interleave the halves."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, model, scaling):
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(os.path.basename(path).removesuffix(".gguf"))
    w.add_block_count(LAYERS)
    w.add_context_length(MAX_POSITIONS)
    w.add_embedding_length(WIDTH)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(THETA)
    w.add_layer_norm_rms_eps(EPS)
    if scaling["rope_type"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
    else:
        w.add_tensor("rope_freqs.weight", llama3_frequency_factors(scaling))
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for l in range(LAYERS):
        p, b = f"model.layers.{l}.", f"blk.{l}."
        w.add_tensor(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(b + "attn_q.weight", permute_for_adjacent_rope(sd[p + "self_attn.q_proj.weight"], HEADS))
        w.add_tensor(b + "attn_k.weight", permute_for_adjacent_rope(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
        w.add_tensor(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


reference = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}}
rng = np.random.default_rng(7)
for seed, (name, scaling) in enumerate(MODELS.items(), start=1):
    model = random_model(scaling, seed)
    # transformers' own frequencies must be what the GGUF encodes (guards against a renamed config key).
    inv_freq = model.model.rotary_emb.inv_freq.double().numpy()
    default = 1.0 / (THETA ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM))
    divisors = llama3_frequency_factors(scaling) if scaling["rope_type"] == "llama3" else scaling["factor"]
    assert np.allclose(inv_freq, default / divisors, rtol=1e-5), (inv_freq, default / divisors)

    ids = rng.integers(0, VOCAB, TOKENS).tolist()
    scaled = logits(model, ids)
    unscaled_model = LlamaForCausalLM(config(None)).eval()
    unscaled_model.load_state_dict(model.state_dict())
    unscaled = logits(unscaled_model, ids)

    write_gguf(os.path.join(here, name + ".gguf"), model, scaling)
    scaled.astype("<f4").tofile(os.path.join(here, name + ".logits.f32"))
    reference["models"][name] = {
        "rope_scaling": scaling, "token_ids": ids, "vocabulary": VOCAB,
        "logit_std": float(scaled.std()),
        "max_abs_logit_difference_without_scaling": float(np.abs(scaled - unscaled).max()),
    }
    print(name, "logit std", scaled.std(), "max |Δ| without scaling", np.abs(scaled - unscaled).max())

with open(os.path.join(here, "reference.json"), "w") as f:
    json.dump(reference, f, indent=1)
    f.write("\n")
