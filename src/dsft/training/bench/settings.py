"""What ``dsft bench train`` accepts: the systems, options, length mixes and precisions, and the check of a
benchmark's settings. Nothing here imports torch, so the CLI refuses a bad flag in about a second, before
torch and a model load (the runner checks the same settings again for callers of ``run_bench``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

from dsft.config.schema import TrainConfig
from dsft.errors import DsftError

# --precision: what every system's body computes in (auto: fp32 on CPU, bf16 on GPU).
PRECISIONS = ("auto", "fp32", "bf16")
SYSTEMS = ("dsft", "trl-expert", "trl-expert-varlen", "trl", "seed")
# Optional accelerations the dsft system can be measured with (train.<name> in a config): off by default.
DSFT_OPTIONS = ("compile", "compile_layers", "gradient_checkpointing", "offload_activations", "liger")
# --loss-dtype is train.loss_dtype: the config schema owns its values.
LOSS_DTYPE_NAMES = get_args(TrainConfig.model_fields["loss_dtype"].annotation)
# The shortest --seq-len: below it hardly any synthetic conversation fits a row.
MIN_SEQ_LEN = 64
# The most synthetic conversations one benchmark generates (conversation_count). They are all held in memory,
# in the bench process and again in each system's: about 23 KiB and 1.8 ms of one CPU core each in the short
# mix, 67 KiB and 4 ms in the reasoning mix (tiny-deepseek-v3's tokenizer, 2026-11-27), so 50,000 are about
# 3.2 GiB and 3.5 minutes before the first step. The GPU runs of docs/performance.md generated 80 (6 to 14
# steps of 8); --steps 10**9 asked for ten billion and generated until memory ran out.
MAX_CONVERSATIONS = 50_000

PROMPT_TOKENS = (30, 300)
REASONING_TOKENS = (100, 1500)
ANSWER_TOKENS = (20, 400)


@dataclass(frozen=True)
class LengthMix:
    """Token ranges of one synthetic conversation: ``(low, high)`` uniform, and with probability ``tail``
    a draw from ``(high, tail_high)`` instead (a long tail). ``reasoning`` None: no ``<think>`` block."""

    prompt: tuple[int, int]
    answer: tuple[int, int]
    reasoning: tuple[int, int] | None = None
    tail: float = 0.0
    prompt_tail_high: int = 0
    answer_tail_high: int = 0


LENGTH_MIXES = {
    "reasoning": LengthMix(prompt=PROMPT_TOKENS, answer=ANSWER_TOKENS, reasoning=REASONING_TOKENS),
    "short": LengthMix(prompt=(20, 400), answer=(5, 150), tail=0.1, prompt_tail_high=1600, answer_tail_high=600),
}


def parse_systems(compare: str) -> tuple[str, ...]:
    """``--compare "trl-expert, seed"`` -> ``("trl-expert", "seed")``; ``""`` -> ``()`` (dsft alone)."""
    return tuple(name.strip() for name in compare.split(",") if name.strip())


def conversation_count(steps: int, examples_per_step: int, micro_batch_size: int) -> int:
    """The synthetic conversations a benchmark generates: enough for the timed steps and the warm-up (+ 2), even
    where one micro-batch of packed rows holds more than ``examples_per_step`` of them (x 1.25). In integers: a
    flag of 10**400 overflows a float.

    >>> conversation_count(8, 8, 1)
    100
    """
    return (steps + 2) * examples_per_step * micro_batch_size * 5 // 4


def _largest(flag: str, steps: int, examples_per_step: int, micro_batch_size: int) -> int:
    """The largest value of ``flag`` whose conversation_count, the other two flags as given, is within the bound."""
    most = MAX_CONVERSATIONS * 4 + 3  # conversation_count <= MAX_CONVERSATIONS  <=>  product x 5 <= most
    if flag == "--steps":
        return most // (5 * examples_per_step * micro_batch_size) - 2
    others = (steps + 2) * (micro_batch_size if flag == "--examples-per-step" else examples_per_step)
    return most // (5 * others)


def _too_many_conversations(steps: int, examples_per_step: int, micro_batch_size: int) -> str | None:
    """The problem of flags that ask for more than MAX_CONVERSATIONS synthetic conversations, or None.

    >>> print(_too_many_conversations(10**9, 8, 1))
    bench --steps 1000000000 --examples-per-step 8 --micro-batch-size 1: 10,000,000,020 synthetic conversations ((steps + 2) x examples-per-step x micro-batch-size x 1.25), more than the 50,000 a benchmark holds in memory; set --steps to at most 4,998
    """
    count = conversation_count(steps, examples_per_step, micro_batch_size)
    if count <= MAX_CONVERSATIONS:
        return None
    values = {"--steps": steps, "--examples-per-step": examples_per_step, "--micro-batch-size": micro_batch_size}
    fixes = [f"{flag} to at most {most:,}" for flag in values
             if (most := _largest(flag, steps, examples_per_step, micro_batch_size)) >= 1]
    fix = f"set {' or '.join(fixes)}" if fixes else "lower them"
    return (f"bench {' '.join(f'{flag} {value}' for flag, value in values.items())}: {count:,} synthetic conversations "
            f"((steps + 2) x examples-per-step x micro-batch-size x 1.25), more than the {MAX_CONVERSATIONS:,} a "
            f"benchmark holds in memory; {fix}")


def check_bench_settings(*, steps: int, seq_len: int, examples_per_step: int, micro_batch_size: int,
                         compare: tuple[str, ...], dsft_options: tuple[str, ...], lengths: str, loss_dtype: str,
                         precision: str, length_scale: float = 1.0) -> None:
    """Raise one DsftError naming every flag whose value the benchmark cannot run with.

    >>> check_bench_settings(steps=0, seq_len=2048, examples_per_step=8, micro_batch_size=1, compare=(),
    ...                      dsft_options=(), lengths="short", loss_dtype="auto", precision="auto")
    Traceback (most recent call last):
    dsft.errors.DsftError: bench --steps 0: must be >= 1
    """
    problems = []
    bad_options = [name for name in dsft_options if name not in DSFT_OPTIONS]
    if bad_options:
        problems.append(f"bench --dsft-option: unknown option(s) {', '.join(bad_options)}; "
                        f"choose from {', '.join(DSFT_OPTIONS)}")
    unknown = [name for name in compare if name not in SYSTEMS or name == "dsft"]
    if unknown:
        problems.append(f"bench --compare: unknown system(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(SYSTEMS[1:])}")
    for flag, value, allowed in (("--lengths", lengths, tuple(LENGTH_MIXES)), ("--loss-dtype", loss_dtype,
                                 LOSS_DTYPE_NAMES), ("--precision", precision, PRECISIONS)):
        if value not in allowed:
            problems.append(f"bench {flag}: expected one of {', '.join(allowed)}, got {value!r}")
    for flag, value, least in (("--steps", steps, 1), ("--seq-len", seq_len, MIN_SEQ_LEN),
                               ("--examples-per-step", examples_per_step, 1),
                               ("--micro-batch-size", micro_batch_size, 1)):
        if value < least:
            problems.append(f"bench {flag} {value}: must be >= {least}")
    if not 0 < length_scale < math.inf:  # nan too: the lengths are rounded to whole tokens
        problems.append(f"bench --length-scale {length_scale}: must be a finite number > 0 (1 = the benchmark's "
                        "own lengths)")
    if min(steps, examples_per_step, micro_batch_size) >= 1 and (
            too_many := _too_many_conversations(steps, examples_per_step, micro_batch_size)):
        problems.append(too_many)
    if problems:
        raise DsftError("; ".join(problems))
