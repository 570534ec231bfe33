"""Development queries held out from training: every 8th judged query of SciFact's train split.

SciFact has no dev split; 100 of its 809 judged train queries are held out from `seal train data`
(--exclude-queries @testdata/dev/scifact-train-dev100.txt) and used to choose the training recipe
(seal eval --split train --queries @...). Deterministic: the ids in order of first appearance in
qrels/train.tsv, every 8th one (index 0, 8, 16, ...), the first 100.

Usage: python3 testdata/dev/make_dev_queries.py ../shared/datasets/scifact > testdata/dev/scifact-train-dev100.txt
"""
import sys

seen = []
with open(f"{sys.argv[1]}/qrels/train.tsv") as f:
    next(f)
    for line in f:
        qid, _doc, score = line.rstrip("\n").split("\t")
        if int(score) > 0 and qid not in seen:
            seen.append(qid)
dev = seen[::8][:100]
print("# SciFact train queries held out for development (testdata/dev/make_dev_queries.py)")
for q in dev:
    print(q)
