#!/usr/bin/env python3
"""Writes the tokenizer golden files testdata/tokenizer/<model>.json from an independent
reference: llama.cpp's own tokenizer (through llama-cpp-python) reading the same GGUF file.

Reference (pinned): llama-cpp-python==0.3.16 (it vendors llama.cpp and builds it from source,
which takes minutes; the tokenizer does not depend on its numpy). Set up and run, from the repository root:

    python3 -m venv /tmp/golden-venv
    /tmp/golden-venv/bin/pip install llama-cpp-python==0.3.16
    SMOL=$(cargo run -q -p seal -- model pull smollm2-135m)
    GEMMA=$(cargo run -q -p seal -- model pull gemma3-270m)
    /tmp/golden-venv/bin/python testdata/tokenizer/make_golden.py \
        smollm2-135m="$SMOL" gemma3-270m="$GEMMA"

For each text in TEXTS below, and RANDOM_COUNT seeded random texts, it records the ids from `tokenize(text, add_bos=False,
special=True)` (chat markers written in the text become their single ids; no BOS/EOS),
the reference's decoding of those ids (`detokenize(ids, special=True)`), and every token's
own bytes (`token_to_piece(id, special=True)`). CI does not run this script: the Rust test
(crates/seal/tests/tokenizer.rs) reads the committed JSON.

A larger, uncommitted check on real documents: `--corpus FILE.jsonl --limit N --out OUT.json
NAME=PATH` encodes each BEIR-style record as SEAL's document string " title @@ text" and
writes the same format to OUT.json; then
`SEAL_TOKENIZER_GOLDEN=OUT.json cargo test -p seal --test tokenizer -- --ignored` compares.
"""

import hashlib
import json
import os
import random
import sys

import llama_cpp

REFERENCE = "llama-cpp-python==0.3.16 (llama.cpp tokenizer, vocab_only)"
EXPECTED_VERSION = "0.3.16"

EXPECTED_SHA256 = {
    "smollm2-135m": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "gemma3-270m": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
}

TEXTS = [
    # plain words and leading/trailing/multiple spaces
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "a  b   c    d     e",
    "   ",
    "",
    " " * 40 + "x",
    # digits and numbers
    "1234567890",
    "The year 2024 had 365 days; pi is 3.14159265358979323846.",
    "Numbers: 1,000,000 and 3.5e-7 and 0x1F and -42.",
    # punctuation, quotes, contractions
    "Wait... what?! (Really) [yes] {no} <maybe> \"quoted\" 'single' -- dash",
    "don't can't I'm we've they'll she'd it's DON'T I'M YOU'RE",
    "fn main() { println!(\"{}\", x + 1); } // comment",
    "https://example.com/path?q=1&b=2 user@example.org #tag $5.00 100%",
    # non-ASCII: accents, other scripts, CJK, emoji, combining marks, odd spaces
    "Caf\u00e9 na\u00efve fa\u00e7ade r\u00e9sum\u00e9 \u00c5ngstr\u00f6m Z\u00fcrich S\u00e3o Paulo",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u6587\u672c \ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0939\u093f\u0928\u094d\u0926\u0940 \u0e44\u0e17\u0e22",
    "I love \U0001f980 and \U0001f917! \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 and \ua66e and \U0001f9ec",
    "e\u0301 (e + combining acute) vs \u00e9",
    "non\u00a0breaking\u2009thin\u3000ideographic space",
    # newlines and tabs
    "line one\nline two\n\nline four\r\nwindows\ttab",
    "\n\n\n",
    "\n" * 40 + "end",
    "\t\tindented\n    four spaces",
    # chat markers of both models (each is plain text for the other model)
    "<|im_start|>user\nWhat is SEAL?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nWhat is SEAL?<end_of_turn>\n<start_of_turn>model\n",
    "x<|im_end|>y<end_of_turn>z",
    "<table><tr><td>cell</td></tr></table> <b>bold</b>",
    # long words
    "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism supercalifragilisticexpialidocious",
    # the shapes SEAL tokenizes: documents " Title @@ text" and prompts
    " Autoregressive search engine @@ SEAL generates substrings as document identifiers.",
    " Barack Obama @@ Barack Hussein Obama II (born August 4, 1961) is an American politician who served as the 44th president of the United States from 2009 to 2017.",
    " COVID-19 @@ Coronavirus disease 2019 (COVID-19) is a contagious disease caused by SARS-CoV-2.",
    "Query: what causes malaria?\nKey phrases from a relevant passage:",
]


# Seeded random texts that mix the awkward parts above (whitespace runs, specials of both
# models, byte-fallback characters, combining marks, literal U+2581/U+0120).
RANDOM_SEED = 1234
RANDOM_COUNT = 300
RANDOM_ALPHABET = list("abcXYZ019 _-.,;:!?'\"()[]{}<>/\\@#$%^&*+=|~`") + [
    " ", " ", " ", "\n", "\t", "\r", "\u00a0", "\u2009", "\u3000", "\u00e9", "\u00fc", "\u00df",
    "\u00f8", "\u4e2d", "\u6587", "\u65e5", "\u672c", "\ud55c", "\u0439", "\u0436", "\u03c9",
    "\u03b1", "\u0627", "\u05e9", "\u093f", "\u0e44", "\U0001f600", "\U0001f980", "\U0001f44d",
    "\U0001f3fd", "\u200d", "\u0301", "\U0001d518", "\ua66e", "\ufeff", "\u2028", "\u2460",
    "\u00bd", "\u00b2", "\u0663", "\u0beb",
]
RANDOM_WORDS = [
    "the", " the", "The", "don't", "I'M", "<|im_start|>", "<|im_end|>", "<start_of_turn>",
    "<end_of_turn>", "<eos>", "<bos>", "<pad>", "<b>", "</td>", "@@", " @@ ", "2024", "3.14",
    "hello", "world", "  ", "\n\n", "    ", "\t\t", "<0x0A>", "\u2581", "\u0120",
    "<|endoftext|>", "<unused5>", "<mask>", "[multimodal]",
]


def random_texts():
    rng = random.Random(RANDOM_SEED)
    texts = []
    for _ in range(RANDOM_COUNT):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.35:
                parts.append(rng.choice(RANDOM_WORDS))
            else:
                parts.append("".join(rng.choice(RANDOM_ALPHABET) for _ in range(rng.randint(1, 6))))
        texts.append("".join(parts))
    return texts


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def token_bytes(llm, token):
    buf = (llama_cpp.ctypes.c_char * 256)()
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, len(buf), 0, True)
    if n < 0:
        raise RuntimeError(f"token {token}: piece longer than the buffer")
    return bytes(buf[:n])


def corpus_texts(corpus, limit):
    texts = []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            title, text = record.get("title", "") or "", record.get("text", "") or ""
            texts.append(" " + " ".join(f"{title} @@ {text}".split()))
            if len(texts) >= limit:
                break
    return texts


def golden(name, path, texts=TEXTS):
    sha256 = sha256_of(path)
    if sha256 != EXPECTED_SHA256[name]:
        sys.exit(f"{path}: sha256 {sha256} is not the expected {EXPECTED_SHA256[name]} of {name}")
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for text in texts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        decoded = llm.detokenize(ids, special=True)
        cases.append(
            {
                "text": text,
                "ids": ids,
                "decoded": decoded.decode("utf-8", errors="replace"),
                "decoded_hex": decoded.hex(),
                "token_bytes_hex": [token_bytes(llm, t).hex() for t in ids],
            }
        )
    return {
        "model": name,
        "gguf_sha256": sha256,
        "reference": REFERENCE,
        "vocab_size": llm.n_vocab(),
        "cases": cases,
    }


def main():
    if llama_cpp.__version__ != EXPECTED_VERSION:
        sys.exit(f"llama-cpp-python {llama_cpp.__version__} found; this script is pinned to {EXPECTED_VERSION}")
    out_dir = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    options = {}
    while args and args[0].startswith("--"):
        options[args[0]] = args[1]
        args = args[2:]
    texts = TEXTS + random_texts()
    if "--corpus" in options:
        texts = corpus_texts(options["--corpus"], int(options.get("--limit", "1000")))
    for arg in args:
        name, _, path = arg.partition("=")
        if name not in EXPECTED_SHA256 or not path:
            sys.exit(
                "usage: make_golden.py [--corpus FILE.jsonl --limit N --out OUT.json] NAME=PATH...; "
                f"NAME in {sorted(EXPECTED_SHA256)}"
            )
        result = golden(name, path, texts)
        out = options.get("--out", os.path.join(out_dir, f"{name}.json"))
        with open(out, "w", encoding="utf-8") as f:
            # One case per line: small files, readable diffs.
            cases = result.pop("cases")
            header = json.dumps(result, ensure_ascii=False)[:-1]
            lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
            f.write(f'{header}, "cases": [\n{lines}\n]}}\n')
        print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
