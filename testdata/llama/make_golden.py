#!/usr/bin/env python3
"""Writes golden.json: reference log-probabilities of SmolLM2-135M-Instruct (Q4_1 GGUF) for the
llama model tests, computed by llama.cpp through llama-cpp-python on the SAME GGUF file.

Pinned versions (install in a fresh virtual environment; llama-cpp-python builds its vendored
llama.cpp from source with cmake, which takes minutes):

    python3 -m venv /tmp/llvenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llvenv/bin/pip install llama-cpp-python==0.3.16 numpy==2.1.3 gguf==0.17.1
    /tmp/llvenv/bin/python testdata/llama/make_golden.py /path/to/SmolLM2-135M-Instruct.Q4_1.gguf

For every prompt the fixture holds the token ids (from llama.cpp's tokenizer, so the Rust test
does not depend on ours) and, at every position, the 20 most likely next tokens with their
log-probabilities (log-softmax over the full vocabulary, computed here in float64), plus
`exact`: the log-probabilities of the same 20 ids from a float64 numpy forward pass over the
GGUF's weights dequantized by the `gguf` package (no quantized activations, no f16 cache), a
second, independent reference that measures how far both llama.cpp and we are from the exact
model. The
prompt is fed one token at a time (see the comment below).
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
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a short phrase from a passage that answers: what causes tides?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong and Buzz Aldrin walked on its surface "
    "while Michael Collins orbited above. Überraschend, n'est-ce pas? 3.14159 + 2 = ",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
]
TOP = 20


def exact_log_probs(weights, meta, tokens):
    """Float64 llama forward pass (adjacent-pair RoPE, grouped-query attention, SwiGLU)."""
    n = len(tokens)
    d, heads, kv_heads = meta["d"], meta["heads"], meta["kv_heads"]
    hd = d // heads
    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + meta["eps"]) * w
    inv = meta["base"] ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    def rope(v):
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out
    x = weights["token_embd.weight"][tokens]
    mask = np.triu(np.full((n, n), -np.inf), 1)[None]
    for layer in range(meta["layers"]):
        w = lambda name: weights[f"blk.{layer}.{name}"]
        h = rms(x, w("attn_norm.weight"))
        q = rope((h @ w("attn_q.weight").T).reshape(n, heads, hd))
        k = rope((h @ w("attn_k.weight").T).reshape(n, kv_heads, hd))
        v = (h @ w("attn_v.weight").T).reshape(n, kv_heads, hd)
        k = np.repeat(k, heads // kv_heads, axis=1)
        v = np.repeat(v, heads // kv_heads, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", s, v).reshape(n, d) @ w("attn_output.weight").T
        h = rms(x, w("ffn_norm.weight"))
        g = h @ w("ffn_gate.weight").T
        x = x + (g / (1 + np.exp(-g)) * (h @ w("ffn_up.weight").T)) @ w("ffn_down.weight").T
    head = weights.get("output.weight", weights["token_embd.weight"])
    logits = rms(x, weights["output_norm.weight"]) @ head.T
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def main() -> None:
    model_path = Path(sys.argv[1])
    out_path = Path(__file__).with_name("golden.json")
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    llm = Llama(
        model_path=str(model_path),
        n_ctx=512,
        n_batch=512,
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
        "d": field("llama.embedding_length"),
        "heads": field("llama.attention.head_count"),
        "kv_heads": field("llama.attention.head_count_kv"),
        "layers": field("llama.block_count"),
        "eps": field("llama.attention.layer_norm_rms_epsilon"),
        "base": field("llama.rope.freq_base"),
    }
    cases = []
    for text in PROMPTS:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        # One token per evaluation (batch size 1), reading the row of the newest position.
        # Two batched alternatives were rejected after checking them against a numpy float64
        # forward pass over the dequantized weights: with logits_all=True, llama-cpp-python
        # 0.3.16 returns misaligned rows for the earlier positions of a batch, and one
        # evaluation per prefix gave logits off by several nats for some prefix lengths (e.g. 32
        # tokens) on this machine; one token at a time agrees with the float64 reference.
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
        "exact_reference": f"numpy {np.__version__} float64 forward pass, weights dequantized by gguf-py",
        "model_file": model_path.name,
        "model_sha256": sha,
        "top_k": TOP,
        "cases": cases,
    }
    out_path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {out_path} ({len(cases)} prompts, {sum(len(c['tokens']) for c in cases)} positions)")


if __name__ == "__main__":
    main()
