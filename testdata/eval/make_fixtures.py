#!/usr/bin/env python3
"""Writes the metric fixtures of `crates/seal/tests/eval.rs` from reference implementations.

    python3 testdata/eval/make_fixtures.py

Outputs (in testdata/eval/fixtures/):
  qrels.tsv      BEIR-style qrels (header, query-id, corpus-id, score): graded, with 0 and -1 judgments
  run.trec       a TREC run with many tied scores (6-column lines)
  expected.json  per-query and mean values of every metric, computed by ir_measures (pytrec_eval
                 backend, i.e. trec_eval's code), plus answer@k computed by `answer_hits` below
  qa_*.jsonl     passages and queries with answers for the answer@k fixture, and qa_run.trec

The reference libraries are pinned and installed into a throw-away virtual environment (the
script re-runs itself inside it), so nothing is installed into the system Python.
"""

import functools
import json
import os
import random
import re
import string
import subprocess
import sys
import tempfile

PINNED = ["ir-measures==0.3.7", "pytrec-eval-terrier==0.5.7", "numpy==2.2.6"]
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def ensure_reference_libraries():
    try:
        import ir_measures  # noqa: F401

        if ir_measures.__version__ == "0.3.7":
            return
    except ImportError:
        pass
    venv = os.path.join(tempfile.gettempdir(), "seal-eval-fixtures-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", *PINNED])
    os.execv(python, [python, os.path.abspath(sys.argv[0]), *sys.argv[1:]])


def make_run_and_qrels(rng):
    """Random graded judgments and runs with heavy score ties, plus hand-made edge cases."""
    qrels = {}  # qid -> {doc: rel}
    run = {}  # qid -> {doc: score}
    docs = [f"d{i:03d}" for i in range(400)]
    for q in range(25):
        qid = f"q{q:02d}"
        judged = rng.sample(docs, rng.randint(1, 40))
        qrels[qid] = {d: rng.choice([0, 0, 1, 1, 2, 3, -1]) for d in judged}
        retrieved = rng.sample(docs, rng.randint(1, 150))
        # One decimal place: many exact ties, to pin down the tie-break rule.
        run[qid] = {d: round(rng.uniform(0, 5), 1) for d in retrieved}
        # Make sure a few judged documents are retrieved.
        for d in judged[: rng.randint(0, len(judged))]:
            run[qid][d] = round(rng.uniform(0, 5), 1)
    # Edge cases:
    qrels["edge_no_relevant"] = {"d001": 0, "d002": -1}
    run["edge_no_relevant"] = {"d001": 3.0, "d002": 2.0, "d003": 1.0}
    qrels["edge_nothing_retrieved_relevant"] = {"d100": 2}
    run["edge_nothing_retrieved_relevant"] = {"d101": 1.0, "d102": 0.5}
    qrels["edge_all_tied"] = {"d005": 1, "d007": 3}
    run["edge_all_tied"] = {f"d{i:03d}": 1.0 for i in range(12)}
    qrels["edge_negative_scores"] = {"d010": 1, "d011": 2}
    run["edge_negative_scores"] = {"d010": -3.25, "d011": -1.5, "d012": -1.5, "d013": 0.0}
    return qrels, run


MEASURES = {
    "nDCG@10": "nDCG@10",
    "MAP": "AP",
    "R@5": "R@5",
    "R@20": "R@20",
    "R@100": "R@100",
    "P@10": "P@10",
    "gold@1": "Success@1",
    "gold@5": "Success@5",
    "gold@20": "Success@20",
    "gold@100": "Success@100",
}


def reference_metrics(qrels, run):
    import ir_measures

    parsed = {name: ir_measures.parse_measure(spec) for name, spec in MEASURES.items()}
    by_measure = {str(m): name for name, m in parsed.items()}
    per_query = {}
    for metric in ir_measures.iter_calc(list(parsed.values()), qrels, run):
        per_query.setdefault(metric.query_id, {})[by_measure[str(metric.measure)]] = metric.value
    aggregate = ir_measures.calc_aggregate(list(parsed.values()), qrels, run)
    mean = {by_measure[str(m)]: v for m, v in aggregate.items()}
    # ir_measures sends RR@10 to its MS MARCO provider, which breaks score ties by input order.
    # trec_eval's recip_rank on the run cut to its first 10 documents in trec_eval's own order
    # (score descending, ties by document id descending) keeps one tie rule for every metric.
    top10 = {q: {d: docs[d] for d in trec_order(docs)[:10]} for q, docs in run.items()}
    rr = ir_measures.parse_measure("RR")
    for metric in ir_measures.iter_calc([rr], qrels, top10):
        per_query[metric.query_id]["MRR@10"] = metric.value
    mean["MRR@10"] = ir_measures.calc_aggregate([rr], qrels, top10)[rr]
    return per_query, mean


# --- answer@k: an independent implementation of the rule documented in src/eval/metrics.rs ---

UNICODE_PUNCTUATION = "‘’‚‛“”„‟–—―…«»‹›·¡¿′″"
PUNCTUATION = set(string.punctuation) | set(UNICODE_PUNCTUATION)


def normalize_tokens(text):
    text = text.lower()
    text = "".join(" " if c in PUNCTUATION else c for c in text)
    return [t for t in text.split() if t not in ("a", "an", "the")]


def contains_answer(passage_text, answer):
    needle = normalize_tokens(answer)
    hay = normalize_tokens(passage_text)
    if not needle:
        return False
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def answer_hits(ranked_docs, texts, answers, k):
    return float(any(contains_answer(texts[d], a) for d in ranked_docs[:k] for a in answers))


def trec_order(scored):
    """trec_eval's order: score descending, ties by document id descending (strcmp on bytes)."""

    def compare(a, b):
        if a[1] != b[1]:
            return -1 if a[1] > b[1] else 1
        a_id, b_id = a[0].encode(), b[0].encode()
        return -1 if a_id > b_id else (1 if a_id < b_id else 0)

    return [d for d, _ in sorted(scored.items(), key=functools.cmp_to_key(compare))]


def make_qa_fixture(rng):
    passages = [
        ("p0", "Nobel Prize", "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen."),
        ("p1", "Deadpool 2", "Deadpool 2 was released on May 18, 2018, in the United States."),
        ("p2", "U.S. history", "The U.S.A. declared independence in 1776; the war lasted until 1783."),
        ("p3", "Shakespeare", "As You Like It was probably first performed in 1603, at Wilton House."),
        ("p4", "Computers", "Home computers became widespread in the 1980s – in homes and schools alike."),
        ("p5", "An article", "An apple a day keeps the doctor away, said the Doctor."),
        ("p6", "Dates", "Born 1950–1960 in the town of Newton's Hollow."),
        ("p7", "Filler", "Nothing relevant is written here at all."),
    ]
    queries = [
        ("a0", ["Wilhelm Conrad Röntgen"]),
        ("a1", ["May 18, 2018", "18 May 2018"]),
        ("a2", ["U.S.A", "1776"]),
        ("a3", ["1603"]),
        ("a4", ["1980s"]),
        ("a5", ["the Doctor"]),  # articles removed on both sides: "doctor"
        ("a6", ["1950"]),  # "1950–1960": the dash splits the tokens
        ("a7", ["Newton's Hollow"]),
        ("a8", ["Röntgen Wilhelm"]),  # wrong order: no match
        ("a9", ["a", "the"]),  # empty after normalisation: never matches
    ]
    texts = {pid: text for pid, _, text in passages}
    run = {}
    for qid, _ in queries:
        ranked = rng.sample([p for p, _, _ in passages], 8)
        run[qid] = {d: round(rng.uniform(0, 2), 1) for d in ranked}
    expected = {}
    for qid, answers in queries:
        order = trec_order(run[qid])
        expected[qid] = {f"answer@{k}": answer_hits(order, texts, answers, k) for k in (1, 5, 20, 100)}
    return passages, queries, run, expected


def write_run(path, run):
    with open(path, "w") as f:
        for qid in sorted(run):
            for rank, (doc, score) in enumerate(sorted(run[qid].items(), key=lambda x: -x[1]), 1):
                f.write(f"{qid} Q0 {doc} {rank} {score} fixture\n")


def main():
    ensure_reference_libraries()
    import ir_measures

    rng = random.Random(20261126)
    os.makedirs(OUT, exist_ok=True)
    qrels, run = make_run_and_qrels(rng)
    with open(os.path.join(OUT, "qrels.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for doc, rel in sorted(qrels[qid].items()):
                f.write(f"{qid}\t{doc}\t{rel}\n")
    write_run(os.path.join(OUT, "run.trec"), run)
    per_query, mean = reference_metrics(qrels, run)

    passages, queries, qa_run, qa_expected = make_qa_fixture(rng)
    with open(os.path.join(OUT, "qa_corpus.jsonl"), "w") as f:
        for pid, title, text in passages:
            f.write(json.dumps({"_id": pid, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, "qa_queries.jsonl"), "w") as f:
        for qid, answers in queries:
            f.write(json.dumps({"_id": qid, "text": "?", "metadata": {"answers": answers}}, ensure_ascii=False) + "\n")
    write_run(os.path.join(OUT, "qa_run.trec"), qa_run)

    expected = {
        "generator": "testdata/eval/make_fixtures.py",
        "reference": f"ir_measures {ir_measures.__version__} (pytrec_eval backend); answer@k from make_fixtures.py",
        "per_query": per_query,
        "mean": mean,
        "qa_per_query": qa_expected,
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(run)} queries, {sum(len(r) for r in run.values())} run lines")


if __name__ == "__main__":
    main()
