"""Query-adaptive fusion policies against the fixed z-score fusion, on DEV runs only.

Usage: python3 adaptive_fusion_dev.py NAME,SEAL_RUN,BM25_RUN,QRELS [...]
(runs from `seal eval --system seal|bm25` on SciFact train / NQ q0000-q0499, never a test split).
Prints, per policy and per set: (mean nDCG@10 gain over BM25, queries better, queries worse).
Policies: fixed SEAL weight; weight scaled by the top-k overlap of the two lists; weight gated by
that overlap; weight halved when BM25's / SEAL's top hit stands out (its z-score). Same z-score
interpolation as `seal eval --fusion zscore` (a missing passage takes the list's lowest score).
Standard library only (Python 3.8+).
"""
import sys, math, collections, statistics
def read_run(p):
    r=collections.defaultdict(list)
    for l in open(p):
        q,_,d,rank,s,_=l.split()
        r[q].append((d,float(s)))
    for q in r: r[q].sort(key=lambda x:-x[1])
    return r
def read_qrels(p):
    qr=collections.defaultdict(dict)
    for l in open(p):
        f=l.split('\t')
        if f[0]=='query-id': continue
        qr[f[0]][f[1]]=int(f[2])
    return qr
def ndcg10(ranked, rel):
    dcg=sum((2**rel.get(d,0)-1)/math.log2(i+2) for i,d in enumerate(ranked[:10]))
    ideal=sorted(rel.values(),reverse=True)[:10]
    idcg=sum((2**g-1)/math.log2(i+2) for i,g in enumerate(ideal))
    return dcg/idcg if idcg>0 else 0
def z(lst):
    s=[x for _,x in lst]
    if not s: return {}
    m=sum(s)/len(s); sd=math.sqrt(sum((x-m)**2 for x in s)/len(s))
    return {d:((x-m)/sd if sd>0 else 0.0) for d,x in lst}
def fuse(a,b,w):
    za,zb=z(a),z(b)
    fa=min(za.values()) if za else 0; fb=min(zb.values()) if zb else 0
    ids=set(za)|set(zb)
    return sorted(ids,key=lambda d:(-(w*za.get(d,fa)+(1-w)*zb.get(d,fb)), d))
def overlap(a,b,k):
    return len({d for d,_ in a[:k]}&{d for d,_ in b[:k]})/k
sets=[]
for name,seal,bm25,qrels in [(x.split(',')) for x in sys.argv[1:]]:
    sets.append((name,read_run(seal),read_run(bm25),read_qrels(qrels)))
def evaluate(policy):
    out=[]
    for name,S,B,Q in sets:
        qs=[q for q in S if q in Q]
        base=[ndcg10([d for d,_ in B.get(q,[])],Q[q]) for q in qs]
        fz=[ndcg10(fuse(S[q],B.get(q,[]),policy(S[q],B.get(q,[]))),Q[q]) for q in qs]
        out.append((statistics.mean(fz)-statistics.mean(base), sum(f>b+1e-9 for f,b in zip(fz,base)), sum(f<b-1e-9 for f,b in zip(fz,base))))
    return out
for w in [0.1,0.2,0.3]:
    print('fixed',w,evaluate(lambda a,b,w=w:w))
for k in [10,20]:
  for w in [0.2,0.3,0.4,0.5,0.6]:
    print('overlap',k,w,evaluate(lambda a,b,w=w,k=k:w*overlap(a,b,k)))
  for t in [0.1,0.2,0.3]:
   for w in [0.2,0.3,0.4]:
    print('gate',k,t,w,evaluate(lambda a,b,w=w,k=k,t=t:w if overlap(a,b,k)>=t else 0.0))
def topz(lst):
    zz=z(lst); return max(zz.values()) if zz else 0
print('--- confidence policies')
for t in [3,4,5,6]:
  for w in [0.1,0.2,0.3]:
    print('bm25-conf',t,w,evaluate(lambda a,b,w=w,t=t: w/2 if topz(b)>=t else w))
for t in [3,4,5,6]:
  for w in [0.2,0.3]:
    print('seal-conf',t,w,evaluate(lambda a,b,w=w,t=t: w if topz(a)>=t else w/2))
