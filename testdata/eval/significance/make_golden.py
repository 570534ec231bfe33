"""Golden values for the statistics of `seal eval compare` (crates/seal/src/eval/significance.rs),
written to golden.json beside this script by plain Python 3 (standard library only; written with
Python 3.11, any 3.8+ gives the same bytes):

1. `same_generator`: the randomization p-value, the bootstrap p-value and the percentile-bootstrap
   interval computed exactly as the Rust code does, with the same generator (SplitMix64) and
   float operations in the same order. Rust must reproduce them to 1e-12.
2. `exact`: values that depend on no generator at all. The randomization p-value over all 2^n
   sign patterns (a dynamic programme over the sums), and the 2.5 % / 97.5 % quantiles of the
   exact bootstrap distribution of the mean difference (the n-fold convolution of the
   differences' empirical distribution, in integer counts). Rust's Monte-Carlo values must come
   within their sampling error (and, for the quantiles, one grid step).

Per-query scores are on a grid of 1/20 (like P@10 or a recall over few relevant documents), so
that sums are exact integers in grid units here. Case `hand-20` is written by hand; `lcg-70`
(70 queries: more than one 64-bit word of sign flips per trial) comes from a fixed LCG.

Usage: python3 testdata/eval/significance/make_golden.py
"""
import json
import os

MASK = (1 << 64) - 1
GRID = 20  # scores are k / GRID
TIE = 1e-12


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n


def mean(values):
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def randomization_p(d, trials, seed):
    n = len(d)
    observed = abs(mean(d))
    rng = SplitMix64(seed)
    extreme = 0
    for _ in range(trials):
        total = 0.0
        bits = 0
        for i, x in enumerate(d):
            if i % 64 == 0:
                bits = rng.next_u64()
            total += -x if (bits >> (i % 64)) & 1 else x
        if abs(total / n) >= observed - TIE:
            extreme += 1
    return (extreme + 1) / (trials + 1)


def bootstrap_p(d, trials, seed):
    n = len(d)
    observed = mean(d)
    centred = [x - observed for x in d]
    rng = SplitMix64(seed)
    extreme = 0
    for _ in range(trials):
        total = 0.0
        for _ in range(n):
            total += centred[rng.below(n)]
        if abs(total / n) >= abs(observed) - TIE:
            extreme += 1
    return (extreme + 1) / (trials + 1)


def quantile(sorted_values, q):
    position = (len(sorted_values) - 1) * min(max(q, 0.0), 1.0)
    below = int(position)  # floor: position >= 0
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (position - below) * (sorted_values[above] - sorted_values[below])


def bootstrap_interval(d, resamples, confidence, seed):
    n = len(d)
    rng = SplitMix64(seed)
    means = []
    for _ in range(max(resamples, 1)):
        total = 0.0
        for _ in range(n):
            total += d[rng.below(n)]
        means.append(total / n)
    means.sort()
    tail = (1.0 - confidence) / 2.0
    return [quantile(means, tail), quantile(means, 1.0 - tail)]


def exact_randomization_p(d_units):
    """P(|sum of randomly signed d| >= |observed sum|) over all 2^n sign patterns, exactly."""
    counts = {0: 1}
    for x in d_units:
        nxt = {}
        for s, c in counts.items():
            nxt[s + x] = nxt.get(s + x, 0) + c
            nxt[s - x] = nxt.get(s - x, 0) + c
        counts = nxt
    observed = abs(sum(d_units))
    extreme = sum(c for s, c in counts.items() if abs(s) >= observed)
    return extreme / 2 ** len(d_units)


def exact_bootstrap_quantiles(d_units, confidence):
    """The (1 - c)/2 and (1 + c)/2 quantiles (smallest x with CDF(x) >= q) of the mean of n
    draws with replacement from d, in score units, from the exact distribution."""
    n = len(d_units)
    pmf = {}
    for x in d_units:
        pmf[x] = pmf.get(x, 0) + 1
    dist = {0: 1}
    for _ in range(n):
        nxt = {}
        for s, c in dist.items():
            for x, w in pmf.items():
                nxt[s + x] = nxt.get(s + x, 0) + c * w
        dist = nxt
    total = n ** n
    tail = (1 - confidence) / 2
    result = []
    for q in (tail, 1 - tail):
        running = 0
        for s in sorted(dist):
            running += dist[s]
            if running >= q * total:
                result.append(s / (GRID * n))
                break
    return result


def case(name, baseline_units, system_units, trials=10_000, seed=1, confidence=0.95):
    baseline = [b / GRID for b in baseline_units]
    system = [s / GRID for s in system_units]
    d = [s - b for s, b in zip(system, baseline)]
    d_units = [s - b for s, b in zip(system_units, baseline_units)]
    return {
        "name": name,
        "baseline": baseline,
        "system": system,
        "trials": trials,
        "seed": seed,
        "confidence": confidence,
        "wins": sum(x > 0 for x in d_units),
        "ties": sum(x == 0 for x in d_units),
        "losses": sum(x < 0 for x in d_units),
        "same_generator": {
            "randomization_p": randomization_p(d, trials, seed),
            "bootstrap_p": bootstrap_p(d, trials, seed),
            "interval": bootstrap_interval(d, trials, confidence, seed + 1),
        },
        "exact": {
            "mean_difference": sum(d_units) / (GRID * len(d_units)),
            "randomization_p": exact_randomization_p(d_units),
            "bootstrap_quantiles": exact_bootstrap_quantiles(d_units, confidence),
            "grid_step": 1 / (GRID * len(d_units)),
        },
    }


def lcg_scores(seed, count):
    state = seed
    out = []
    for _ in range(count):
        state = (6364136223846793005 * state + 1442695040888963407) & MASK
        out.append((state >> 33) % (GRID + 1))
    return out


def main():
    hand_baseline = [10, 12, 0, 20, 5, 8, 14, 16, 3, 20, 11, 9, 0, 7, 15, 18, 4, 6, 13, 10]
    hand_system = [12, 12, 4, 20, 9, 6, 14, 19, 3, 17, 15, 13, 2, 7, 15, 20, 8, 5, 16, 10]
    baseline = lcg_scores(7, 70)
    # A shifted, noisy copy: +1 grid step on average, clipped to [0, GRID].
    noise = lcg_scores(11, 70)
    system = [min(GRID, max(0, b + (k % 7) - 2)) for b, k in zip(baseline, noise)]
    golden = {
        "about": "written by testdata/eval/significance/make_golden.py; see its docstring",
        "generator": "splitmix64",
        "cases": [
            case("hand-20", hand_baseline, hand_system),
            case("lcg-70", baseline, system, seed=42),
        ],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")
    with open(path + ".tmp", "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("wrote", path)


if __name__ == "__main__":
    main()
