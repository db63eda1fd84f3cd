"""Synthetic SFT datasets with a fixed seed: the benchmark's one input for every system.

Two length mixes (``settings.LENGTH_MIXES``), half Chinese and half English conversations in each:

* ``reasoning``: a user prompt of 30-300 tokens and an assistant turn with reasoning of 100-1,500 tokens
  (in ``<think>``) and an answer of 20-400 tokens, uniform in each range;
* ``short``: short answers without reasoning: prompts of 20-400 tokens with a long tail (one in ten
  drawn from 400-1,600: long prompts, where masking matters), answers of 5-150 tokens with a long tail
  (one in ten from 150-600).

Token counts are reached by drawing words from a small vocabulary until the target is met, so they are
close to (not exactly) the drawn targets.

Every system trains on the same token stream, the DeepSeek-R1 training layout:
``BOS <｜User｜>prompt<｜Assistant｜><think>\\nreasoning\\n</think>\\n\\nanswer EOS``.
The supervised tokens (dsft's assistant-only mask) are those after ``<｜Assistant｜>``, EOS included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from dsft.templates.base import IGNORE_INDEX
from dsft.training.bench.settings import LENGTH_MIXES
from dsft.training.collators import PackedCollator, pack_row
from dsft.training.packing import pack_best_fit

_ENGLISH = [
    "the", "model", "reads", "each", "step", "of", "the", "problem", "and", "checks", "the", "result", "before",
    "it", "writes", "an", "answer", "so", "we", "compute", "sum", "product", "ratio", "value", "number", "prime",
    "factor", "equation", "line", "angle", "triangle", "area", "volume", "because", "therefore", "however", "first",
    "second", "then", "next", "finally", "consider", "assume", "suppose", "given", "let", "rate", "time",
    "distance", "speed", "price", "cost", "profit", "percent", "total", "average", "median", "variance",
    "probability", "train", "data", "loss", "gradient", "layer", "token", "sequence", "memory", "kernel", "matrix",
    "vector", "weight", "bias", "update", "city", "river", "market", "school", "garden", "library", "museum",
    "doctor", "teacher", "student", "farmer", "engineer", "writer",
]
_CHINESE = [
    "我们", "首先", "考虑", "这个", "问题", "然后", "计算", "结果", "因此", "答案", "是", "但是", "需要", "检查",
    "每一步", "推理", "是否", "正确", "如果", "假设", "已知", "条件", "可以", "得到", "方程", "三角形", "面积",
    "体积", "速度", "时间", "距离", "价格", "成本", "利润", "百分比", "平均", "概率", "数据", "模型", "训练",
    "损失", "梯度", "矩阵", "向量", "城市", "河流", "市场", "学校", "图书馆", "医生", "老师", "学生", "工程师",
]

# The V3 chat layout as a Jinja template: it renders assistant content verbatim (the R1 template would
# delete the reasoning from it), so a trainer that applies the tokenizer's chat template to the
# ``messages`` sees the same token stream as dsft.
VERBATIM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
)


@dataclass(frozen=True)
class SyntheticExample:
    """One conversation as text and as dsft's tokenized example."""

    prompt: str
    target: str
    input_ids: list[int]
    labels: list[int]

    @property
    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.target}]


def _words(rng: random.Random, chinese: bool, tokens: int, token_len: dict[str, int]) -> str:
    pool = _CHINESE if chinese else _ENGLISH
    out: list[str] = []
    count = 0
    while count < tokens:
        word = rng.choice(pool)
        out.append(word)
        count += token_len[word]
    joiner = "" if chinese else " "
    return joiner.join(out).strip()


def _token_lengths(tokenizer: Any) -> dict[str, int]:
    lengths = {w: len(tokenizer.encode(w, add_special_tokens=False)) for w in _CHINESE}
    lengths.update({w: len(tokenizer.encode(" " + w, add_special_tokens=False)) for w in _ENGLISH})
    return lengths


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _scaled(bounds: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(bounds[0] * scale)), max(1, round(bounds[1] * scale))


def _draw(rng: random.Random, bounds: tuple[int, int], tail: float, tail_high: int) -> int:
    if tail and rng.random() < tail:
        return rng.randint(bounds[1], tail_high)
    return rng.randint(*bounds)


def make_examples(tokenizer: Any, count: int, seed: int = 0, length_scale: float = 1.0,
                  mix: str = "reasoning") -> list[SyntheticExample]:
    """``count`` seeded conversations of the ``mix`` lengths, tokenized with the supervised mask (labels
    -100 on the prompt).

    ``length_scale`` shrinks every length range (smoke tests); the benchmark itself uses 1.0.
    """
    lengths = LENGTH_MIXES[mix]
    rng = random.Random(seed)
    prompt_range, answer_range = _scaled(lengths.prompt, length_scale), _scaled(lengths.answer, length_scale)
    reasoning_range = _scaled(lengths.reasoning, length_scale) if lengths.reasoning else None
    prompt_tail = max(1, round(lengths.prompt_tail_high * length_scale))
    answer_tail = max(1, round(lengths.answer_tail_high * length_scale))
    token_len = _token_lengths(tokenizer)
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    examples = []
    for index in range(count):
        chinese = index % 2 == 0
        prompt = _words(rng, chinese, _draw(rng, prompt_range, lengths.tail, prompt_tail), token_len)
        answer_tokens = _draw(rng, answer_range, lengths.tail, answer_tail)
        if reasoning_range is not None:
            reasoning = _words(rng, chinese, rng.randint(*reasoning_range), token_len)
            answer = _words(rng, chinese, answer_tokens, token_len)
            target = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        else:
            target = _words(rng, chinese, answer_tokens, token_len)
        # Tokenized segment by segment: the prompt part is unsupervised, the target and EOS supervised.
        prompt_ids = _encode(tokenizer, f"{bos}<｜User｜>{prompt}<｜Assistant｜>")
        target_ids = _encode(tokenizer, target) + _encode(tokenizer, eos)
        examples.append(SyntheticExample(
            prompt=prompt, target=target, input_ids=prompt_ids + target_ids,
            labels=[IGNORE_INDEX] * len(prompt_ids) + target_ids,
        ))
    return examples


def supervised_count(labels: list[int], max_len: int) -> int:
    """Supervised next-token targets of an example cut at ``max_len`` tokens (position 0 never is one)."""
    return sum(1 for label in labels[1:max_len] if label != IGNORE_INDEX)


def first_packed_row(tokenizer: Any, seq_len: int, candidates: int) -> dict[str, Any]:
    """The first best-fit packed row of ``seq_len`` tokens from the first ``candidates`` short-answer examples,
    collated as dsft's segment attention reads it (one flattened row): the benchmarks' single-step input."""
    examples = [e for e in make_examples(tokenizer, candidates, seed=0) if len(e.input_ids) <= seq_len]
    if not examples:
        raise ValueError(f"none of the {candidates} examples fits in seq_len={seq_len}")
    packed = pack_best_fit([len(e.input_ids) for e in examples], seq_len)
    row = pack_row([{"input_ids": examples[i].input_ids, "labels": examples[i].labels} for i in packed[0]])
    return PackedCollator(pad_id=0, flatten=True)([row])
