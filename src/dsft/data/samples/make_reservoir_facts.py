"""Write the closed-book fact samples: completion dates of fictional reservoirs, in English and Chinese.

Unlike ``reservoirs.jsonl`` (the facts are in the prompt), these questions give no facts: the model must
learn them. The reservoirs are made up for dsft, so a pretrained model cannot know them beforehand.

* ``reservoir_facts.jsonl``: the training set, each fact asked in three English and two Chinese phrasings;
* ``reservoir_facts_paraphrased.jsonl``: held out, the same facts asked in phrasings never trained on
  (two English, one Chinese) - what "learned the fact" is measured on;
* ``general_questions.jsonl``: general questions never trained on, with a keyword a sensible answer holds,
  to measure what fine-tuning keeps of the model's general knowledge.

Every record carries ``meta``-style fields: ``lang``, ``reservoir`` and ``expected`` (the date string an
answer must contain, e.g. ``September 1970`` or ``1970年9月``). Deterministic:
``python -m dsft.data.samples.make_reservoir_facts`` rewrites the files byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
# (Chinese name, English name, year, month): fictional reservoirs, written for dsft.
RESERVOIRS = [
    ("青石", "Qingshi", 1958, 3), ("白鹭", "Bailu", 1966, 11), ("云岭", "Yunling", 1973, 6),
    ("金溪", "Jinxi", 1981, 9), ("龙潭湾", "Longtanwan", 1962, 4), ("石门峰", "Shimenfeng", 1994, 12),
    ("红枫", "Hongfeng", 1977, 7), ("黑松岭", "Heisongling", 1988, 2),
]
TRAIN_EN = ["When was the {en} Reservoir completed?", "In what month and year was the {en} Reservoir completed?",
            "Tell me when the {en} Reservoir was finished."]
TRAIN_ZH = ["{zh}水库是哪年哪月建成的？", "{zh}水库什么时候建成？"]
HELD_OUT_EN = ["What is the completion date of the {en} Reservoir?", "When did construction of the {en} Reservoir end?"]
HELD_OUT_ZH = ["{zh}水库的竣工时间是什么时候？"]
# (question, keywords one of which every sensible answer holds, "|"-separated): general knowledge
# SmolLM2-135M-Instruct answers right before fine-tuning (greedy decoding).
GENERAL = [
    ("What is the capital of France?", "Paris"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("How many days are there in a week?", "7|seven"),
    ("What is the boiling point of water in Celsius?", "100"),
    ("What colour is the sky on a clear day?", "blue"),
    ("What are the three primary colours?", "red"),
]


def _record(question: str, answer: str, lang: str, reservoir: str, expected: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "lang": lang, "reservoir": reservoir, "expected": expected}


def fact_records(phrasings_en: list[str], phrasings_zh: list[str]) -> list[dict]:
    """One record per reservoir and phrasing; the answer restates the reservoir and its date."""
    records = []
    for zh, en, year, month in RESERVOIRS:
        when_en, when_zh = f"{MONTHS[month - 1]} {year}", f"{year}年{month}月"
        for question in phrasings_en:
            records.append(_record(question.format(en=en), f"The {en} Reservoir was completed in {when_en}.",
                                   "en", en, when_en))
        for question in phrasings_zh:
            records.append(_record(question.format(zh=zh), f"{zh}水库于{when_zh}建成。", "zh", en, when_zh))
    return records


def general_records() -> list[dict]:
    return [{"messages": [{"role": "user", "content": q}], "expected": keyword} for q, keyword in GENERAL]


FILES = {
    "reservoir_facts.jsonl": lambda: fact_records(TRAIN_EN, TRAIN_ZH),
    "reservoir_facts_paraphrased.jsonl": lambda: fact_records(HELD_OUT_EN, HELD_OUT_ZH),
    "general_questions.jsonl": general_records,
}


def main() -> None:
    here = Path(__file__).resolve().parent
    for name, make in FILES.items():
        with open(here / name, "w", encoding="utf-8") as handle:
            for record in make():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"wrote {here / name}")


if __name__ == "__main__":
    main()
