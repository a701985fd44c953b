#!/usr/bin/env python3
"""Writes a random-initialised Marian checkpoint with opus-mt-en-de's shapes, for benchmarks.

d_model 512, 6 encoder + 6 decoder layers, 8 heads, FFN 2048, vocab 58,101, SiLU ("swish"),
shared embeddings, final_logits_bias; F32 safetensors written with numpy only (no torch).
The weights are random, so the output is nonsense, but every matrix has the real size, which
is all that speed measurements need. There is no tokenizer: drive it with token ids
(`quill translate --input-ids --ids`).

usage: Weights/make-opus-mt-shaped.py OUTPUT_DIR [--seed N] [--dtype f32|f16|bf16]
"""
import argparse
import json
import os
import struct

import numpy as np

D, LAYERS, HEADS, FFN, VOCAB, MAX_POS = 512, 6, 8, 2048, 58101, 512
PAD, EOS = 58100, 0


def tensors(rng):
    def mat(rows, cols, std):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * std).astype(np.float32)

    def vec(n, mean=0.0, std=0.02):
        return (mean + rng.standard_normal(n, dtype=np.float32) * std).astype(np.float32)

    out = {"model.shared.weight": mat(VOCAB, D, 0.05), "final_logits_bias": vec(VOCAB, std=0.1).reshape(1, VOCAB)}
    for stack in ("encoder", "decoder"):
        for i in range(LAYERS):
            p = f"model.{stack}.layers.{i}."
            attentions = ["self_attn"] + (["encoder_attn"] if stack == "decoder" else [])
            for a in attentions:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    out[p + f"{a}.{proj}.weight"] = mat(D, D, D ** -0.5)
                    out[p + f"{a}.{proj}.bias"] = vec(D)
                out[p + f"{a}_layer_norm.weight"] = vec(D, 1.0, 0.1)
                out[p + f"{a}_layer_norm.bias"] = vec(D)
            out[p + "fc1.weight"] = mat(FFN, D, D ** -0.5)
            out[p + "fc1.bias"] = vec(FFN)
            out[p + "fc2.weight"] = mat(D, FFN, FFN ** -0.5)
            out[p + "fc2.bias"] = vec(D)
            out[p + "final_layer_norm.weight"] = vec(D, 1.0, 0.1)
            out[p + "final_layer_norm.bias"] = vec(D)
    return out


def to_dtype(array, dtype):
    if dtype == "f32":
        return "F32", array.astype("<f4").tobytes()
    if dtype == "f16":
        return "F16", array.astype("<f2").tobytes()
    bits = array.astype("<f4").view("<u4")
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
    return "BF16", rounded.tobytes()


def write_safetensors(path, named, dtype):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(named):
        code, blob = to_dtype(named[name], dtype)
        header[name] = {"dtype": code, "shape": list(named[name].shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data section 8-byte aligned, as the safetensors library does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    config = {
        "model_type": "marian", "architectures": ["MarianMTModel"], "activation_function": "swish",
        "d_model": D, "encoder_layers": LAYERS, "decoder_layers": LAYERS,
        "encoder_attention_heads": HEADS, "decoder_attention_heads": HEADS,
        "encoder_ffn_dim": FFN, "decoder_ffn_dim": FFN, "vocab_size": VOCAB, "decoder_vocab_size": VOCAB,
        "max_position_embeddings": MAX_POS, "scale_embedding": True, "normalize_before": False,
        "static_position_embeddings": True, "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
        "pad_token_id": PAD, "eos_token_id": EOS, "bos_token_id": EOS, "decoder_start_token_id": PAD,
        "forced_eos_token_id": EOS, "is_encoder_decoder": True,
    }
    generation = {"bad_words_ids": [[PAD]], "bos_token_id": EOS, "decoder_start_token_id": PAD, "eos_token_id": EOS,
                  "forced_eos_token_id": EOS, "max_length": 512, "num_beams": 4, "pad_token_id": PAD}
    with open(os.path.join(args.output, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(args.output, "generation_config.json"), "w") as f:
        json.dump(generation, f, indent=2)
    write_safetensors(os.path.join(args.output, "model.safetensors"), tensors(np.random.default_rng(args.seed)), args.dtype)
    print(f"wrote {args.output} ({args.dtype})")


if __name__ == "__main__":
    main()
