"""A synthetic reasoning-SFT dataset with a fixed seed: the benchmark's one input for every system.

Each conversation is a user prompt of 30-300 tokens and an assistant turn with reasoning of 100-1,500
tokens and an answer of 20-400 tokens (uniform in each range), half in Chinese and half in English.
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

PROMPT_TOKENS = (30, 300)
REASONING_TOKENS = (100, 1500)
ANSWER_TOKENS = (20, 400)

_ENGLISH = (
    "the model reads each step of the problem and checks the result before it writes an answer so we "
    "compute sum product ratio value number prime factor equation line angle triangle area volume because "
    "therefore however first second then next finally consider assume suppose given let rate time distance "
    "speed price cost profit percent total average median variance probability train data loss gradient "
    "layer token sequence memory kernel matrix vector weight bias update city river market school garden "
    "library museum doctor teacher student farmer engineer writer"
).split()
_CHINESE = (
    "我们 首先 考虑 这个 问题 然后 计算 结果 因此 答案 是 但是 需要 检查 每一步 推理 是否 正确 如果 假设 "
    "已知 条件 可以 得到 方程 三角形 面积 体积 速度 时间 距离 价格 成本 利润 百分比 平均 概率 数据 模型 "
    "训练 损失 梯度 矩阵 向量 城市 河流 市场 学校 图书馆 医生 老师 学生 工程师"
).split()

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


def make_examples(tokenizer: Any, count: int, seed: int = 0, length_scale: float = 1.0) -> list[SyntheticExample]:
    """``count`` seeded conversations, tokenized with the supervised mask (labels -100 on the prompt).

    ``length_scale`` shrinks every length range (smoke tests); the benchmark itself uses 1.0.
    """
    rng = random.Random(seed)
    prompt_range, reasoning_range, answer_range = (
        _scaled(r, length_scale) for r in (PROMPT_TOKENS, REASONING_TOKENS, ANSWER_TOKENS)
    )
    token_len = _token_lengths(tokenizer)
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    examples = []
    for index in range(count):
        chinese = index % 2 == 0
        prompt = _words(rng, chinese, rng.randint(*prompt_range), token_len)
        reasoning = _words(rng, chinese, rng.randint(*reasoning_range), token_len)
        answer = _words(rng, chinese, rng.randint(*answer_range), token_len)
        target = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        # Tokenized segment by segment: the prompt part is unsupervised, the target and EOS supervised.
        prompt_ids = _encode(tokenizer, f"{bos}<｜User｜>{prompt}<｜Assistant｜>")
        target_ids = _encode(tokenizer, target) + _encode(tokenizer, eos)
        examples.append(SyntheticExample(
            prompt=prompt, target=target, input_ids=prompt_ids + target_ids,
            labels=[-100] * len(prompt_ids) + target_ids,
        ))
    return examples


def supervised_count(labels: list[int], max_len: int) -> int:
    """Supervised next-token targets of an example cut at ``max_len`` tokens (position 0 never is one)."""
    return sum(1 for label in labels[1:max_len] if label != -100)
