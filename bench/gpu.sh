#!/usr/bin/env bash
# The GPU benchmarks, as one prepared run for a machine with one CUDA GPU: under 8 minutes (the steps'
# time limits add up to 7.7; about 5 expected on an H100/H200).  From the repository root, with a CUDA build of torch:
#
#   bash bench/gpu.sh              # tests, then benches into bench/results.json; regenerates the table in docs/benchmarks.md
#   bash bench/gpu.sh --dry-run    # print the commands only
#   bash bench/gpu.sh --cpu-check  # every step on the CPU (the tests run, the benches shrunk, results into a
#                                  # scratch file): checks the steps themselves where no GPU is
#
# A failed step does not stop the run: every step runs, the table is regenerated from what was
# measured, and the run ends with the failed steps named and exit 1 (a GPU hour is not lost to one step).
#
# 1. the CUDA tests (tests/unit/test_cuda.py: fused attention, autocast bf16/fp16 and the gradient scaler,
#    pinned batches from data workers) and the model/dropout tests, on the GPU;
# 2. pre-training at size=base, bf16, batch 32, seq 128: uer vs transformers BertForMaskedLM (SDPA, fused
#    AdamW) on the same GPU: tokens/s, steps/s, model FLOP/s against the measured bf16 matmul rate and
#    against the GPU's dense bf16 peak (MFU; UER_GPU_PEAK_TFLOPS, default 989 = H100/H200 SXM);
# 3. fine-tuning and inference at size=base, bf16: uer vs BertForSequenceClassification (dynamic padding);
# 4. the encoder-decoder (a random BART, d_model 256): training tokens/s, greedy and beam-4 generation tokens/s vs
#    BartForConditionalGeneration on the same batches (bench/seq2seq_speed.py, fp32, batch 32).
# Results go to bench/results.json (UER_BENCH_JSON to change) as the *_cuda entries; CPU entries stay.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
json=${UER_BENCH_JSON:-bench/results.json}
peak=${UER_GPU_PEAK_TFLOPS:-989}
device=cuda
slower=1  # time limits are for the GPU machine; a CPU check gets ten times as long
tests=(tests/unit/test_cuda.py tests/unit/test_dropout.py tests/unit/test_models.py)
failed=()
case "$mode" in
  run) ;;
  --dry-run) ;;
  --cpu-check) json=$(mktemp --suffix=.json); device=cpu; slower=10; rm -f "$json" ;;
  *) echo "usage: bash bench/gpu.sh [--dry-run | --cpu-check]" >&2; exit 2 ;;
esac

step() {  # step SECONDS COMMAND...: run (or print) one command under a time limit; a failure is noted, not fatal
  local limit=$1
  shift
  echo "+ $*"
  [ "$mode" = --dry-run ] && return 0
  if ! timeout $((limit * slower)) "$@"; then
    failed+=("$*")
  fi
}

if [ "$mode" = run ]; then
  python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "error: no CUDA device visible to torch")'
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
fi

if [ "$mode" = --cpu-check ]; then  # shrunk: tiny model, a step or two
  pretrain=(--size tiny --batch 4 --steps 1 --warmup 1 --rows 300)
  finetune=(--size tiny --rows 64 --batch 16 --warmup 1 --repeats 1)
  seq2seq=(--steps 1 --warmup 0 --gen-rows 4 --new-tokens 4 --repeats 1)
else
  pretrain=(--size base --batch 32 --steps 30 --warmup 5)
  finetune=(--size base --rows 4000 --batch 64 --warmup 3 --repeats 3)
  seq2seq=(--batch 32 --steps 20 --warmup 3 --repeats 5)
fi

step 90 python -m pytest -q -n 0 "${tests[@]}"
step 150 python bench/pretrain_speed.py "${pretrain[@]}" --device "$device" --precisions bf16 --datasets full \
  --peak-tflops "$peak" --threads 0 --json "$json"
step 140 python bench/finetune_speed.py "${finetune[@]}" --device "$device" --precision bf16 --threads 0 --json "$json"
step 60 python bench/seq2seq_speed.py "${seq2seq[@]}" --device "$device" --threads 0 --json "$json"
if [ "$mode" != --cpu-check ] && [ "$json" = bench/results.json ]; then
  step 20 python bench/results.py
fi
if [ "$mode" = --cpu-check ]; then
  echo "cpu-check: the steps ran on the CPU; results (not measurements) in $json"
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf 'error: %d step(s) failed: %s\n' "${#failed[@]}" "$(printf '%s; ' "${failed[@]}")" >&2
  exit 1
fi
