#!/bin/bash
# The GPU figures of docs/performance.md, in one script: a 7B-shaped model with random bf16 weights (no hub
# needed), then peft's LoRA forward and the stock RMSNorm against dsft's (paired, one process), dsft
# against TRL configured for speed, at one and at two packed rows per forward, a profile of dsft's step, and
# the optional accelerations, each a separate `dsft bench train` run.
# Not a test: run it by hand on one GPU and quote the figures with the card, the date and the torch version.
#
#   bash benchmarks/bench_gpu_7b.sh OUT_DIR [SECONDS_PER_RUN] [PARTS]
#
# PARTS (default all, in this order): pair trl micro-batch-2 profile liger compile-layers compile. Each run
# is cut after SECONDS_PER_RUN (default 300): compiling the 28-layer model took longer than 150 s on an H200.
# A run that is cut writes no report; the others still do. The model is written once per OUT_DIR, so a session with a
# limit per command can run the parts in several calls, e.g. "pair trl micro-batch-2", then "profile liger".
# MODEL_DIR=DIR uses that model instead (a dry run of the script on a small model, e.g. on a CPU).
# TRL_SYSTEMS=LIST changes the systems part trl compares dsft with (default trl-expert,trl-expert-varlen).
set -u
out=${1:?usage: bench_gpu_7b.sh OUT_DIR [SECONDS_PER_RUN] [PARTS]}
limit=${2:-300}
parts=${3:-pair trl micro-batch-2 profile liger compile-layers compile}
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*"; }
wanted() { [[ " $parts " == *" $1 "* ]]; }

for part in $parts; do
    case $part in pair|trl|micro-batch-2|profile|liger|compile-layers|compile) ;;
        *) echo "bench_gpu_7b.sh: unknown part '$part' (choose from: pair trl micro-batch-2 profile liger compile-layers compile)" >&2
           exit 2 ;;
    esac
done
mkdir -p "$out"
model=${MODEL_DIR:-"$out/r1-distill-qwen-7b-random"}
if [ -z "${MODEL_DIR:-}" ] && { [ ! -f "$model/config.json" ] || [ ! -f "$model/tokenizer.json" ]; }; then
    rm -rf "$model"
    say "writing the random 7B-shaped model"
    dsft models random r1-distill-qwen-7b --out "$model" --dtype bfloat16 || exit 2
fi
bench=(dsft bench train --model "$model" --seq-len 4096 --steps 6)
run() {
    local name=$1; shift
    say "$name"
    timeout "$limit" "${bench[@]}" "$@" --out "$out/$name.json" 2>&1 | tail -12
    if [ "${PIPESTATUS[0]}" = 124 ]; then say "$name: cut after $limit s, no report"; fi
}
if wanted pair; then
    say "peft's LoRA forward and the stock RMSNorm against dsft's, paired in one process"
    timeout "$limit" python "$(dirname "$0")/bench_lora_forward.py" --model "$model" --seq-len 4096 --rounds 5 2>&1 | tail -6
    if [ "${PIPESTATUS[0]}" = 124 ]; then say "pair: cut after $limit s"; fi
fi
wanted trl && run against-trl --compare "${TRL_SYSTEMS:-trl-expert,trl-expert-varlen}"
# Two packed rows per forward for both (half the kernel launches per token: the step was partly launch-bound).
wanted micro-batch-2 && run against-trl-micro-batch-2 --compare trl-expert-varlen --micro-batch-size 2
if wanted profile; then
    run profiled --compare "" --profile "$out/profile"
    # The busy share, the time by kind and the host reads per micro-batch (each one waits for the GPU).
    [ -f "$out/profile/dsft.txt" ] && head -4 "$out/profile/dsft.txt"
fi
wanted liger && run liger --compare "" --dsft-option liger
wanted compile-layers && run compile-layers --compare "" --dsft-option compile_layers
wanted compile && run compile --compare "" --dsft-option compile
say "done: reports in $out"
