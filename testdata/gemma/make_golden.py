#!/usr/bin/env python3
"""Writes golden.json: reference log-probabilities of Gemma-3-270M (Q4_K_M GGUF) for the Gemma
model tests, computed by llama.cpp through llama-cpp-python on the SAME GGUF file, plus an exact
float64 numpy forward pass over the GGUF's weights dequantized by the `gguf` package.

Pinned versions (a fresh virtual environment; llama-cpp-python builds its vendored llama.cpp
from source with cmake, which takes minutes):

    python3 -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llvenv/bin/pip install llama-cpp-python==0.3.16 numpy==2.4.6 gguf==0.17.1
    /tmp/llvenv/bin/python testdata/gemma/make_golden.py ~/.cache/seal/gemma3-270m/gemma-3-270m-q4_k_m.gguf

For every prompt the fixture holds the token ids (llama.cpp's tokenizer with its BOS, so the
Rust test does not depend on ours) and, at every position, llama.cpp's 20 most likely next
tokens with their log-probabilities (log-softmax over the full 262,144-token vocabulary, in
float64), plus `exact`: the log-probabilities of the same 20 ids from the float64 forward pass
(no 8-bit activations, no f16 cache, no f16 GELU table), which measures how far both llama.cpp
and we are from the exact model. The prompt is fed one token at a time, as for the llama
fixture (see testdata/llama/make_golden.py for why).

The float64 pass is written from the Gemma 3 description (embedding × √d, norms as stored since
the GGUF converter adds Gemma's `1 +`, pre/post attention and feed-forward norms, per-head Q/K
norms, "neox" RoPE with base 10,000 on sliding layers and `rope.freq_base` on every 6th, global,
layer, attention scale 1/√head_dim, GELU(tanh)-gated feed-forward, tied head).
"""
import hashlib
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf.quants import dequantize
from llama_cpp import Llama, __version__ as llama_cpp_version

PROMPTS = [
    "The capital of France is Paris. The capital of Germany is",
    "Query: what causes ocean tides?\nKey phrases from a relevant passage: gravitational pull of the moon\n\n"
    "Query: how do vaccines train the immune system?\nKey phrases from a relevant passage:",
    "<start_of_turn>user\nWrite a short phrase from a passage that answers: who discovered penicillin?<end_of_turn>\n"
    "<start_of_turn>model\n",
    "In 1969, Apollo 11 landed on the Moon; Überraschend, n'est-ce pas? 3.14159 + 2 = ",
]
TOP = 20


def exact_log_probs(weights, meta, tokens):
    """Float64 Gemma 3 forward pass."""
    n = len(tokens)
    d, heads, kv_heads, hd = meta["d"], meta["heads"], meta["kv_heads"], meta["head_dim"]

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + meta["eps"]) * w

    def rope_tables(base):
        inv = base ** (-np.arange(0, hd, 2) / hd)
        ang = np.arange(n)[:, None] * inv[None, :]
        return np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    tables = {"local": rope_tables(10000.0), "global": rope_tables(meta["base"])}

    def rope(v, kind):
        cos, sin = tables[kind]
        a, b = v[..., : hd // 2], v[..., hd // 2 :]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    x = weights["token_embd.weight"][tokens] * np.sqrt(d)
    pos = np.arange(n)
    causal = pos[None, :] <= pos[:, None]
    for layer in range(meta["layers"]):
        w = lambda name: weights[f"blk.{layer}.{name}"]
        sliding = (layer + 1) % 6 != 0
        kind = "local" if sliding else "global"
        allowed = causal & ((pos[:, None] - pos[None, :]) < meta["window"]) if sliding else causal
        mask = np.where(allowed, 0.0, -np.inf)[None]
        h = rms(x, w("attn_norm.weight"))
        q = rms((h @ w("attn_q.weight").T).reshape(n, heads, hd), w("attn_q_norm.weight"))
        k = rms((h @ w("attn_k.weight").T).reshape(n, kv_heads, hd), w("attn_k_norm.weight"))
        v = (h @ w("attn_v.weight").T).reshape(n, kv_heads, hd)
        q, k = rope(q, kind), rope(k, kind)
        k = np.repeat(k, heads // kv_heads, axis=1)
        v = np.repeat(v, heads // kv_heads, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hqk,khd->qhd", s, v).reshape(n, heads * hd) @ w("attn_output.weight").T
        x = x + rms(a, w("post_attention_norm.weight"))
        h = rms(x, w("ffn_norm.weight"))
        f = (gelu(h @ w("ffn_gate.weight").T) * (h @ w("ffn_up.weight").T)) @ w("ffn_down.weight").T
        x = x + rms(f, w("post_ffw_norm.weight"))
    logits = rms(x, weights["output_norm.weight"]) @ weights["token_embd.weight"].T
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def main() -> None:
    model_path = Path(sys.argv[1])
    out_path = Path(__file__).with_name("golden.json")
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    llm = Llama(
        model_path=str(model_path),
        n_ctx=256,
        n_batch=256,
        n_threads=2,
        logits_all=True,
        verbose=False,
    )
    reader = gguf.GGUFReader(str(model_path))
    weights = {
        t.name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
            [int(x) for x in reversed(t.shape)]
        )
        for t in reader.tensors
    }
    field = lambda key: reader.fields[key].contents()
    meta = {
        "d": field("gemma3.embedding_length"),
        "heads": field("gemma3.attention.head_count"),
        "kv_heads": field("gemma3.attention.head_count_kv"),
        "head_dim": field("gemma3.attention.key_length"),
        "layers": field("gemma3.block_count"),
        "eps": field("gemma3.attention.layer_norm_rms_epsilon"),
        "base": field("gemma3.rope.freq_base"),
        "window": field("gemma3.attention.sliding_window"),
    }
    cases = []
    for text in PROMPTS:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        rows = []
        llm.reset()
        for k, token in enumerate(tokens):
            llm.eval([token])
            rows.append(np.array(llm.scores[k], dtype=np.float64))
        logits = np.stack(rows)
        m = logits.max(axis=1, keepdims=True)
        logprobs = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        exact = exact_log_probs(weights, meta, tokens)
        positions = []
        exact_positions = []
        for row, exact_row in zip(logprobs, exact):
            top = np.argsort(-row, kind="stable")[:TOP]
            positions.append([[int(i), round(float(row[i]), 6)] for i in top])
            exact_positions.append([round(float(exact_row[i]), 6) for i in top])
        cases.append(
            {"text": text, "tokens": [int(t) for t in tokens], "top": positions, "exact": exact_positions}
        )
    golden = {
        "reference": f"llama-cpp-python {llama_cpp_version} (vendored llama.cpp), n_threads=2, one token per evaluation",
        "exact_reference": f"numpy {np.__version__} float64 forward pass, weights dequantized by gguf-py {gguf.__version__ if hasattr(gguf, '__version__') else '0.17.1'}",
        "model_file": model_path.name,
        "model_sha256": sha,
        "top_k": TOP,
        "cases": cases,
    }
    out_path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {out_path} ({len(cases)} prompts, {sum(len(c['tokens']) for c in cases)} positions)")


if __name__ == "__main__":
    main()
