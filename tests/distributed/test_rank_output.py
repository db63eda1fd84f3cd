"""Under torchrun every process runs `dsft train`; the job's summary, its notices, its warnings (rejected records,
--resume auto with no checkpoint) are said once, and an error every process meets alike (a config error, data
that leaves nothing to train on, a non-finite loss, ...) once per node, not once per process."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from torchrun_helpers import dsft_in_processes

from dsft.config import load_config
from dsft.data.ingest import Rejection, rejection_error
from dsft.data.input_checks import check_inputs
from dsft.data.prepared_folder import load_prepared
from dsft.errors import ConfigError, DataError, DsftError
from dsft.eval.callbacks import GenerationEvalCallback
from dsft.training.checkpointing import resolve_resume
from dsft.training.objectives import load_preference_splits
from dsft.training.collators import make_train_dataset
from dsft.training.examples import unrendered_tools
from dsft.training.guards import NonFiniteLossError
from dsft.training.objectives import DegenerateBatchGuard
from dsft.training.ranks import is_main_process, says_error, warn_for_job, warn_for_node
from dsft.training.resume import check_same_data
from dsft.models.loading import load_tokenizer
from dsft.training.rundir import RunDir
from dsft.training.setup import load_splits, resolve_template

NOTICE = "lora.r=8: not applied"  # the one notice of the config below (train.method=full)
REJECTED = "data: 1 of 17 records rejected"  # its data's malformed line, found by every process's preparation
NO_CHECKPOINT = "--resume auto: no checkpoint in"  # run.py's warning for a new --out, found by every process
TOOLS = "1 conversation(s) carry tool definitions"  # its data's one record with tools, rendered by every process
NO_GENERATION_EVAL = "generation eval runs in single-process training only"  # every process finds WORLD_SIZE 2
COMMENT = "1 comment line (line 1) skipped"  # the data readers' own warning, logged by every process that reads it


def test_only_rank_zero_speaks_for_the_job_and_one_process_per_node_says_a_config_error() -> None:
    assert is_main_process({}) and is_main_process({"RANK": "0", "LOCAL_RANK": "0"})
    assert not is_main_process({"RANK": "1", "LOCAL_RANK": "1"})
    assert not is_main_process({"RANK": "8", "LOCAL_RANK": "0"})  # node 1's first process
    error = ConfigError("c.yaml: 1 problem(s)", ["eval.metric: unknown metric"])
    assert says_error(error, {}) and says_error(error, {"RANK": "8", "LOCAL_RANK": "0"})
    assert not says_error(error, {"RANK": "1", "LOCAL_RANK": "1"})
    assert says_error(DataError("rank 1's disk is full"), {"RANK": "1", "LOCAL_RANK": "1"})  # its own failure


def _raised(action: Callable[[], object]) -> DsftError:
    with pytest.raises(DsftError) as raised:
        action()
    return raised.value


def _degenerate_grpo() -> None:
    guard = DegenerateBatchGuard(stop_after=1, max_completion_len=64)
    guard.on_log(None, SimpleNamespace(global_step=3), None, logs={"loss": 0.0, "frac_reward_zero_std": 1.0})


# Each raised after a decision every process of a launched job makes alike (the same config, data, run directory,
# or metrics gathered from every rank); the loss guard's gathering is tested in tests/training/test_run_guards.py.
JOB_WIDE = {
    "a non-finite loss, gradient norm or weight": lambda tmp: NonFiniteLossError("training loss became nan"),
    "a GRPO run with nothing to learn from": lambda tmp: _raised(_degenerate_grpo),
    "data inputs that cannot be read": lambda tmp: _raised(
        lambda: check_inputs(load_config(None, [f"data.train=[{tmp / 'missing.jsonl'}]"]))),
    "invalid records under data.on_error: fail": lambda tmp: rejection_error([Rejection("d.jsonl:3", ["not JSON"])]),
    "a prepared directory that is not one": lambda tmp: _raised(lambda: load_prepared(tmp)),
    "resumed data that differs": lambda tmp: _raised(lambda: check_same_data({"data_fingerprint": "a"}, "b", {})),
    "a --resume checkpoint that is not one": lambda tmp: _raised(lambda: resolve_resume(str(tmp), tmp)),
    "an --out that is a file": lambda tmp: _raised(lambda: RunDir(tmp / "c.yaml").check(load_config(None, []), False)),
}


@pytest.mark.parametrize("name", JOB_WIDE)
def test_an_error_every_process_meets_alike_is_said_by_each_nodes_first_process(name: str, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("{}\n", encoding="utf-8")
    error = JOB_WIDE[name](tmp_path)
    assert error.exit_code == 2
    assert says_error(error, {}) and says_error(error, {"RANK": "0", "LOCAL_RANK": "0"})
    assert says_error(error, {"RANK": "8", "LOCAL_RANK": "0"})  # node 1's log says it too
    assert not says_error(error, {"RANK": "1", "LOCAL_RANK": "1"})
    assert not says_error(error, {"RANK": "9", "LOCAL_RANK": "1"})


def _config(tmp_path: Path, extra: str = "") -> Path:
    data = tmp_path / "data.jsonl"
    records = [{"messages": [{"role": "user", "content": f"What is {i}?"},
                             {"role": "assistant", "content": f"It is {i}."}]} for i in range(16)]
    records[0]["tools"] = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    data.write_text("# reviewed\n" + "".join(json.dumps(record) + "\n" for record in records) + "{not json\n",
                    encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(f"model:\n  name_or_path: tiny-r1-distill-qwen\ndata:\n  train: [{data}]\n  val_ratio: 0.0\n"
                      "train:\n  method: full\n  max_steps: 1\n  micro_batch_size: 2\n  max_seq_len: 64\n"
                      f"  distributed: ddp\n  save_steps: 100\nlora:\n  r: 8\n{extra}", encoding="utf-8")
    return config


@pytest.mark.slow
def test_two_processes_say_the_summary_and_the_notice_once(tmp_path: Path, tiny_model_dir) -> None:
    tiny_model_dir("tiny-r1-distill-qwen")  # materialised once, shared through DSFT_CACHE
    config = _config(tmp_path, "eval:\n  generation_steps: 1\n")
    code, out, err = dsft_in_processes(["train", str(config), "--out", str(tmp_path / "run"), "--resume", "auto"],
                                       2, tmp_path)
    assert code == 0, out[-3000:] + err[-6000:]
    assert out.count("done 1 steps") == 1 and out.count("final weights:") == 1, out
    for warning in (NOTICE, REJECTED, NO_CHECKPOINT, TOOLS, NO_GENERATION_EVAL, COMMENT):
        assert (out + err).count(warning) == 1, (warning, out + err)


@pytest.mark.slow
def test_two_processes_say_that_no_example_is_left_once(tmp_path: Path, tiny_model_dir) -> None:
    """Every process prepares the same data and finds every example longer than train.max_seq_len."""
    tiny_model_dir("tiny-r1-distill-qwen")
    config = _config(tmp_path)
    long_answer = " ".join(f"word{i}" for i in range(120))  # well over max_seq_len (64 tokens)
    (tmp_path / "data.jsonl").write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"What is {i}?"},
                                 {"role": "assistant", "content": long_answer}]}) + "\n" for i in range(4)),
        encoding="utf-8")
    code, out, err = dsft_in_processes(["train", str(config), "--out", str(tmp_path / "run")], 2, tmp_path)
    assert code != 0
    assert err.count("no training examples left after preparation") == 1, err


@pytest.mark.slow
def test_two_processes_say_a_config_error_once(tmp_path: Path) -> None:
    config = _config(tmp_path, "eval:\n  metric: acc\n")
    code, out, err = dsft_in_processes(["train", str(config), "--out", str(tmp_path / "run")], 2, tmp_path)
    assert code != 0
    assert err.count("eval.metric: unknown metric 'acc'") == 1, err  # (torchrun's own report of the exit follows)


@pytest.mark.slow
def test_a_config_error_is_said_even_when_the_process_that_says_it_meets_it_last(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """torchrun ends every other process within 0.1 s of the first exit. A rank that says nothing of a job-wide
    error exited at once, and when it did so first the node's first process was ended before its line: the job
    failed with torchrun's report alone (seen in CI, on a loaded machine). Here rank 0 starts a second late."""
    late = tmp_path / "late_rank_zero"
    late.mkdir()
    (late / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('LOCAL_RANK') == '0':\n    time.sleep(1)\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(late), os.environ.get("PYTHONPATH")])))
    config = _config(tmp_path, "eval:\n  metric: acc\n")
    code, out, err = dsft_in_processes(["train", str(config), "--out", str(tmp_path / "run")], 2, tmp_path)
    assert code != 0
    assert err.count("eval.metric: unknown metric 'acc'") == 1, err


def test_a_job_warning_comes_from_rank_zero_and_a_machine_warning_from_each_node(monkeypatch, caplog) -> None:
    log = logging.getLogger("dsft.test_rank_output")
    for rank, local_rank, job, node in (("0", "0", 1, 1), ("1", "1", 0, 0), ("8", "0", 0, 1)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=log.name):
            warn_for_job(log, "data: %d of %d records rejected", 1, 17)
            warn_for_node(log, "train.liger: not installed")
        said = [r.getMessage() for r in caplog.records]
        assert said.count("data: 1 of 17 records rejected") == job and said.count("train.liger: not installed") == node


def _checkpoint(root: Path, step: int, files: tuple[str, ...]) -> None:
    checkpoint = root / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    for name in files:
        (checkpoint / name).write_bytes(b"x")


def _skips_a_damaged_checkpoint(tmp: Path) -> None:
    _checkpoint(tmp / "checkpoints", 1, ("model.safetensors", "optimizer.pt", "scheduler.pt"))
    _checkpoint(tmp / "checkpoints", 2, ("model.safetensors", "optimizer.pt"))  # no scheduler.pt
    assert resolve_resume("auto", tmp / "checkpoints").checkpoint == tmp / "checkpoints" / "checkpoint-1"


def _drops_an_overlong_example(tmp: Path) -> None:
    examples = [{"input_ids": [1] * n, "labels": [1] * n} for n in (4, 40)]
    assert make_train_dataset(examples, SimpleNamespace(max_seq_len=16, packing=False), seed=0).dropped_overlong == 1


def _skips_generation_eval_under_a_launcher(tmp: Path) -> None:
    GenerationEvalCallback(tmp, every=1, samples=2, max_new_tokens=8).on_train_begin(
        SimpleNamespace(world_size=2), SimpleNamespace(), SimpleNamespace())


def _finds_unrendered_tools(tmp: Path) -> None:
    template = SimpleNamespace(renders_tool_definitions=False, name="deepseek-r1")
    assert unrendered_tools([SimpleNamespace(tools=[{"type": "function"}]), SimpleNamespace(tools=None)], template) == 1


# What every process of a launched job finds alike, said as a warning: from the main process only.
JOB_WARNINGS = {
    "skipping damaged checkpoint checkpoint-2": _skips_a_damaged_checkpoint,
    "1 of 2 examples are longer than train.max_seq_len=16": _drops_an_overlong_example,
    NO_GENERATION_EVAL: _skips_generation_eval_under_a_launcher,
    TOOLS: _finds_unrendered_tools,
}


@pytest.mark.parametrize("warning", JOB_WARNINGS)
def test_a_warning_every_process_finds_alike_comes_from_rank_zero(warning: str, tmp_path: Path, monkeypatch,
                                                                   caplog) -> None:
    for rank, local_rank, says in (("0", "0", 1), ("1", "1", 0), ("8", "0", 0)):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            JOB_WARNINGS[warning](tmp_path / rank)
        assert sum(warning in r.getMessage() for r in caplog.records) == says, (rank, caplog.records)


def test_training_says_the_data_preparations_warnings_from_rank_zero_only(tmp_path: Path, tiny_model_dir,
                                                                           monkeypatch, caplog) -> None:
    """Every process prepares the same data; records balanced without their balance_by field were said by each."""
    model_dir = tiny_model_dir("tiny-deepseek-llm")
    tokenizer = load_tokenizer(model_dir)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i} about dam {i * 7}?"},
                                                     {"role": "assistant", "content": f"Answer {i}."}],
                                        **({"domain": "ab"[i % 2]} if i < 8 else {})}) + "\n" for i in range(10)),
                    encoding="utf-8")
    cfg = load_config(None, [f"data.train=[{data}]", "data.clean.balance_by=domain", "data.val_ratio=0",
                             "data.clean.near_dedup=false"])
    template = resolve_template(cfg, model_dir, tokenizer)[1]
    for rank, says in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        (tmp_path / rank).mkdir()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load_splits(cfg, tokenizer, template, tmp_path / rank)
        assert sum("data.clean.balance_by=domain: 2 of 10" in r.getMessage() for r in caplog.records) == says, rank


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_what_the_data_readers_warn_of_comes_from_rank_zero_only(objective: str, tmp_path: Path, tiny_model_dir,
                                                                  monkeypatch, caplog) -> None:
    """Every process reads the same data files; what the readers log of a file themselves (its comment lines, a ','
    between records: 'not valid JSON ...') was said by every process of the job, not once."""
    model_dir = tiny_model_dir("tiny-deepseek-llm")
    tokenizer = load_tokenizer(model_dir)
    rows = [{"messages": [{"role": "user", "content": f"Question {i} about dam {i * 7}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} if objective == "sft" else
            {"prompt": f"Question {i} about dam {i * 7}?", "chosen": f"Answer {i}.", "rejected": "No idea."}
            for i in range(6)]
    data = tmp_path / "d.jsonl"
    data.write_text("# reviewed 2024-05\n" + "".join(json.dumps(row, indent=2) + ",\n" for row in rows),
                    encoding="utf-8")
    cfg = load_config(None, [f"data.train=[{data}]", "data.val_ratio=0", "data.clean.near_dedup=false",
                             f"train.objective={objective}"])
    template = resolve_template(cfg, model_dir, tokenizer)[1]
    load = load_splits if objective == "sft" else load_preference_splits
    level = logging.getLogger("dsft.data").level
    for rank, says in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        (tmp_path / rank).mkdir()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            load(cfg, tokenizer, template, tmp_path / rank)
        said = [r.getMessage() for r in caplog.records]
        assert sum(f"{data}: 1 comment line (line 1) skipped" in m for m in said) == says, (rank, said)
        assert sum(f"{data}: not valid JSON (a ',' between records" in m for m in said) == says, (rank, said)
        assert logging.getLogger("dsft.data").level == level  # quieted for the preparation only


def test_only_rank_zero_draws_the_data_histograms(tmp_path: Path, tiny_model_dir, monkeypatch) -> None:
    """Every process prepares the same data into the run directory; each drew the token-length histogram too
    (importing matplotlib and drawing: about a second of CPU per process). Rank 0 draws it; every rank's
    report lists it alike."""
    model_dir = tiny_model_dir("tiny-deepseek-llm")
    tokenizer = load_tokenizer(model_dir)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Question {i} about dam {i * 7}?"},
                                                     {"role": "assistant", "content": f"Answer {i}."}]}) + "\n"
                            for i in range(10)), encoding="utf-8")
    cfg = load_config(None, [f"data.train=[{data}]", "data.val_ratio=0.2"])
    template = resolve_template(cfg, model_dir, tokenizer)[1]
    reports = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        (tmp_path / rank).mkdir()
        load_splits(cfg, tokenizer, template, tmp_path / rank)
        reports[rank] = json.loads((tmp_path / rank / "data_report.json").read_text(encoding="utf-8"))
    assert (tmp_path / "0" / "data" / "token_lengths.png").stat().st_size > 1000
    assert not (tmp_path / "1" / "data" / "token_lengths.png").exists()
    assert reports["0"]["histograms"] == reports["1"]["histograms"] == ["token_lengths.png"]
