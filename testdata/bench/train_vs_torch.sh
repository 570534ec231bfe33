#!/usr/bin/env bash
# The CPU trainer against PyTorch on the CPU, side by side in one run (issue 14's speed check).
#
# Same machine, same pairs file, same batches of 32 pairs, same threads (2), one configuration at a
# time, alternating: PyTorch (../shared/bench/torch_train_bench.py: transformers + the GGUF dequantized to
# f32, batches padded to the longest pair, AdamW), then ours (crates/model/examples/train_bench.rs).
#
# Usage: testdata/bench/train_vs_torch.sh PYTHON GGUF PAIRS [STEPS]
#   PYTHON: a venv with torch transformers peft gguf numpy (see the torch script's header)
#   PAIRS:  JSONL from `seal train data` (e.g. all 27,496 SciFact pairs)
set -euo pipefail
PY=$1 GGUF=$2 PAIRS=$3 STEPS=${4:-4}
cd "$(dirname "$0")/../.."
cargo build --release -q -p seal-model --example train_bench
BENCH=target/release/examples/train_bench
TORCH=../shared/bench/torch_train_bench.py
echo "# $(date -u +%FT%TZ) $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) cores; $(rustc --version)"
"$PY" -c 'import torch, transformers; print("# torch", torch.__version__, "transformers", transformers.__version__)'
for cfg in full full-top8; do
  layers=30; [ "$cfg" = full-top8 ] && layers=8
  /usr/bin/time -f "# torch $cfg peak RSS %M KB" "$PY" "$TORCH" --gguf "$GGUF" --pairs "$PAIRS" --steps "$STEPS" --batch 32 --threads 2 --configs "$cfg"
  RAYON_NUM_THREADS=2 /usr/bin/time -f "# ours layers $layers peak RSS %M KB" "$BENCH" --gguf "$GGUF" --pairs "$PAIRS" --layers "$layers" --steps "$STEPS" --batch 32
done
