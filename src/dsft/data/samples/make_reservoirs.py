"""Write ``reservoirs.jsonl``: facts about fictional reservoirs, asked in Chinese and English.

Each record gives the facts in the user turn and asks for one of them (completion month/year, or
capacity in 万立方米); answers are short and templated, so a tiny model learns the task in minutes
on CPU and validation loss falls clearly. About a third of the records carry a one-line
``reasoning_content``. Deterministic: ``python -m dsft.data.samples.make_reservoirs`` rewrites the
shipped file byte for byte.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FIRST = [("青", "Qing"), ("白", "Bai"), ("红", "Hong"), ("金", "Jin"), ("黑", "Hei"), ("龙", "Long"),
         ("云", "Yun"), ("石", "Shi")]
SECOND = [("山", "shan"), ("河", "he"), ("湖", "hu"), ("岭", "ling"), ("溪", "xi"), ("塘", "tang"), ("峰", "feng")]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
RESERVOIRS = 50
SEED = 1958


def reservoir_records(name_zh: str, name_en: str, year: int, month: int, capacity: int, think: list[bool]) -> list[dict]:
    """The four question-answer records about one reservoir."""
    when_en = f"{MONTHS[month - 1]} {year}"
    facts_zh = f"{name_zh}水库于{year}年{month}月建成，总库容{capacity}万立方米。"
    facts_en = f"The {name_en} Reservoir was completed in {when_en} and has a total capacity of {capacity} 万立方米."
    items = [
        ("zh", "completion", f"{facts_zh}该水库是哪年哪月建成的？", f"该水库于{year}年{month}月建成。",
         f"题目给出建成时间为{year}年{month}月。"),
        ("zh", "capacity", f"{facts_zh}该水库的总库容是多少万立方米？", f"该水库的总库容为{capacity}万立方米。",
         f"题目给出总库容为{capacity}万立方米。"),
        ("en", "completion", f"{facts_en} In what month and year was it completed?", f"It was completed in {when_en}.",
         f"The text says it was completed in {when_en}."),
        ("en", "capacity", f"{facts_en} What is its capacity in 万立方米?", f"Its capacity is {capacity} 万立方米.",
         f"The text gives a capacity of {capacity} 万立方米."),
    ]
    records = []
    for (lang, domain, question, answer, reasoning), with_reasoning in zip(items, think):
        assistant: dict = {"role": "assistant", "content": answer}
        if with_reasoning:
            assistant["reasoning_content"] = reasoning
        records.append({"messages": [{"role": "user", "content": question}, assistant], "lang": lang, "domain": domain})
    return records


def make_records(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    names = rng.sample([(a + b, c + d) for a, c in FIRST for b, d in SECOND], RESERVOIRS)
    records: list[dict] = []
    for name_zh, name_en in names:
        year, month, capacity = rng.randint(1950, 1999), rng.randint(1, 12), rng.randint(100, 99999)
        records += reservoir_records(name_zh, name_en, year, month, capacity, [rng.random() < 1 / 3 for _ in range(4)])
    return records


def main() -> None:
    path = Path(__file__).resolve().parent / "reservoirs.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for record in make_records():
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
