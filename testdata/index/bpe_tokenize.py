#!/usr/bin/env python3
"""Pre-tokenize BEIR corpora for `crates/index/examples/bench.rs` with a byte-level BPE.

No model tokenizer exists in the project yet, so this trains one of the same kind and size as
SmolLM2's (byte-level BPE, 49,152 ids, `<|endoftext|>` = id 0 as the separator) on the corpora
themselves. Output: one document a line, token ids separated by spaces, documents in corpus
order, each document SEAL's string `title @@ text` with whitespace collapsed, encoded with a
leading space and no special tokens.

    python3 -m pip install tokenizers==0.22.1
    python3 testdata/index/bpe_tokenize.py OUT.txt CORPUS.jsonl [CORPUS.jsonl ...]
    cargo run --release -p seal-index --example bench -- --tokens OUT.txt --separator 0

Deterministic for a given tokenizers version and input.
"""
import json
import sys

from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers


def documents(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                s = f"{d.get('title', '')} @@ {d.get('text', '')}"
                yield " ".join(s.split())


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    docs = list(documents(paths))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=49152,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    assert tok.token_to_id("<|endoftext|>") == 0
    with open(out, "w") as f:
        for enc in tok.encode_batch(docs, add_special_tokens=False):
            f.write(" ".join(map(str, enc.ids)) + "\n")
    print(f"{len(docs)} documents, vocabulary {tok.get_vocab_size()}", file=sys.stderr)


if __name__ == "__main__":
    main()
