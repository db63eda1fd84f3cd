"""Generation, `dsft eval` and `dsft compare` on tiny real models (CPU, a few seconds each)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.eval.evaluate import evaluate_model, generation_eval
from dsft.eval.generate import DecodingOptions, generate_batched
from dsft.eval.predictions import score_predictions_file
from dsft.eval.report import fmt, metric_label
from dsft.eval.target import load_eval_target


@pytest.mark.parametrize("preset", ["tiny-deepseek-v3", "tiny-r1-distill-qwen"])
def test_left_padded_batch_equals_one_by_one(preset: str, tiny_model_dir: Callable[[str], Path]) -> None:
    from dsft.models.loading import load_model, load_tokenizer

    path = tiny_model_dir(preset)
    model, tokenizer = load_model(path), load_tokenizer(path)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
               for c in ["Hi", "What is the capital of France? Answer in one word, please.", "你好"]]
    batched, stats = generate_batched(model, tokenizer, prompts, DecodingOptions(max_new_tokens=5, batch_size=3),
                                      progress=False)
    single = [generate_batched(model, tokenizer, [p], DecodingOptions(max_new_tokens=5), progress=False)[0][0]
              for p in prompts]
    assert batched == single  # padding rows do not change any row's greedy continuation
    assert stats.generated_tokens == sum(g.new_tokens for g in batched) > 0
    assert tokenizer.padding_side == "right"  # restored after generation


def test_eval_writes_predictions_and_metrics(tmp_path: Path, eval_data: Path,
                                             tiny_model_dir: Callable[[str], Path]) -> None:
    out = tmp_path / "eval"
    metrics = evaluate_model(tiny_model_dir("tiny-r1-distill-qwen"), eval_data, out, max_new_tokens=6, batch_size=2,
                             progress=False)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == metrics["count"] == 4
    assert metrics["skipped"]["data: last message is not an assistant answer"] == 1
    assert metrics["skipped"]["data: malformed JSON"] == 1
    assert metrics["evaluated"]["template"] == "deepseek-r1"
    first = records[0]
    assert first["prompt"].endswith("<｜Assistant｜><think>\n") and first["prompt_opened_think"]
    assert first["reference"] == "2" and set(first["scores"]) >= {"exact_match", "f1", "bleu", "rougeL"}
    assert records[3]["choices"] == ["苹果", "汽车"] and "choice_accuracy" in records[3]["scores"]
    assert metrics["generation"]["generated_tokens"] == sum(r["new_tokens"] for r in records)
    # predictions.jsonl is a valid `dsft metrics` input and re-scores to the same numbers.
    # Every figure but mean_reasoning_tokens, which dsft eval counts in generated tokens (docs/eval.md).
    rescored = score_predictions_file(out / "predictions.jsonl")
    scored = {k for k, v in metrics.items() if isinstance(v, (int, float)) or v is None} - {"mean_reasoning_tokens"}
    assert scored >= {"exact_match", "numeric_accuracy", "sentence_bleu", "rouge2", "choice_accuracy", "count"}
    for key in scored:
        assert rescored[key] == pytest.approx(metrics[key]), key
    assert rescored["counts"] == metrics["counts"]


def test_lora_run_is_loaded_unmerged(lora_run: Path) -> None:
    from peft import PeftModel

    target = load_eval_target(lora_run)
    assert isinstance(target.model, PeftModel) and target.adapter
    assert (target.template_name, target.thinking) == ("deepseek-r1", True)
    names = [name for name, _ in target.model.named_parameters()]
    assert any("experts" in n and "lora_A" in n for n in names)  # fused MoE experts carry their adapter
    assert any("kv_a_proj_with_mqa" in n and "lora_B" in n for n in names)


def test_unknown_template_names_template_name(tmp_path: Path, eval_data: Path, tiny_model_dir: Callable[[str], Path],
                                              run_cli) -> None:
    source = tiny_model_dir("tiny-deepseek-llm")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(source / "config.json", bare / "config.json")
    shutil.copy(source / "tokenizer.json", bare / "tokenizer.json")  # a tokenizer, but no chat template
    (bare / "model.safetensors").symlink_to(source / "model.safetensors")  # weights: the directory is complete
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(DsftError, match=r"template\.name"):
        load_eval_target(bare)
    code, _, err = run_cli(["eval", str(bare), "--data", str(eval_data), "--out", str(tmp_path / "o")])
    assert code == 2 and "template.name" in err and "--template NAME" in err and "Traceback" not in err


def _report_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("metric",):
            rows[cells[0]] = cells[1:]
    return rows


def test_compare_and_eval_say_which_records_they_left_out(tmp_path: Path, eval_data: Path, lora_run: Path,
                                                          run_cli) -> None:
    """Guide 001's base-vs-tuned comparison on a file holding a malformed line: `dsft compare` said '8 prompts' and
    nothing of the records it skipped (terminal and report.md alike), and `dsft eval` said 'skipped 1: data:
    malformed JSON' without where, though data preparation names file:line for the same line."""
    expected = [f"skipped 1: data: last message is not an assistant answer (first at {eval_data}:5)",
                f"skipped 1: data: malformed JSON (first at {eval_data}:6)"]
    out = tmp_path / "compare"
    code, stdout, err = run_cli(["compare", "--tuned", str(lora_run), "--data", str(eval_data), "--out", str(out),
                                 "--max-new-tokens", "2", "--batch-size", "2"])
    assert code == 0, err
    said = [line.strip() for line in stdout.splitlines() if line.strip().startswith("skipped 1: data:")]
    assert said == expected, stdout
    report = (out / "report.md").read_text(encoding="utf-8")
    assert all(f"- {line}\n" in report for line in expected), report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"(first at {eval_data}:6)" in html
    code, stdout, err = run_cli(["eval", str(lora_run), "--data", str(eval_data), "--out", str(tmp_path / "eval"),
                                 "--max-new-tokens", "2", "--batch-size", "2"])
    assert code == 0, err
    assert [line.strip() for line in stdout.splitlines() if line.strip().startswith("skipped 1: data:")] == expected, stdout


def test_compare_report_numbers_equal_metrics_json(tmp_path: Path, eval_data: Path, lora_run: Path,
                                                   run_cli) -> None:
    out = tmp_path / "compare"
    code, stdout, _ = run_cli(["compare", "--tuned", str(lora_run), "--data", str(eval_data), "--out", str(out),
                               "--max-new-tokens", "6", "--batch-size", "2"])
    assert code == 0
    result = json.loads((out / "comparison.json").read_text())
    for name in ("report.md", "report.html", "comparison.json", "base/metrics.json", "tuned/predictions.jsonl"):
        assert (out / name).is_file(), name
    base = json.loads((out / "base/metrics.json").read_text())
    tuned = json.loads((out / "tuned/metrics.json").read_text())
    assert base["evaluated"]["adapter"] is False and tuned["evaluated"]["adapter"] is True
    base_prompts = [json.loads(x)["prompt"] for x in (out / "base/predictions.jsonl").read_text().splitlines()]
    tuned_prompts = [json.loads(x)["prompt"] for x in (out / "tuned/predictions.jsonl").read_text().splitlines()]
    assert base_prompts == tuned_prompts
    base_raw = [json.loads(x)["prediction"] for x in (out / "base/predictions.jsonl").read_text().splitlines()]
    tuned_raw = [json.loads(x)["prediction"] for x in (out / "tuned/predictions.jsonl").read_text().splitlines()]
    assert base_raw != tuned_raw  # the adapter is applied to the tuned model only

    rows = _report_rows((out / "report.md").read_text())
    for key in ("exact_match", "f1", "bleu", "sentence_bleu", "rouge1", "rouge2", "rougeL", "think_rate",
                "unclosed_think_rate"):
        assert rows[metric_label(key)][:2] == [fmt(base[key]), fmt(tuned[key])], key
    html = (out / "report.html").read_text()
    for side, metrics in (("base", base), ("tuned", tuned)):
        for key in ("exact_match", "f1", "bleu", "think_rate"):
            found = re.search(rf'data-metric="{key}" data-side="{side}" data-value="([^"]*)">([^<]*)<', html)
            assert found, (side, key)
            assert float(found.group(1)) == metrics[key] and found.group(2) == fmt(metrics[key])
    # The loss summary comes from the run's metrics.jsonl fixture rows.
    assert "| eval_loss_best | 2.2500 |" in (out / "report.md").read_text()
    assert "<polyline" in html and "<script" not in html
    assert "&lt;b&gt;Capital&lt;/b&gt;" in html and "<b>Capital</b>" not in html
    assert result["delta"]["f1"] == pytest.approx(tuned["f1"] - base["f1"])
    # The terminal table shows the same numbers.
    f1_row = next(line for line in stdout.splitlines() if " f1 " in line)
    assert fmt(base["f1"]) in f1_row and fmt(tuned["f1"]) in f1_row


def test_generation_eval_in_memory(tiny_model_dir: Callable[[str], Path]) -> None:
    from dsft.data.conversation import Conversation, Message
    from dsft.models.loading import load_model, load_tokenizer

    path = tiny_model_dir("tiny-deepseek-v3")
    model, tokenizer = load_model(path), load_tokenizer(path)
    model.train()
    conversations = [Conversation([Message("user", "2+2?"), Message("assistant", "4")]),
                     Conversation([Message("user", "Hi")])]  # no answer: left out
    metrics, samples = generation_eval(model, tokenizer, "deepseek-v3", conversations, max_new_tokens=4)
    assert metrics["count"] == 1 and 0.0 <= metrics["f1"] <= 1.0
    assert samples[0]["question"] == "2+2?" and samples[0]["reference"] == "4"
    assert model.training  # mode restored for the trainer


def test_thinking_override_for_hybrid_template(tmp_path: Path, eval_data: Path,
                                               tiny_model_dir: Callable[[str], Path]) -> None:
    metrics = evaluate_model(tiny_model_dir("tiny-deepseek-v3"), eval_data, tmp_path / "think", template="deepseek-v3.1",
                             thinking=True, limit=1, max_new_tokens=2, progress=False)
    record = json.loads((tmp_path / "think" / "predictions.jsonl").read_text().splitlines()[0])
    assert record["prompt"].endswith("<｜Assistant｜><think>") and record["prompt_opened_think"]
    assert metrics["evaluated"]["thinking"] is True and metrics["evaluated"]["template"] == "deepseek-v3.1"
    assert metrics["evaluated"]["thinking_unused"] is None


def test_reasoning_tokens_count_what_was_generated(monkeypatch, tiny_model_dir: Callable[[str], Path]) -> None:
    """Five generated 'x' tokens then </think>: 5 reasoning tokens, however the text re-tokenizes."""
    from dsft.eval import evaluate
    from dsft.eval.eval_set import EvalItem
    from dsft.eval.generate import Generation, GenerationStats
    from dsft.models.loading import load_tokenizer
    from dsft.templates.conversation_io import conversation_from_openai

    tokenizer = load_tokenizer(tiny_model_dir("tiny-r1-distill-qwen"))
    x = tokenizer.convert_tokens_to_ids("x")
    end = tokenizer.convert_tokens_to_ids("</think>")
    ids = (x,) * 5 + (end,) + tuple(tokenizer.encode("yes", add_special_tokens=False))
    assert len(tokenizer.encode("xxxxx", add_special_tokens=False)) != 5  # the old re-tokenizing count differs

    def fake_generate(model, tok, prompts, options, progress, description, should_stop=None):
        text = tokenizer.decode(list(ids), skip_special_tokens=False)
        return [Generation(text, len(ids) + 1, True, ids) for _ in prompts], GenerationStats(len(prompts), 0, 1.0)

    monkeypatch.setattr(evaluate, "generate_batched", fake_generate)
    prompt = conversation_from_openai({"messages": [{"role": "user", "content": "q"}]})
    items = [EvalItem(prompt=prompt, reference="yes", source="t:1")]
    from dsft.templates import get_template

    run = evaluate.run_items(None, tokenizer, get_template("deepseek-r1"), None, items,
                             DecodingOptions(max_new_tokens=len(ids) + 1), progress=False)
    assert run.records[0]["reasoning_tokens"] == 5
    assert run.metrics["mean_reasoning_tokens"] == 5


def test_eval_cleans_references_as_the_run_cleaned_its_training_data(tmp_path: Path) -> None:
    from dsft.eval.eval_set import load_eval_set, run_text_cleaner

    data = tmp_path / "val.json"
    data.write_text(json.dumps({"data": [{"input": "<b>Capital</b> of France?", "output": "<p>Paris</p>"}]}),
                    encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data:\n  clean:\n    strip_html: true\n")
    [item], _ = load_eval_set(data, clean=run_text_cleaner(run))
    assert item.reference == "Paris" and item.prompt.messages[-1].content == "Capital of France?"
    [raw], _ = load_eval_set(data, clean=run_text_cleaner(tiny_dir := tmp_path / "model-only"))
    assert raw.reference == "<p>Paris</p>" and not tiny_dir.exists()


def test_eval_reads_raw_records_with_the_run_s_or_the_config_s_columns(tmp_path: Path) -> None:
    """Guide 001-shaped records under the user's own column names: the run was prepared with data.columns, so
    `dsft eval RUN --data raw.jsonl` reads them the same way (it skipped every record, saying to 'set
    data.format and data.columns', which eval did not read); a prepared split still reads as messages."""
    from dsft.config import load_config
    from dsft.eval.eval_set import data_reading, load_eval_set

    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"病历": "患者主诉持续发热3天", "问题": "可能病因有哪些?", "回答": "上呼吸道感染"},
                              ensure_ascii=False) + "\n", encoding="utf-8")
    prepared = tmp_path / "val.jsonl"
    prepared.write_text(json.dumps({"messages": [{"role": "user", "content": "发热怎么办?"},
                                                 {"role": "assistant", "content": "多喝水"}]}, ensure_ascii=False)
                        + "\n", encoding="utf-8")
    columns = "data:\n  format: context_qa\n  columns: {context: 病历, question: 问题, answer: 回答}\n"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(columns, encoding="utf-8")
    [item], _ = load_eval_set(raw, None, *data_reading(run))
    assert item.reference == "上呼吸道感染" and "可能病因有哪些?" in item.prompt.messages[-1].content
    [split_item], _ = load_eval_set(prepared, None, *data_reading(run))
    assert split_item.reference == "多喝水"
    config = tmp_path / "c.yaml"
    config.write_text(columns, encoding="utf-8")
    [item], _ = load_eval_set(raw, None, *data_reading("tiny-deepseek-llm", load_config(config).data))
    assert item.reference == "上呼吸道感染"
    assert data_reading(tmp_path / "model-only") == ("auto", None)
    with pytest.raises(DsftError, match="no usable evaluation records"):
        load_eval_set(raw, None, *data_reading(tmp_path / "model-only"))


def test_prompts_the_template_cannot_render_as_written_are_skipped_and_counted(
        tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    """Under V3.1 / V3.2 an assistant turn right after another is written with no header after the first's
    end-of-sentence token: the eval prompt was rendered so and scored without a word. It is skipped and counted,
    as dsft serve answers such a request 400 (the same check, ChatTemplate.prompt_problems)."""
    def record(*turns: tuple[str, str]) -> str:
        return json.dumps({"messages": [{"role": role, "content": content} for role, content in turns]})

    fine = record(("user", "2+2?"), ("assistant", "4"))
    ends_with_assistant = record(("user", "q"), ("assistant", "a"), ("assistant", "b"))
    together_in_history = record(("user", "q"), ("assistant", "a"), ("assistant", "b"), ("user", "u"), ("assistant", "c"))
    data = tmp_path / "eval.jsonl"
    data.write_text("\n".join([fine, ends_with_assistant, together_in_history]) + "\n")
    model = tiny_model_dir("tiny-deepseek-v3")
    metrics = evaluate_model(model, data, tmp_path / "v31", template="deepseek-v3.1", max_new_tokens=2,
                             progress=False)
    assert metrics["count"] == 1
    skipped = {reason.split(":")[1].strip(): count for reason, count in metrics["skipped"].items()
               if reason.startswith("prompt: ")}
    assert skipped == {"the prompt ends with an assistant turn, which the reply would follow": 1,
                       "an assistant turn right after another": 1}, metrics["skipped"]
    assert evaluate_model(model, data, tmp_path / "v3", template="deepseek-v3", max_new_tokens=2,
                          progress=False)["count"] == 3  # V3 opens each turn with its header
    # A system message after the first turn is scored as training rendered it (V3 moves it to the start, as
    # its official template does), though dsft serve refuses it from a client.
    late_system = tmp_path / "late_system.jsonl"
    late_system.write_text(record(("user", "q"), ("assistant", "a"), ("system", "be brief"), ("user", "u"),
                                  ("assistant", "c")) + "\n")
    assert evaluate_model(model, late_system, tmp_path / "v3-late", template="deepseek-v3", max_new_tokens=2,
                          progress=False)["count"] == 1
    only_together = tmp_path / "together.jsonl"
    only_together.write_text(together_in_history + "\n")
    with pytest.raises(DsftError, match="no usable evaluation records: the deepseek-v3.2 template cannot render any"):
        evaluate_model(model, only_together, tmp_path / "v32", template="deepseek-v3.2", max_new_tokens=2,
                       progress=False)


def test_compare_a_moved_lora_run_with_base_model(tmp_path: Path, eval_data: Path, lora_run: Path,
                                                  tiny_model_dir: Callable[[str], Path], run_cli) -> None:
    """A LoRA run moved away from its base model: `dsft compare` had no --base-model (eval, export, serve and chat
    do), so such a run could not be compared at all. With it, the adapter loads on that base, and the base side is
    that base, as it is the run's base model."""
    moved = tmp_path / "moved-run"
    shutil.copytree(lora_run, moved)
    info = json.loads((moved / "run.json").read_text())
    info.update(base_model=str(tmp_path / "gone"), model_name_or_path=str(tmp_path / "gone"))
    (moved / "run.json").write_text(json.dumps(info))
    args = ["compare", "--tuned", str(moved), "--data", str(eval_data), "--max-new-tokens", "4", "--batch-size", "4"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "refused")])
    assert code == 2 and "pass the base model with --base-model PATH_OR_ID" in err, err
    assert not (tmp_path / "refused").exists()

    code, _, err = run_cli([*args, "--out", str(tmp_path / "cmp"), "--base-model", "tiny-deepseek-v3"])
    assert code == 0, err
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert Path(result["base_name"]) == tiny_model_dir("tiny-deepseek-v3")
    tuned = json.loads((tmp_path / "cmp" / "tuned" / "metrics.json").read_text())
    assert tuned["evaluated"]["adapter"] is True
