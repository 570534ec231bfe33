"""llama.cpp's CPU time per stage, measured in-process with llama-cpp-python (pinned: 0.3.16),
for comparison with `model_bench` (SEAL_BENCH_CPU=1) on a machine shared with other jobs, where
wall-clock time mostly measures the neighbours. With n_threads=1 ggml computes on the calling
thread, so `time.thread_time()` around `llama_decode` is llama.cpp's compute.

Same shapes as `model_bench` / `llama-batched-bench -pps`: a 48-token prompt (one sequence);
decoding steps of B sequences sharing a 48-token prompt (the prompt's tokens belong to all B
sequences), median of 10 steps; logits of every new token are requested (llama.cpp then writes
B x 49,152 logits, no softmax).

With --wall (for --threads 2 and more, against `model_bench` at RAYON_NUM_THREADS=2) the clock is
the wall clock (`time.perf_counter()`), which on a shared machine includes the neighbours: run
both in alternation and compare medians.

usage: /path/to/venv/bin/python llamacpp_cpu.py MODEL.gguf [--threads 1] [--runs 7] [--wall]
"""
import argparse
import statistics
import time

import llama_cpp as ll


def tokens(n, seed):
    s, out = seed, []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(1000 + (s >> 33) % 20000)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--wall", action="store_true", help="wall clock instead of thread CPU time")
    a = ap.parse_args()
    clock, unit = (time.perf_counter, "wall") if a.wall else (time.thread_time, "CPU")
    ll.llama_backend_init()
    mp = ll.llama_model_default_params()
    model = ll.llama_model_load_from_file(a.model.encode(), mp)
    cp = ll.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 2048, 2048, 512, 16
    cp.n_threads = cp.n_threads_batch = a.threads
    cp.kv_unified = True  # one cache shared by all sequences, as llama-batched-bench -pps
    ctx = ll.llama_init_from_model(model, cp)
    mem = ll.llama_get_memory(ctx)
    batch = ll.llama_batch_init(512, 0, 16)

    def decode(toks, positions, seqs, logits):
        batch.n_tokens = len(toks)
        for i, (t, p, s, l) in enumerate(zip(toks, positions, seqs, logits)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, p, len(s), l
            for j, sid in enumerate(s):
                batch.seq_id[i][j] = sid
        c = clock()
        assert ll.llama_decode(ctx, batch) == 0
        return (clock() - c) * 1e3

    prompt = tokens(48, 1)
    pp = []
    for _ in range(a.runs):
        ll.llama_memory_clear(mem, True)
        pp.append(decode(prompt, range(48), [[0]] * 48, [0] * 47 + [1]))
    pp = statistics.median(pp)
    print(f"llama.cpp t={a.threads}: prompt 48 tokens {pp:.1f} ms {unit} = {48e3 / pp:.0f} tokens/s")
    for b in (1, 5, 15):
        ll.llama_memory_clear(mem, True)
        decode(prompt, range(48), [list(range(b))] * 48, [0] * 47 + [1])
        steps = [decode(tokens(b, 1000 + s), [48 + s] * b, [[i] for i in range(b)], [1] * b)
                 for s in range(10)]
        print(f"llama.cpp t={a.threads}: step B={b:>2}: median {statistics.median(steps):.1f} ms {unit} "
              f"(min {min(steps):.1f}) over 10 steps after a shared 48-token prompt")


if __name__ == "__main__":
    main()
