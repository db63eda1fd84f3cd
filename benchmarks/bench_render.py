"""Time rendering conversations into training examples (``dsft.training.examples.tokenize_conversations``).

Not a test: run it by hand and quote the figure with the machine it ran on.

    python benchmarks/bench_render.py [--conversations 3000] [--template deepseek-r1] [--one-by-one]

Synthetic reasoning conversations (seeded; English and Chinese words; prompt 20-100 words, reasoning
50-300, answer 20-100), the real DeepSeek tokenizer. ``--one-by-one`` renders with ``render_train`` per
conversation (one tokenizer call per run of text) instead of the batched ``render_train_many`` training
uses, for comparison. Prints conversations/s and tokens/s.
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--template", default="deepseek-r1")
    parser.add_argument("--one-by-one", action="store_true")
    args = parser.parse_args()

    from dsft.data.conversation import Conversation, Message
    from dsft.models.tokenizers import load_deepseek_tokenizer
    from dsft.templates import get_template
    from dsft.training.examples import tokenize_conversations

    tokenizer = load_deepseek_tokenizer()
    template = get_template(args.template)
    rng = random.Random(0)
    words = "the model learns to reason step by step about numbers and 我们 学习 推理 问题 答案".split()

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    convs = [Conversation([Message("user", text(rng.randint(20, 100))),
                           Message("assistant", text(rng.randint(20, 100)), reasoning=text(rng.randint(50, 300)))])
             for _ in range(args.conversations)]
    start = time.perf_counter()
    if args.one_by_one:  # render_train per conversation, as training rendered before the batched path
        tokens = sum(len(template.render_train(conv, tokenizer).input_ids) for conv in convs)
    else:
        split = tokenize_conversations(convs, template, tokenizer, max_len=100_000)
        tokens = sum(len(e["input_ids"]) for e in split.examples)
    seconds = time.perf_counter() - start
    print(f"{len(convs)} conversations, {tokens} tokens in {seconds:.2f} s: "
          f"{len(convs) / seconds:,.0f} conversations/s, {tokens / seconds:,.0f} tokens/s "
          f"({'one by one' if args.one_by_one else 'batched'})")


if __name__ == "__main__":
    main()
