#!/usr/bin/env python3
"""Expected answers for the golden FM-index (`golden_v1.fm`), computed by naive scans in
plain Python, independently of the Rust code: the text in SEAL's layout, a suffix array by
sorting suffixes, and direct pattern matching.

    python3 testdata/index/make_golden_expected.py > testdata/index/golden_expected.txt

Python 3.8 or later, standard library only. Conventions (the crate docs define them): each
document becomes `SEP` + its tokens reversed, a trailing `SEP` ends the text, a sentinel
smaller than every token follows (its suffix is row 0). Occurrences are attributed to the
document of the n-gram's last token, with the forward offset of its first token (0 when the
n-gram reaches back over the document's start).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = 2


def load():
    docs = []
    with open(os.path.join(HERE, "golden_corpus.txt")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            docs.append([int(t) for t in line.split()])
    return docs


def main():
    docs = load()
    text, starts = [], []
    for d in docs:
        starts.append(len(text))
        text.append(SEP)
        text.extend(reversed(d))
    text.append(SEP)
    n = len(text)
    sa = sorted(range(n + 1), key=lambda p: text[p:])

    def doc_at(pos):
        if pos >= n - 1:
            return len(docs) - 1, 0
        d = max(i for i, s in enumerate(starts) if s <= pos)
        return d, len(docs[d]) - (pos - starts[d])

    def occurrences(ngram):
        rev = list(reversed(ngram))
        return [p for p in range(n - len(rev) + 1) if text[p:p + len(rev)] == rev]

    print(f"num_tokens {n}")
    print(f"num_docs {len(docs)}")
    print(f"separator {SEP}")
    for i, d in enumerate(docs):
        print(f"doc {i} {len(d)} :" + "".join(f" {t}" for t in d))
    for row, pos in enumerate(sa):
        print(f"locate {row} {pos}")
    for pos in range(n):
        d, off = doc_at(pos)
        print(f"doc_at {pos} {d} {off}")

    forward = list(reversed(text))
    ngrams = set()
    for k in (1, 2, 3):
        for i in range(len(forward) - k + 1):
            ngrams.add(tuple(forward[i:i + k]))
    ngrams |= {(99,), (7, 7), (SEP, SEP), (SEP, 11, 12, 13), (SEP, 7, 8, 9, 7), (4294967294, 7, SEP)}
    for ng in sorted(ngrams):
        occ = occurrences(list(ng))
        conts = {}
        for p in occ:
            if p > 0:
                conts[text[p - 1]] = conts.get(text[p - 1], 0) + 1
        hits = []
        for p in occ:
            d, last = doc_at(p)
            hits.append((d, max(0, last - (len(ng) - 1))))
        print(
            "ngram " + " ".join(map(str, ng))
            + f" | count {len(occ)}"
            + " | cont " + " ".join(f"{t}:{c}" for t, c in sorted(conts.items()))
            + " | occ " + " ".join(f"{d}:{o}" for d, o in sorted(hits))
        )


if __name__ == "__main__":
    main()
