#!/usr/bin/env python3
"""Recomputes a `seal eval` result with ir_measures and compares the means.

    python3 testdata/eval/check_run.py QRELS.tsv OUT_DIR

OUT_DIR is what `seal eval --out` wrote (run.trec, metrics.json). Uses the same pinned
ir_measures as make_fixtures.py (installed into a throw-away venv on first use). Exits 1 when a
mean differs by more than 1e-6.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (pins and installs the reference libraries)


def main():
    make_fixtures.ensure_reference_libraries()
    import ir_measures

    qrels_path, out_dir = sys.argv[1], sys.argv[2]
    run = list(ir_measures.read_trec_run(os.path.join(out_dir, "run.trec")))
    queries = {r.query_id for r in run}
    qrels = []
    with open(qrels_path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 3 and fields[2].lstrip("-").isdigit() and fields[0] in queries:
                qrels.append(ir_measures.Qrel(fields[0], fields[1], int(fields[2])))
    ours = json.load(open(os.path.join(out_dir, "metrics.json")))["mean"]
    measures = {name: ir_measures.parse_measure(spec) for name, spec in make_fixtures.MEASURES.items()}
    reference = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    worst = 0.0
    for name, measure in measures.items():
        difference = abs(reference[measure] - ours[name])
        worst = max(worst, difference)
        print(f"{name:<10} ir_measures {reference[measure]:.6f}  seal {ours[name]:.6f}")
    # MRR@10 as make_fixtures.py computes it: trec_eval's recip_rank on the first 10 in
    # trec_eval's order (ir_measures' own RR@10 breaks ties by input order).
    by_query = {}
    for r in run:
        by_query.setdefault(r.query_id, {})[r.doc_id] = r.score
    top10 = {q: {d: docs[d] for d in make_fixtures.trec_order(docs)[:10]} for q, docs in by_query.items()}
    rr = ir_measures.parse_measure("RR")
    reference_rr = ir_measures.calc_aggregate([rr], qrels, top10)[rr]
    worst = max(worst, abs(reference_rr - ours["MRR@10"]))
    print(f"{'MRR@10':<10} ir_measures {reference_rr:.6f}  seal {ours['MRR@10']:.6f}")
    print(f"largest difference {worst:.2e}")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()
