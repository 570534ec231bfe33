#!/usr/bin/env python3
"""Offline estimate of length normalization: re-rank existing SEAL run files by score / norm(len) (len in
words of title + text, mean over the corpus) and print nDCG@10 / R@100 for three forms and b in 0..1.
Usage: python3 length_norm_offline.py QRELS RUN [RUN...]  (the corpus: $CORPUS, default ../shared/datasets/scifact beside the checkout). Standard library only."""
import json, math, sys, collections, os
corpus = os.environ.get('CORPUS', os.path.join(os.path.dirname(__file__), '../../../shared/datasets/scifact/corpus.jsonl'))
L={}
for l in open(corpus):
    d=json.loads(l); L[d['_id']]=len((d['title']+' '+d['text']).split())
avg=sum(L.values())/len(L)
qrels=collections.defaultdict(dict)
for i,l in enumerate(open(sys.argv[1])):
    p=l.split()
    if i==0 and not p[-1].isdigit(): continue
    qrels[p[0]][p[1]]=int(p[2])
def load(f):
    r=collections.defaultdict(list)
    for l in open(f):
        q,_,d,rank,s,_=l.split(); r[q].append((float(s),d))
    return r
def ndcg(ranked,rel,k=10):
    dcg=sum(rel.get(d,0)/math.log2(i+2) for i,d in enumerate(ranked[:k]))
    ideal=sorted(rel.values(),reverse=True)[:k]
    idcg=sum(g/math.log2(i+2) for i,g in enumerate(ideal))
    return dcg/idcg if idcg else 0
def rec(ranked,rel,k=100):
    return len([d for d in ranked[:k] if rel.get(d,0)>0])/max(1,len([1 for v in rel.values() if v>0]))
for f in sys.argv[2:]:
    run=load(f)
    for b in [0,0.25,0.5,0.75,1.0]:
      for mode in ['pivot','sqrt','log']:
        if b==0 and mode!='pivot': continue
        nd=[];rc=[]
        for q,v in run.items():
            if q not in qrels: continue
            def norm(d):
                x=L[d]/avg
                if mode=='pivot': return 1-b+b*x
                if mode=='sqrt': return (1-b+b*x)**0.5
                return 1+b*math.log(x) if x>0 else 1
            ranked=[d for s,d in sorted(((s/max(1e-9,norm(d)),d) for s,d in v),key=lambda t:(-t[0],t[1]))]
            nd.append(ndcg(ranked,qrels[q])); rc.append(rec(ranked,qrels[q]))
        print(f.split('/')[0], mode, b, round(sum(nd)/len(nd),4), round(sum(rc)/len(rc),4))
