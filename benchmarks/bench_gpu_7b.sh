#!/bin/bash
# The GPU figures of docs/performance.md, in one script: a 7B-shaped model with random bf16 weights (no hub
# needed), then peft's LoRA forward and the stock RMSNorm against dsft's (paired, one process), dsft
# against TRL configured for speed, a profile of dsft's step, and the optional accelerations, each a
# separate `dsft bench train` run.
# Not a test: run it by hand on one GPU and quote the figures with the card, the date and the torch version.
#
#   bash benchmarks/bench_gpu_7b.sh OUT_DIR [SECONDS_PER_RUN]
#
# Each run is cut after SECONDS_PER_RUN (default 300): compiling the 28-layer model took longer than 150 s
# on an H200. A run that is cut writes no report; the others still do.
set -u
out=${1:?usage: bench_gpu_7b.sh OUT_DIR [SECONDS_PER_RUN]}
limit=${2:-300}
mkdir -p "$out"
model="$out/r1-distill-qwen-7b-random"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*"; }

if [ ! -f "$model/config.json" ] || [ ! -f "$model/tokenizer.json" ]; then
    rm -rf "$model"
    say "writing the random 7B-shaped model"
    dsft models random r1-distill-qwen-7b --out "$model" --dtype bfloat16 || exit 2
fi
bench=(dsft bench train --model "$model" --seq-len 4096 --steps 6)
run() {
    local name=$1; shift
    say "$name"
    timeout "$limit" "${bench[@]}" "$@" --out "$out/$name.json" 2>&1 | tail -12
}
say "peft's LoRA forward and the stock RMSNorm against dsft's, paired in one process"
timeout "$limit" python "$(dirname "$0")/bench_lora_forward.py" --model "$model" --seq-len 4096 --rounds 5 2>&1 | tail -6
run against-trl --compare trl-expert,trl-expert-varlen
# Two packed rows per forward for both (half the kernel launches per token: the step was partly launch-bound).
run against-trl-micro-batch-2 --compare trl-expert-varlen --micro-batch-size 2
run profiled --compare "" --profile "$out/profile"
run liger --compare "" --dsft-option liger
run compile --compare "" --dsft-option compile
say "done: reports in $out"
