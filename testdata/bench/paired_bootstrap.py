"""Paired comparison of two `seal eval` runs on the same queries: per-query nDCG@10 better/worse counts and
a bootstrap 95 % interval of the mean difference (10,000 resamples, seed 1).

Usage: python3 paired_bootstrap.py A/metrics.json B/metrics.json   (difference = A - B). Standard library only.
"""
import json,random,sys
def per(p):
    m=json.load(open(p)); pq=m.get('per_query') or m.get('queries')
    if isinstance(pq,dict): return {q:v['nDCG@10'] for q,v in pq.items()}
    return {x['query']:(x['metrics']['nDCG@10'] if 'metrics' in x else x['nDCG@10']) for x in pq}
h=per(sys.argv[1]); b=per(sys.argv[2])
qs=sorted(b); d=[h.get(q,0)-b[q] for q in qs]
random.seed(1); bs=sorted(sum(random.choice(d) for _ in d)/len(d) for _ in range(10000))
print(f"{len(qs)} queries: better {sum(x>1e-9 for x in d)}, worse {sum(x<-1e-9 for x in d)}, mean diff {sum(d)/len(d):+.4f}, 95% bootstrap [{bs[250]:+.4f}, {bs[9750]:+.4f}]")
