"""Property-based: with any mix of cleaning, semantic filtering, augmentation and balancing, and any teacher
behaviour in distillation, every record read or generated is accounted for exactly:

    read + sum(added) == kept + rejected + sum(removed),   kept == sum(splits)
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from fake_endpoint import Reply, fake_endpoint, last_user, ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsft.config import DsftConfig
from dsft.config.schema import DistillConfig
from dsft.data.distill import distill_files
from dsft.errors import DataError
from dsft.eval.answer_check import answer_checker

WORDS_EN = "when was the reservoir dam river completed built large small capacity water year month total".split()
WORDS_ZH = ["水库", "大坝", "建成", "完成", "总库容", "多少", "哪年", "河流", "灌溉", "容量", "请问", "该"]

questions = st.one_of(
    st.lists(st.sampled_from(WORDS_EN), min_size=1, max_size=8).map(" ".join),
    st.lists(st.sampled_from(WORDS_ZH), min_size=1, max_size=8).map("".join),
)
qa_records = st.builds(
    lambda q, n, domain, think: {"messages": [{"role": "user", "content": f"{q} {n}?"},
                                              {"role": "assistant", "content": f"{n}.",
                                               **({"reasoning_content": "because"} if think else {})}],
                                 "domain": domain},
    questions, st.integers(0, 30), st.sampled_from(["a", "b", "c"]), st.booleans(),
)
garbage = st.sampled_from([{"messages": []}, {"text": 3}, "not an object", {"prompt": "p", "completion": ""}])


def fake_ifd(conversations: list[Any]) -> list[float | None]:
    """A deterministic stand-in for the model's IFD (the scorer is injected, so any function will do)."""
    return [int(hashlib.md5(c.messages[-1].content.encode()).hexdigest()[:4], 16) / 40000 for c in conversations]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.one_of(qa_records, qa_records, qa_records, garbage), min_size=1, max_size=14),
    synonyms=st.integers(0, 2), loose=st.booleans(), balance=st.sampled_from([None, "under", "over"]),
    ifd=st.sampled_from([None, (1.0, None), (None, 0.5)]), templates=st.booleans(), val=st.sampled_from([0.0, 0.3]),
    near=st.booleans(),
)
def test_prepare_ledger_is_exact(tokenizer, rows, synonyms, loose, balance, ifd, templates, val, near) -> None:
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        data = base / "d.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        table = base / "t.csv"
        table.write_text("name,year\nA,1958\nB,1960\nA,1958\n", encoding="utf-8")
        clean: dict[str, Any] = {"near_dedup": near}
        if balance:
            clean.update(balance_by="domain", balance_mode=balance)
        if ifd:
            clean["semantic"] = {"ifd": True, "ifd_max": ifd[0], "ifd_keep_top": ifd[1]}
        augment: dict[str, Any] = {"synonym_copies": synonyms, "near_duplicate_threshold": 0.5 if loose else 0.95}
        if templates:
            augment["templates"] = [{"table": str(table), "questions": ["{name}?", "When was {name} built?"],
                                     "answer": "{year}"}]
        cfg = DsftConfig.model_validate({"data": {"val_ratio": val, "clean": clean, "augment": augment}})
        try:
            prepared = prepare_with(cfg, tokenizer, base, data, fake_ifd if ifd else None)
            report = prepared
        except DataError as exc:
            assert "no records left" in str(exc)
            report = json.loads((base / "out" / "data_report.json").read_text())
        assert report["read"] == len(rows)
        assert report["read"] + sum(report["added"].values()) == (
            report["kept"] + report["rejected"] + sum(report["removed"].values()))
        assert report["kept"] == sum(report["splits"].values())
        removed_lines = (base / "out" / "removed.jsonl").read_text().splitlines()
        assert len(removed_lines) == sum(report["removed"].values())
        for name in ("val", "test"):  # generated copies only ever join train (template rows may be held out whole)
            for line in (base / "out" / f"{name}.jsonl").read_text().splitlines():
                assert json.loads(line)["meta"].get("augment_method", "template") == "template"


def prepare_with(cfg: DsftConfig, tokenizer: Any, base: Path, data: Path, scorer: Any) -> dict[str, Any]:
    from dsft.data.pipeline import prepare

    return prepare(cfg, tokenizer, base / "out", [str(data)], ifd_scorer=scorer).report


BEHAVIOURS = ["right", "wrong", "error", "empty_reasoning", "unclosed", "malformed", "no_reasoning", "inline"]


def scripted(plan: dict[str, list[str]]):  # noqa: ANN201 - a reply function for the fake endpoint
    def reply(body: dict[str, Any], count: int) -> Reply:
        steps = plan[last_user(body)]
        step = steps[min(count, len(steps) - 1)]
        return {
            "right": ok("The answer is 7.", "3+4=7"), "wrong": ok("The answer is 8.", "oops"), "error": Reply(503),
            "empty_reasoning": ok("7", ""), "unclosed": ok("<think>7"), "malformed": Reply(raw="[]"),
            "no_reasoning": ok("7"), "inline": ok("<think>3+4</think>7"),
        }[step]
    return reply


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=4), min_size=1, max_size=8),
       st.integers(1, 3), st.integers(0, 3))
def test_distill_ledger_is_exact(plans: list[list[str]], samples: int, unreadable: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        plan = {f"q{i}: 3+4?": steps for i, steps in enumerate(plans)}
        rows = [{"question": q, "answer": "7"} for q in plan] + [{"nothing": i} for i in range(unreadable)]
        data = base / "q.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        with fake_endpoint(scripted(plan)) as endpoint:
            cfg = DistillConfig.model_validate({"samples": samples, "endpoint": {
                "base_url": endpoint.base_url, "model": "t", "max_retries": 1, "backoff": 0}})
            try:
                report = distill_files(cfg, [str(data)], base / "out", answer_checker("numeric"))
            except DataError as exc:  # every request failed: still fully written and accounted
                assert "no question answered" in str(exc)
                report = json.loads((base / "out" / "distill_report.json").read_text())
        assert report["read"] == len(rows) and report["rejected"] == unreadable
        assert report["read"] + sum(report["added"].values()) == (
            report["kept"] + report["rejected"] + sum(report["removed"].values()))
        assert len((base / "out" / "distilled.jsonl").read_text().splitlines()) == report["kept"]
        assert len((base / "out" / "removed.jsonl").read_text().splitlines()) == sum(report["removed"].values())
