"""User errors that need no model are refused before torch is imported: one message, exit code 2, in about
a second instead of the ten or more seconds that importing torch, transformers and peft takes.

Each case runs ``dsft ...`` in a fresh interpreter and reports whether torch was imported by the time the
command exited.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsft.config import dump_config, load_config
from dsft.training.environment import Environment
from cli_in_subprocess import run_dsft
from fake_checkpoints import fake_checkpoint



def _refuse(args: list[str], cwd: Path) -> tuple[int, bool, str]:
    """(exit code, torch imported, stderr) of ``dsft ARGS`` run in a fresh interpreter in ``cwd``."""
    code, heavy, stderr = run_dsft(args, cwd)
    return code, "torch" in heavy, stderr


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    return str(path)


def _runs(tmp: Path) -> str:
    """A local runs/ directory holding one run, so that `runs/typo` is a mistyped path, not a hub id."""
    (tmp / "runs" / "my-run").mkdir(parents=True, exist_ok=True)
    return "runs/typo"


def _model_dir(tmp: Path) -> str:
    """A model directory as far as its file names go (config.json beside weights)."""
    model = tmp / "my-model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "tokenizer_config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    return str(model)


# Its config.json and tokenizer files were read as records, every one rejected as of an unknown format.
MODEL_AS_DATA = "my-model: looks like a model directory (config.json beside weights), not data"
MISTYPED = "runs/typo: no such directory (runs/ holds my-run); runs/ is a local directory"


def _config(tmp: Path, **sections: dict) -> str:
    path = tmp / "c.yaml"
    path.write_text(json.dumps(sections))
    return str(path)


TRAIN_CASES = [
    ("no-data", lambda t: {"model": {"name_or_path": "tiny-deepseek-v3"}}, "data.train: no training data"),
    ("missing-data-file", lambda t: {"data": {"train": [str(t / "absent.jsonl")]}}, "absent.jsonl"),
    ("missing-model-dir", lambda t: {"model": {"name_or_path": "./no-such-model"}, "data": {"train": [_data(t)]}},
     "'./no-such-model': not a local directory"),
    ("missing-gguf", lambda t: {"model": {"name_or_path": str(t / "m.gguf")}, "data": {"train": [_data(t)]}},
     "m.gguf: no such file or directory (a GGUF file was expected)"),
    ("gguf-is-a-directory", lambda t: {"model": {"name_or_path": str((t / "m.gguf").mkdir() or t / "m.gguf")},
                                       "data": {"train": [_data(t)]}},
     "m.gguf: is a directory, not a file (a GGUF file was expected)"),
    ("model-is-a-file", lambda t: {"model": {"name_or_path": _data(t)}, "data": {"train": [_data(t)]}},
     "is a file"),
    ("mistyped-local-model", lambda t: {"model": {"name_or_path": _runs(t)}, "data": {"train": [_data(t)]}},
     MISTYPED),
    ("data-is-a-device", lambda t: {"data": {"train": ["/dev/null"]}},
     "data.train: /dev/null: exists but is not a regular file (a device, pipe or socket)"),
    ("data-is-a-model-directory", lambda t: {"data": {"train": [_model_dir(t)]}}, MODEL_AS_DATA),
    # Sizes the model's config.json bounds (lora.r=99999999999 died in torch allocating 25 TB after the model loaded).
    ("lora-rank-above-hidden-size", lambda t: {"data": {"train": [_data(t)]}, "lora": {"r": 99999999999}},
     "lora.r=99999999999: above the hidden size of tiny-deepseek-v3 (64, hidden_size in its config)"),
    ("seq-len-beyond-positions", lambda t: {"model": {"name_or_path": "tiny-deepseek-llm"}, "data": {"train": [_data(t)]},
                                            "train": {"max_seq_len": 2**63}},
     f"train.max_seq_len={2**63}: above the 4096 positions tiny-deepseek-llm places"),
    ("lora-scale-diverges", lambda t: {"data": {"train": [_data(t)]}, "lora": {"r": 8, "alpha": 99999999999}},
     "lora.alpha=99999999999: scales each adapter update by alpha / r = 1.25e+10"),
    ("micro-batch-beyond-int32-tokens", lambda t: {"data": {"train": [_data(t)]}, "train": {"micro_batch_size": 2**63}},
     f"train.micro_batch_size={2**63}: with train.max_seq_len=2048, a forward of"),
    ("seed-below-numpy", lambda t: {"data": {"train": [_data(t)]}, "train": {"seed": -1}},
     "train.seed: Input should be greater than or equal to 0, got -1"),
]


@pytest.mark.parametrize("sections, expected", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_refuses_before_torch(tmp_path: Path, sections, expected: str) -> None:
    code, torch_loaded, err = _refuse(["train", _config(tmp_path, **sections(tmp_path)), "--out",
                                       str(tmp_path / "run")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "run").exists(), "a refused run must not leave a run directory"


def _run_dir(tmp: Path, export: dict) -> str:
    """A run directory as far as export's defaults are concerned: run.json and the run's config.yaml."""
    run = tmp / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "config.yaml").write_text(json.dumps({"export": export}))
    return str(run)


def _lora_run(tmp: Path) -> str:
    """A LoRA run directory as far as finding its base model is concerned (run.json and an adapter)."""
    run = tmp / "lora-run"
    (run / "final").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"method": "lora", "template": "deepseek-r1",
                                              "model_name_or_path": "tiny-deepseek-v3"}))
    (run / "final" / "adapter_config.json").write_text("{}")
    return str(run)


EXPORT_CASES = [
    ("format", lambda t: ["no-such-model", "--format", "zip"], "--format zip: unknown"),
    ("dtype", lambda t: ["no-such-model", "--dtype", "int3"], "--dtype int3: unknown"),
    ("hf-q8", lambda t: ["no-such-model", "--format", "hf", "--dtype", "q8_0"], "q8_0 applies to --format gguf/ollama"),
    ("adapter-dtype", lambda t: ["no-such-model", "--format", "adapter", "--dtype", "float16"],
     "an adapter is copied as trained"),
    ("tolerance", lambda t: ["no-such-model", "--tolerance", "-1"], "--tolerance must be a finite number > 0, got -1"),
    ("tolerance-syntax", lambda t: ["no-such-model", "--tolerance", "diff=5%,outlier=10%"],
     "--tolerance 'diff=5%,outlier=10%': cannot read 'outlier=10%'; expected a number"),
    ("shard-size", lambda t: ["no-such-model", "--max-shard-size", "lots"], "--max-shard-size lots"),
    ("no-verify-tolerance", lambda t: ["no-such-model", "--no-verify", "--tolerance", "0.1"],
     "--tolerance applies to the verification that --no-verify turns off"),
    ("base-model", lambda t: [_lora_run(t), "--base-model", "./no-base"],
     "--base-model: model './no-base': not a local directory"),
    ("base-model-of-a-model", lambda t: ["tiny-deepseek-v3", "--base-model", "tiny-deepseek-v3"],
     "--base-model applies to a run directory"),
    ("run-config-format-with-dtype", lambda t: [_run_dir(t, {"format": "adapter"}), "--dtype", "bfloat16"],
     "an adapter is copied as trained"),
    ("run-config-tolerance", lambda t: [_run_dir(t, {"tolerance": "top1=85"})],
     "export.tolerance 'top1=85': top1= must be a percentage"),
]


def test_export_refuses_to_write_over_the_model_it_reads(tmp_path: Path) -> None:
    """`--out RUN/final --overwrite` replaced the trained weights' files with the export (or failed on a copy
    of a file onto itself, with a traceback, for --format adapter)."""
    run = Path(_lora_run(tmp_path))
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    for fmt in ("adapter", "hf"):
        code, torch_loaded, err = _refuse(["export", str(run), "--format", fmt, "--out", str(run / "final"),
                                           "--overwrite"], tmp_path)
        assert code == 2 and "Traceback" not in err, err
        assert f"--out {run / 'final'}: the model is read from there" in err, err
        assert not torch_loaded, "the refusal came after torch was imported"
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("args, expected", [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_export_refuses_bad_options_before_torch(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(["export", *args(tmp_path), "--out", str(tmp_path / "out")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "out").exists()


def _empty_data(tmp: Path) -> str:
    path = tmp / "empty.jsonl"
    path.write_text("\n")
    return str(path)


def _prepared(tmp: Path) -> str:
    """A directory as `dsft data prepare` leaves it (the splits and the report)."""
    prepared = tmp / "prepared"
    prepared.mkdir()
    for name in ("train.jsonl", "val.jsonl"):
        (prepared / name).write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}) + "\n")
    (prepared / "data_report.json").write_text("{}")
    return str(prepared)


def _data_holding_outputs(tmp: Path) -> str:
    """A data directory that a preparation and a run were written into: read whole, their splits, rejects.jsonl,
    removed.jsonl and metrics were scored as evaluation records."""
    data = tmp / "data"
    (data / "runs" / "a").mkdir(parents=True)
    _data(data)
    _prepared(data)
    (data / "prepared" / "rejects.jsonl").write_text(json.dumps({"prompt": "refused", "completion": "c"}) + "\n")
    (data / "runs" / "a" / "run.json").write_text("{}")
    return str(data)


EVAL_CASES = [
    ("eval-missing-data", lambda t: ["eval", "tiny-deepseek-v3", "--data", str(t / "absent.jsonl")], "absent.jsonl"),
    ("eval-missing-model", lambda t: ["eval", "./no-such-model", "--data", _data(t)], "not a local directory"),
    ("eval-mistyped-local-model", lambda t: ["eval", _runs(t), "--data", _data(t)], MISTYPED),
    ("eval-missing-base-model", lambda t: ["eval", _lora_run(t), "--data", _data(t), "--base-model", "./no-base"],
     "--base-model: model './no-base': not a local directory"),
    ("eval-base-model-of-a-model", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data(t), "--base-model",
                                              "tiny-deepseek-v3"], "--base-model applies to a run directory"),
    ("eval-data-is-a-device", lambda t: ["eval", "tiny-deepseek-v3", "--data", "/dev/null"],
     "/dev/null: exists but is not a regular file (a device, pipe or socket)"),
    ("eval-unknown-metric", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data(t), "--metrics", "f1,blue"],
     "unknown metric(s) 'blue'"),
    ("eval-data-is-a-prepared-directory", lambda t: ["eval", "tiny-deepseek-v3", "--data", _prepared(t)],
     ("prepared: a directory written by dsft data prepare; reading all of it would score its train split too: "
      "pass one split, e.g. --data ")),
    ("eval-data-is-a-run-directory", lambda t: ["eval", "tiny-deepseek-v3", "--data", _lora_run(t)],
     "lora-run: a run directory, not data"),
    ("eval-data-holds-dsft-outputs", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data_holding_outputs(t)],
     "/data/runs/a (a training run); read whole, their splits, rejects and reports would be scored as evaluation "
     "records: move them out of"),
    ("compare-data-holds-dsft-outputs", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base",
                                                   "tiny-deepseek-v3", "--data", _data_holding_outputs(t)],
     "/data: holds what dsft wrote, "),
    ("eval-data-is-a-model-directory", lambda t: ["eval", "tiny-deepseek-v3", "--data", _model_dir(t)], MODEL_AS_DATA),
    ("compare-unknown-metric", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3",
                                          "--data", _data(t), "-m", "bleu4"],
     "unknown metric(s) 'bleu4'"),
    ("eval-unknown-template", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data(t), "--template", "deepseek-r9"],
     "--template: unknown template 'deepseek-r9'; choose one of"),
    ("compare-unknown-template", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3",
                                            "--data", _data(t), "--template", "deepseek-r9"],
     "--template: unknown template 'deepseek-r9'; choose one of"),
    # A model that never emits EOS generated for ever (Ctrl-C is read between steps only).
    ("eval-max-new-tokens-beyond-positions", lambda t: ["eval", "tiny-deepseek-llm", "--data", _data(t),
                                                        "--max-new-tokens", str(2**63)],
     f"--max-new-tokens {2**63}: above the 4096 positions tiny-deepseek-llm places"),
    ("compare-max-new-tokens-beyond-positions", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base",
                                                           "tiny-deepseek-llm", "--data", _data(t),
                                                           "--max-new-tokens", "5000"],
     "--max-new-tokens 5000: above the 4096 positions tiny-deepseek-llm places"),
    ("compare-missing-data", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--data", str(t / "absent.jsonl")],
     "absent.jsonl"),
    ("compare-missing-base", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base", "./no-base",
                                        "--data", _data(t)], "'./no-base': not a local directory"),
    # NaN decoded greedily and infinity uniformly at random, without a word.
    ("eval-temperature-nan", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data(t), "--temperature", "nan"],
     "--temperature nan: must be a finite number >= 0 (0 = greedy decoding)"),
    ("compare-temperature-inf", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3",
                                           "--data", _data(t), "--temperature", "inf"],
     "--temperature inf: must be a finite number >= 0 (0 = greedy decoding)"),
    # Found once --out had been created: the refusal left an empty --out behind.
    ("eval-no-usable-record", lambda t: ["eval", "tiny-deepseek-v3", "--data", _empty_data(t)],
     "empty.jsonl: no usable evaluation records"),
    ("compare-no-usable-record", lambda t: ["compare", "--tuned", "tiny-deepseek-v3", "--base", "tiny-deepseek-v3",
                                            "--data", _empty_data(t)], "empty.jsonl: no usable evaluation records"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES])
def test_eval_and_compare_refuse_missing_inputs_before_torch(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse([*args(tmp_path), "--out", str(tmp_path / "out")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "out").exists(), "a refused command must not leave its --out directory"


def _demo_done(tmp: Path) -> str:
    (tmp / "demo" / "run").mkdir(parents=True)
    return str(tmp / "demo")


DEMO_CASES = [
    pytest.param(lambda t: ["--out", _demo_done(t)], "already holds a demo run", id="demo-already-run"),
    pytest.param(lambda t: ["--out", str(t / "d"), "--model", "gpt5"], "--model gpt5: choose one of", id="demo-model"),
    pytest.param(lambda t: ["--out", str(t / "d"), "--set", "train.methd=full"],
                 "train.methd: unknown key; did you mean 'method'?", id="demo-set-key"),
    # The preflight and the launcher refusal `dsft train` runs (the demo failed after loading the model).
    pytest.param(lambda t: ["--out", str(t / "d"), "--set", "eval.metric=nope"],
                 "--set eval.metric=nope: 1 problem(s) - eval.metric: unknown metric 'nope'", id="demo-preflight"),
    pytest.param(lambda t: ["--out", str(t / "d"), "--set", "train.distributed=deepspeed"],
                 "DeepSpeed runs in a launcher's processes, and this `dsft demo` is one plain process",
                 id="demo-deepspeed-unlaunched",
                 marks=pytest.mark.skipif(Environment().has_cuda() or bool(os.environ.get("WORLD_SIZE")),
                                          reason="checks the refusal a CPU-only machine gives a plain command")),
]


@pytest.mark.parametrize("args, expected", DEMO_CASES)
def test_demo_refuses_before_torch(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(["demo", *args(tmp_path)], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert sorted(p.name for p in tmp_path.iterdir()) == (["demo"] if "already" in expected else []), \
        "a refused demo must not leave its --out directory"


SWEEP_CASES = [
    ("sweep-no-data", lambda t: {"model": {"name_or_path": "tiny-deepseek-v3"}}, ["--grid", "train.lr=1e-5,3e-5"],
     "data.train: no training data"),
    ("sweep-bad-grid-value", lambda t: {"data": {"train": [_data(t)]}}, ["--grid", "train.lr=abc,1e-3"],
     "train.lr: Input should be a valid number"),
    ("sweep-missing-data-file", lambda t: {"data": {"train": [str(t / "absent.jsonl")]}},
     ["--grid", "train.lr=1e-5"], "absent.jsonl"),
    ("sweep-data-is-a-device", lambda t: {"data": {"train": ["/dev/null"]}}, ["--grid", "train.lr=1e-5"],
     "data.train: /dev/null: exists but is not a regular file (a device, pipe or socket)"),
]


@pytest.mark.parametrize("sections, args, expected", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_sweep_refuses_before_torch(tmp_path: Path, sections, args: list[str], expected: str) -> None:
    code, torch_loaded, err = _refuse(["sweep", _config(tmp_path, **sections(tmp_path)), "--out",
                                       str(tmp_path / "s"), *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "s").exists()


def _other_run(tmp: Path) -> Path:
    """A run directory that trained a LoRA of rank 8 on the same data."""
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(None, [f"data.train=[{_data(tmp)}]", "lora.r=8"])))
    (run / "run.json").write_text("{}")
    return run


def test_train_refuses_an_out_directory_holding_another_run_before_torch(tmp_path: Path) -> None:
    run = _other_run(tmp_path)
    config = _config(tmp_path, data={"train": [_data(tmp_path)]}, lora={"r": 16})
    code, torch_loaded, err = _refuse(["train", config, "--out", str(run)], tmp_path)
    assert code == 2 and "already holds a different run (config differs in: lora.r)" in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "run.json"], "nothing written"
    code, torch_loaded, err = _refuse(["train", config, "--out", _data(tmp_path)], tmp_path)
    assert code == 2 and "exists and is not a directory" in err and not torch_loaded, err


def _run_at_step_4(tmp: Path, *settings: str) -> Path:
    """A run directory of 4 steps an epoch (as run.json records) whose newest checkpoint is at step 4 (its files
    arbitrary bytes, its manifest true)."""
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(load_config(None, [f"data.train=[{_data(tmp)}]", *settings])))
    (run / "run.json").write_text(json.dumps({"status": "stopped", "steps_per_epoch": 4}))
    for step in (2, 4):
        fake_checkpoint(run / "checkpoints", step)
    return run


BELOW_THE_CHECKPOINT = [
    ("max-steps-auto", "auto", ["train.max_steps=3"],
     ["--resume: checkpoint-4 is at step 4, past the train.max_steps 3 asked for",
      "pass train.max_steps=4 to end the run at this checkpoint"]),
    ("max-steps-path", "checkpoint-4", ["train.max_steps=3"],
     ["--resume: checkpoint-4 is at step 4, past the train.max_steps 3 asked for"]),
    # The steps an epoch come from run.json: the data is neither read nor tokenized to count them.
    ("epochs-auto", "auto", ["train.epochs=0.5"],
     ["--resume: checkpoint-4 is at step 4, past the 2 steps train.epochs 0.5 asks for (4 steps an epoch)",
      "pass train.epochs=1 to end the run at this checkpoint, or more to go on"]),
    ("epochs-path", "checkpoint-4", ["train.epochs=0.25"],
     ["checkpoint-4 is at step 4, past the 1 step train.epochs 0.25 asks for"]),
]


@pytest.mark.parametrize("resume, settings, expected", [c[1:] for c in BELOW_THE_CHECKPOINT],
                         ids=[c[0] for c in BELOW_THE_CHECKPOINT])
def test_train_refuses_a_resume_below_the_checkpoint_step_before_torch(tmp_path: Path, resume: str, settings: list[str],
                                                                       expected: list[str]) -> None:
    """The refusal of a train.max_steps (or train.epochs) the checkpoint is already past came after torch,
    transformers and the model stack were imported (run_training): ten seconds for a one-line user error."""
    run = _run_at_step_4(tmp_path, "train.max_steps=4" if "max_steps" in settings[0] else "train.epochs=1")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    picked = "auto" if resume == "auto" else str(run / "checkpoints" / resume)
    code, torch_loaded, err = _refuse(["train", str(run / "config.yaml"), "--out", str(run), "--resume", picked,
                                       *[a for s in settings for a in ("--set", s)]], tmp_path)
    assert code == 2 and all(e in err for e in expected) and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, "nothing written"


SERVE_CASES = [
    ("quantize", ["--quantize", "nf4"], "--quantize nf4: only int8"),
    ("dtype", ["--dtype", "fp8"], "--dtype fp8: choose one of"),
    ("adapter", ["--adapter", "sql"], "--adapter 'sql': expected NAME=PATH"),
    ("adapter-missing", ["--adapter", "sql=runs/typo"], "--adapter sql=runs/typo: no such directory"),
    ("adapter-empty-dir", ["--adapter", "sql=."], "--adapter sql=.: no adapter_config.json there"),
    # "" served the model under the directory's name without a word (the bad --dtype after it only keeps a
    # command that skips the check from starting a server).
    ("served-model-name-empty", ["--served-model-name", "", "--dtype", "fp8"],
     "--served-model-name '': must be a non-empty name"),
    ("served-model-name-spaces", ["--served-model-name", " r1", "--dtype", "fp8"],
     "--served-model-name ' r1': must be a non-empty"),
    # A ValueError traceback from shlex.
    ("engine-args-unclosed-quote", ["--engine", "vllm", "--dry-run", "--engine-args", '--chat-template "a b'],
     "--engine-args '--chat-template \"a b': cannot split it as a shell would (No closing quotation)"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in SERVE_CASES], ids=[c[0] for c in SERVE_CASES])
def test_serve_refuses_bad_flags_before_torch(tmp_path: Path, args: list[str], expected: str) -> None:
    code, torch_loaded, err = _refuse(["serve", "tiny-deepseek-llm", *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


MODEL_CASES = [
    ("serve-relative", lambda t: ["serve", "./no-such-model"], "'./no-such-model': not a local directory"),
    ("serve-absolute", lambda t: ["serve", str(t / "absent")], "absent: no such directory ("),
    ("serve-file", lambda t: ["serve", _data(t)], "is a file"),
    ("serve-mistyped-local-model", lambda t: ["serve", _runs(t)], MISTYPED),
    ("chat-relative", lambda t: ["chat", "./no-such-model"], "'./no-such-model': not a local directory"),
    ("serve-base-model", lambda t: ["serve", _lora_run(t), "--base-model", "./no-base"],
     "--base-model: model './no-base': not a local directory"),
    ("serve-base-model-of-a-model", lambda t: ["serve", "tiny-deepseek-llm", "--base-model", "tiny-deepseek-v3"],
     "--base-model applies to a run directory"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_serve_and_chat_refuse_a_missing_model_before_torch(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(args(tmp_path), tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def _gguf_below(tmp: Path) -> str:
    """A path below a .gguf file: a hub id's shape, so it was tried on the hub (and its download failed)."""
    (tmp / "some.gguf").write_bytes(b"GGUF")
    return "some.gguf/x"


BELOW_A_FILE = "some.gguf/x: some.gguf is a file, not a directory, so nothing lies below it (a local path: not read as " \
               "a hub id, nothing is downloaded); a .gguf file is named alone: some.gguf"
BELOW_A_FILE_CASES = [
    ("export", lambda t: ["export", _gguf_below(t), "--out", str(t / "o")]),
    ("serve", lambda t: ["serve", _gguf_below(t)]),
    ("chat", lambda t: ["chat", _gguf_below(t)]),
    ("eval", lambda t: ["eval", _gguf_below(t), "--data", _data(t), "--out", str(t / "o")]),
    ("train", lambda t: ["train", _config(t, model={"name_or_path": _gguf_below(t)}, data={"train": [_data(t)]}),
                         "--out", str(t / "o")]),
    ("plan", lambda t: ["plan", "--model", _gguf_below(t)]),
    ("export-base-model", lambda t: ["export", _lora_run(t), "--base-model", _gguf_below(t), "--out", str(t / "o")]),
]


@pytest.mark.parametrize("args", [c[1] for c in BELOW_A_FILE_CASES], ids=[c[0] for c in BELOW_A_FILE_CASES])
def test_a_model_path_below_a_file_is_refused_as_a_local_path_before_torch(tmp_path: Path, args) -> None:
    code, torch_loaded, err = _refuse(args(tmp_path), tmp_path)
    assert code == 2 and BELOW_A_FILE in err and "Traceback" not in err and "could not download" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "o").exists()


def _lora_checkpoint(tmp: Path, base: Path) -> Path:
    """A LoRA run's checkpoint as training leaves it (the adapter beside the trainer state), the run's run.json
    recording ``base`` as training records a local base model."""
    run = tmp / "runs" / "lora"
    checkpoint = run / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base),
                                                                "peft_type": "LORA"}))
    for name in ("adapter_model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt"):
        (checkpoint / name).write_text("{}")
    (run / "run.json").write_text(json.dumps({
        "template": "deepseek-r1", "method": "lora", "status": "finished", "base_model": str(base),
        "base_model_relative": "../../base", "model_name_or_path": str(base), "model_revision": None}))
    return checkpoint


@pytest.mark.parametrize("command", ["serve", "chat", "export", "eval"])
def test_a_run_s_checkpoints_folder_or_a_folder_of_runs_names_what_to_pass(tmp_path: Path, command: str) -> None:
    """RUN/checkpoints (where tab completion stops) and runs/ were 'neither a run directory (run.json) nor a model
    directory (config.json)', which leaves the user to guess that a checkpoint-N inside, or the run, is wanted."""
    checkpoint = _lora_checkpoint(tmp_path, tmp_path / "base")
    (checkpoint.parent / "checkpoint-1").mkdir()
    run = checkpoint.parent.parent
    extra = CHECKPOINT_COMMANDS[command](tmp_path)
    for given, expected in ((run / "checkpoints", f"{run / 'checkpoints'}: the checkpoints folder of the run {run}; "
                             f"name the run, or one checkpoint, e.g. {checkpoint}"),
                            (run.parent, f"{run.parent}: a folder of runs or models; name one, e.g. {run}")):
        code, torch_loaded, err = _refuse([command, str(given), *extra], tmp_path)
        assert code == 2 and expected in err and "Traceback" not in err, err
        assert not torch_loaded


CHECKPOINT_COMMANDS = {
    "eval": lambda t: ["--data", _data(t), "--out", str(t / "eval")],
    "export": lambda t: ["--format", "hf", "--out", str(t / "export")],
    "serve": lambda t: [],
    "chat": lambda t: [],
}


@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_a_lora_checkpoint_whose_base_model_is_gone_is_refused_before_torch(tmp_path: Path, command: str) -> None:
    """A LoRA checkpoint is evaluated, exported, served and chatted with as its run is; where the run's base model
    is gone (deleted, or the run copied to a machine without it) the checkpoint is named, with what was looked for
    and the flag that supplies it. (It was refused as 'a bare adapter; export its run directory instead'.)"""
    base = tmp_path / "base"
    checkpoint = _lora_checkpoint(tmp_path, base)
    code, torch_loaded, err = _refuse([command, str(checkpoint), *CHECKPOINT_COMMANDS[command](tmp_path)], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert (f"{checkpoint}: a checkpoint of run {checkpoint.parents[1].resolve()}, whose base model was not found "
            f"on this machine; tried: {base} - pass the base model with --base-model PATH_OR_ID") in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / command).exists()


@pytest.mark.parametrize("base_model", [None, "no-such-base"])
def test_compare_names_its_base_model_flag_for_a_run_whose_base_model_is_gone(tmp_path: Path,
                                                                              base_model: str | None) -> None:
    """dsft compare takes --base-model as eval, export, serve and chat do: the same hint, the same check of what it
    names, before torch; before, it had no such flag, and a moved LoRA run could not be compared."""
    base = tmp_path / "base"
    checkpoint = _lora_checkpoint(tmp_path, base)
    flag = ["--base-model", base_model] if base_model else []
    code, torch_loaded, err = _refuse(["compare", "--tuned", str(checkpoint), "--data", _data(tmp_path), "--out",
                                       str(tmp_path / "compare"), *flag], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    if base_model is None:
        assert (f"{checkpoint}: a checkpoint of run {checkpoint.parents[1].resolve()}, whose base model was not found "
                f"on this machine; tried: {base} - pass the base model with --base-model PATH_OR_ID") in err, err
    else:
        assert "--base-model: model 'no-such-base': not a local directory" in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_a_lora_checkpoint_copied_out_of_its_run_is_refused_before_torch(tmp_path: Path, command: str) -> None:
    """Outside its run nothing says a checkpoint's chat template, and its adapter_config.json's base path is the
    one of training time: refused naming the checkpoint, that path and where to point instead."""
    checkpoint = _lora_checkpoint(tmp_path, tmp_path / "base")
    copied = checkpoint.rename(tmp_path / "best")
    code, torch_loaded, err = _refuse([command, str(copied), *CHECKPOINT_COMMANDS[command](tmp_path)], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert (f"{copied}: a LoRA adapter outside its run directory: no run.json in {tmp_path.resolve()} or "
            f"{tmp_path.resolve().parent} names its base model and chat template (adapter_config.json records "
            f"the base {tmp_path / 'base'}, which no longer exists); point at it inside its run (RUN, RUN/final or "
            "RUN/checkpoints/checkpoint-N)") in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


CHAT_CASES = [
    ("quantize-nf4", ["--quantize", "nf4"], "--quantize nf4: only int8"),
    ("quantize-4bit", ["--quantize", "4bit"], "--quantize 4bit: only int8"),
    ("quantize-empty", ["--quantize", ""], "--quantize : only int8"),
    # typer's range check said "nan: should be less than or equal to 2".
    ("temperature-nan", ["--temperature", "nan"], "--temperature nan: must be a number from 0 (greedy) to 2"),
    ("temperature-inf", ["--temperature", "inf"], "--temperature inf: must be a number from 0 (greedy) to 2"),
    ("temperature-negative", ["--temperature=-1"], "--temperature -1: must be a number from 0 (greedy) to 2"),
    ("temperature-above-2", ["--temperature", "2.5"], "--temperature 2.5: must be a number from 0 (greedy) to 2"),
    # dsft serve caps a request's max_tokens at serve.max_tokens; chat generated any number asked for.
    ("max-new-tokens-above-the-cap", ["--max-new-tokens", "2049"],
     "--max-new-tokens 2049: above serve.max_tokens, 2048 (the schema's default), the most a reply may generate (as "
     "`dsft serve` caps a request's max_tokens); ask for at most 2048, or raise serve.max_tokens in a YAML passed "
     "with --config"),
    ("max-tokens-above-the-cap", ["--max-tokens", "9223372036854775808"],
     "--max-new-tokens 9223372036854775808: above serve.max_tokens, 2048 (the schema's default)"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES])
def test_chat_refuses_bad_flags_before_torch(tmp_path: Path, args: list[str], expected: str) -> None:
    code, torch_loaded, err = _refuse(["chat", "tiny-deepseek-llm", *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


@pytest.mark.parametrize("where", ["--config", "the run's config.yaml"])
def test_chat_caps_a_reply_at_the_serve_max_tokens_it_is_given(tmp_path: Path, where: str) -> None:
    """The cap is the serve.max_tokens `dsft serve` would apply to the same model: --config's, else the run's own."""
    run = _other_run(tmp_path)
    capped = dump_config(load_config(None, ["serve.max_tokens=64"]))
    if where == "--config":
        (tmp_path / "serve.yaml").write_text(capped)
        source, args = "serve.yaml", ["tiny-deepseek-llm", "--config", "serve.yaml"]
    else:
        (run / "config.yaml").write_text(capped)
        source, args = str(run / "config.yaml"), [str(run)]
    code, torch_loaded, err = _refuse(["chat", *args, "--max-new-tokens", "65"], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert f"--max-new-tokens 65: above serve.max_tokens, 64 ({source}), the most a reply may generate" in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def _not_a_checkpoint(tmp: Path) -> str:
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return str(tmp / "ckpt")


def _checkpoint_file(tmp: Path) -> Path:
    """A file of a checkpoint a run can resume from."""
    return fake_checkpoint(tmp / "run" / "checkpoints", 2) / "trainer_state.json"


RESUME_CASES = [
    ("absent", lambda t: str(t / "absent"), "absent: no such directory; give a checkpoint directory of a run "
     "(RUN/checkpoints/checkpoint-N), or continue a run directory's newest checkpoint with --out RUN --resume auto"),
    # A file was said to be no such directory (it is there), naming nothing of where it lies.
    ("a-file", lambda t: _data(t), "d.jsonl: a file, not a checkpoint directory; give a checkpoint directory of a run "
     "(RUN/checkpoints/checkpoint-N), or continue a run directory's newest checkpoint with --out RUN --resume auto"),
    ("a-run-s-file", lambda t: str(_other_run(t) / "run.json"),
     "run.json: a file, not a checkpoint directory; give a checkpoint directory of a run (RUN/checkpoints/checkpoint-N), "
     "or continue a run directory's newest checkpoint with --out RUN --resume auto (it is in the run directory "),
    ("a-checkpoint-s-file", lambda t: str(_checkpoint_file(t)),
     "trainer_state.json: a file, not a checkpoint directory; give a checkpoint directory of a run "
     "(RUN/checkpoints/checkpoint-N), or continue a run directory's newest checkpoint with --out RUN --resume auto "
     "(it is in the checkpoint "),
    ("empty-dir", lambda t: str((t / "e").mkdir() or t / "e"), "not a checkpoint a run can resume from"),
    ("no-state", _not_a_checkpoint, "optimizer.pt is missing"),
    ("run-dir", lambda t: str(_other_run(t)), "a run directory, not a checkpoint; pass --out"),
]


@pytest.mark.parametrize("resume, expected", [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES])
def test_train_refuses_a_resume_path_that_is_no_checkpoint_before_torch(tmp_path: Path, resume, expected: str) -> None:
    config = _config(tmp_path, model={"name_or_path": "tiny-deepseek-v3"}, data={"train": [_data(tmp_path)]})
    code, torch_loaded, err = _refuse(["train", config, "--out", str(tmp_path / "new"), "--resume",
                                       resume(tmp_path)], tmp_path)
    assert code == 2 and f"--resume {tmp_path}" in err and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "new").exists(), "a refused run must not leave a run directory"


OPEN_BIND_CASES = [
    ("any-interface", ["--host", "0.0.0.0"], "--host 0.0.0.0: "),
    ("lan-address", ["--host", "192.168.1.20"], "--host 192.168.1.20: "),
    ("vllm", ["--host", "0.0.0.0", "--engine", "vllm"], "--host 0.0.0.0: "),
    # It printed a `vllm serve --host 0.0.0.0` command without --api-key that a real start refuses.
    ("vllm-dry-run", ["--host", "0.0.0.0", "--engine", "vllm", "--dry-run"], "--host 0.0.0.0: "),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in OPEN_BIND_CASES], ids=[c[0] for c in OPEN_BIND_CASES])
def test_serve_refuses_an_open_bind_without_a_key_before_torch(tmp_path: Path, args: list[str], expected: str) -> None:
    code, torch_loaded, err = _refuse(["serve", "tiny-deepseek-llm", *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert "--api-key" in err and "DSFT_API_KEY" in err and "--allow-unauthenticated" in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def test_serve_binds_off_loopback_with_a_key_or_on_purpose(tmp_path: Path) -> None:
    """A key (flag, environment or config) or --allow-unauthenticated passes the bind check: the next check
    (a bad --dtype) answers instead. Loopback needs neither."""
    config = _config(tmp_path, serve={"host": "0.0.0.0", "api_key": "k"})
    for extra in (["--host", "0.0.0.0", "--api-key", "k"], ["--host", "0.0.0.0", "--allow-unauthenticated"],
                  ["--config", config], ["--host", "127.0.0.2"], ["--host", "::1"], ["--host", "localhost"]):
        code, torch_loaded, err = _refuse(["serve", "tiny-deepseek-llm", *extra, "--dtype", "fp8"], tmp_path)
        assert code == 2 and "--dtype fp8: choose one of" in err and not torch_loaded, (extra, err)
    code, _, err = _refuse(["serve", "tiny-deepseek-llm", "--config", _config(tmp_path, serve={"host": "0.0.0.0"})],
                           tmp_path)
    assert code == 2 and "--host 0.0.0.0 (serve.host)" in err, err


def test_deploy_refuses_a_missing_model_without_creating_out(tmp_path: Path) -> None:
    """The model is checked before --out is created: a refusal leaves no empty directory, and a directory the
    user made beforehand is left as it was."""
    code, torch_loaded, err = _refuse(["deploy", "k8s", "./nope", "--out", str(tmp_path / "k8s")], tmp_path)
    assert code == 2 and "'./nope': not a local directory" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "k8s").exists(), "a refused deploy must not leave its --out directory"
    (tmp_path / "mine").mkdir()
    code, _, err = _refuse(["deploy", "k8s", "./nope", "--out", str(tmp_path / "mine")], tmp_path)
    assert code == 2 and "'./nope': not a local directory" in err, err
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())



def test_deploy_refuses_a_non_empty_out_before_torch_and_writes_nothing(tmp_path: Path) -> None:
    """A directory holding the user's own files is refused (its Dockerfile would be replaced) before the preset
    is built, naming the directory and --overwrite; nothing in it changes."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "Dockerfile").write_text("FROM my-own-image\n")
    code, torch_loaded, err = _refuse(["deploy", "k8s", "tiny-deepseek-llm", "--out", str(mine)], tmp_path)
    assert code == 2 and f"--out {mine}: directory is not empty" in err and "--overwrite" in err, err
    assert "Traceback" not in err and err.lower().count("error:") == 1, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert sorted(p.name for p in mine.rglob("*")) == ["Dockerfile"]
    assert (mine / "Dockerfile").read_text() == "FROM my-own-image\n"



# Commands that write fixed file names into --out, and a file of the user's each would have replaced (data prepare,
# augment and distill rewrite their own earlier output without --overwrite, so that they can be rerun: tests/data).
NON_EMPTY_OUT_CASES = [
    ("eval", lambda t: ["eval", "tiny-deepseek-llm", "--data", _data(t), "--limit", "1", "--max-new-tokens", "2"],
     "metrics.json"),
    ("compare", lambda t: ["compare", "--base", "tiny-deepseek-llm", "--tuned", "tiny-deepseek-llm", "--data", _data(t),
                           "--limit", "1", "--max-new-tokens", "2"], "report.md"),
    ("prepare", lambda t: ["data", "prepare", _data(t), "--tokenizer", "deepseek"], "notes.txt"),
    ("augment", lambda t: ["data", "augment", _data(t), "--set", "data.augment.synonym_copies=1"], "rejects.jsonl"),
    ("distill", lambda t: ["data", "distill", _data(t), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
     "removed.jsonl"),
]


@pytest.mark.parametrize("args, mine", [c[1:] for c in NON_EMPTY_OUT_CASES], ids=[c[0] for c in NON_EMPTY_OUT_CASES])
def test_a_non_empty_out_is_refused_before_torch_unless_overwrite(tmp_path: Path, args, mine: str) -> None:
    """A directory holding files is refused, naming it and --overwrite, before torch loads; its files stay as they
    were. With --overwrite the directory passes and the next check (the data, here missing) speaks."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / mine).write_text("the user's own\n")
    code, torch_loaded, err = _refuse([*args(tmp_path), "--out", str(out)], tmp_path)
    assert code == 2 and f"--out {out}: directory is not empty" in err and "--overwrite" in err, err
    assert "Traceback" not in err and err.lower().count("error:") == 1, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert sorted(p.name for p in out.rglob("*")) == [mine] and (out / mine).read_text() == "the user's own\n"
    missing = [str(tmp_path / "absent.jsonl") if arg == _data(tmp_path) else arg for arg in args(tmp_path)]
    code, _, err = _refuse([*missing, "--out", str(out), "--overwrite"], tmp_path)
    assert code == 2 and "absent.jsonl: no such file" in err and "not empty" not in err, err


PREPARE_CASES = [
    ("missing", lambda t: [str(t / "absent.jsonl")], "absent.jsonl: no such file or directory"),
    ("device", lambda t: ["/dev/null"], "/dev/null: exists but is not a regular file (a device, pipe or socket)"),
    ("dangling-link", lambda t: [str((t / "gone.jsonl").symlink_to(t / "moved.jsonl") or t / "gone.jsonl")],
     "gone.jsonl: a symbolic link to"),
    ("tokenizer", lambda t: [_data(t), "--tokenizer", "./no-tok"], "--tokenizer: model './no-tok': not a local"),
    ("model-directory", lambda t: [_model_dir(t)], MODEL_AS_DATA),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in PREPARE_CASES], ids=[c[0] for c in PREPARE_CASES])
def test_prepare_refuses_an_unreadable_input_without_creating_out(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(["data", "prepare", *args(tmp_path), "--out", str(tmp_path / "p")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "p").exists(), "a refused preparation must not leave its --out directory"


def test_deploy_refuses_a_lora_run_from_its_run_json_before_torch(tmp_path: Path, monkeypatch) -> None:
    """A LoRA run is refused without resolving its base model (a tiny preset would be built, a hub id
    downloaded) and without creating --out."""
    monkeypatch.setenv("DSFT_CACHE", str(tmp_path / "cache"))
    code, torch_loaded, err = _refuse(["deploy", "k8s", _lora_run(tmp_path), "--out", str(tmp_path / "k8s")], tmp_path)
    assert code == 2 and "a LoRA run; merge it first" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "k8s").exists()
    # One of its checkpoints, as the run (it was refused as a bare adapter, sent to 'export its run directory').
    checkpoint = _lora_checkpoint(tmp_path, tmp_path / "base")
    code, torch_loaded, err = _refuse(["deploy", "k8s", str(checkpoint), "--out", str(tmp_path / "k8s")], tmp_path)
    assert code == 2 and f"{checkpoint}: a LoRA run; merge it first with `dsft export {checkpoint} --format hf" in err, err
    assert not torch_loaded and not (tmp_path / "k8s").exists()


LAUNCH_CASES = [
    ("missing-config", lambda t: [str(t / "absent.yaml")], "absent.yaml: config file not found"),
    ("launcher", lambda t: [_config(t, data={"train": [_data(t)]}), "--launcher", "mpirun"],
     "--launcher mpirun: choose one of"),
    # "" fell back to 127.0.0.1 (or to MASTER_ADDR on several nodes) without a word.
    ("master-addr-empty", lambda t: [_config(t, data={"train": [_data(t)]}), "--master-addr", ""],
     "--master-addr '': empty; name the host of node 0"),
    # Written into the scripts as it came: the quote ended the shell string.
    ("master-addr-not-a-host", lambda t: [_config(t, data={"train": [_data(t)]}), "--nodes", "2", "--master-addr",
                                          'node0"; echo'], "--master-addr 'node0\"; echo': not a hostname or an IP"),
    # The scripts said the data was checked, and the job found a missing file after it was queued.
    ("missing-data-file", lambda t: [_config(t, data={"train": [_data(t)], "val": [str(t / "absent.jsonl")]})],
     "data.val: " + "{tmp}/absent.jsonl: no such file or directory"),
    ("nodes-beyond-int32-ranks", lambda t: [_config(t, data={"train": [_data(t)]}), "--nodes", str(10**12)],
     "--nodes 1000000000000 x --gpus-per-node 8 = 8,000,000,000,000 processes: torch.distributed numbers"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in LAUNCH_CASES], ids=[c[0] for c in LAUNCH_CASES])
def test_launch_refuses_without_creating_out(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(["launch", *args(tmp_path), "--out", str(tmp_path / "l")], tmp_path)
    expected = expected.replace("{tmp}", str(tmp_path))
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "l").exists(), "a refused launch must not leave its --out directory"


DATAGEN_CASES = [
    ("augment", lambda t: ["augment", str(t / "absent.jsonl"), "--set", "data.augment.synonym_copies=1"]),
    ("distill", lambda t: ["distill", str(t / "absent.jsonl"), "--base-url", "http://127.0.0.1:9", "--model", "m"]),
]


@pytest.mark.parametrize("args", [c[1] for c in DATAGEN_CASES], ids=[c[0] for c in DATAGEN_CASES])
def test_augment_and_distill_refuse_a_missing_input_without_creating_out(tmp_path: Path, args) -> None:
    code, torch_loaded, err = _refuse(["data", *args(tmp_path), "--out", str(tmp_path / "g")], tmp_path)
    assert code == 2 and "absent.jsonl: no such file or directory" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "g").exists(), "a refused command must not leave its --out directory"


ENDPOINT_CASES = [
    ("augment", lambda t: ["augment", _data(t), "--set", "data.augment.paraphrase_copies=1",
                           "--set", "data.augment.endpoint.base_url=http://127.0.0.1:9/v1",
                           "--set", "data.augment.endpoint.model=m"]),
    ("distill", lambda t: ["distill", _data(t), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]),
]


@pytest.mark.parametrize("args", [c[1] for c in ENDPOINT_CASES], ids=[c[0] for c in ENDPOINT_CASES])
def test_augment_and_distill_refuse_an_endpoint_that_does_not_answer_without_leaving_out(tmp_path: Path, args) -> None:
    """The endpoint is asked once --out exists (a rerun's cache lives there); the refusal left it empty behind."""
    code, torch_loaded, err = _refuse(["data", *args(tmp_path), "--out", str(tmp_path / "g")], tmp_path)
    assert code == 2 and "the endpoint does not answer" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "g").exists(), "a refused command must not leave its --out directory"


PREPARE_CONFIG_CASES = [
    ("no-data", lambda t: {}, "no training data: pass input files"),
    ("val-is-a-device", lambda t: {"data": {"train": [_data(t)], "val": ["/dev/null"]}},
     "data.val: /dev/null: exists but is not a regular file"),
]


@pytest.mark.parametrize("sections, expected", [c[1:] for c in PREPARE_CONFIG_CASES],
                         ids=[c[0] for c in PREPARE_CONFIG_CASES])
def test_prepare_refuses_the_configs_inputs_without_creating_out(tmp_path: Path, sections, expected: str) -> None:
    code, torch_loaded, err = _refuse(["data", "prepare", "--config", _config(tmp_path, **sections(tmp_path)),
                                       "--out", str(tmp_path / "p")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "p").exists(), "a refused preparation must not leave its --out directory"


PREPARE_INPUTS_WITH_CONFIG_CASES = [
    ("val-is-a-device", lambda t: {"val": ["/dev/null"]},
     "data.val: /dev/null: exists but is not a regular file (a device, pipe or socket)"),
    ("test-missing", lambda t: {"test": [str(t / "absent.jsonl")]}, "absent.jsonl: no such file or directory"),
    ("mix-matches-nothing", lambda t: {"mix": [{"path": str(t / "none-*.jsonl"), "ratio": 0.2}]},
     "none-*.jsonl: the glob matches no"),
]


@pytest.mark.parametrize("data, expected", [c[1:] for c in PREPARE_INPUTS_WITH_CONFIG_CASES],
                         ids=[c[0] for c in PREPARE_INPUTS_WITH_CONFIG_CASES])
def test_prepare_with_inputs_refuses_the_configs_other_inputs_without_creating_out(tmp_path: Path, data,
                                                                                   expected: str) -> None:
    """INPUT... replace data.train only: data.val, data.test and data.mix are still read, so they are checked
    (named by key) before --out is created."""
    sections = data(tmp_path)
    key = "data.mix.0.path" if "mix" in sections else f"data.{next(iter(sections))}"
    code, torch_loaded, err = _refuse(["data", "prepare", _data(tmp_path), "--config", _config(tmp_path, data=sections),
                                       "--tokenizer", "deepseek", "--out", str(tmp_path / "p")], tmp_path)
    assert code == 2 and f"{key}: " in err and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "p").exists(), "a refused preparation must not leave its --out directory"


CLEAN_AND_AUGMENT_FILE_CASES = [
    ("relevance-reference", lambda t: {"clean": {"relevance_references": [str(t / "refs.txt")], "relevance_min": 0.1}},
     "data.clean.relevance_references: {t}/refs.txt: no such file or directory"),
    ("cilin-is-a-directory", lambda t: {"augment": {"synonym_copies": 1, "synonyms_zh": str(t)}},
     "data.augment.synonyms_zh: {t}: is a directory, not a file (a Cilin synonym file was expected)"),
    ("template-table", lambda t: {"augment": {"templates": [{"table": str(t / "absent.csv"), "questions": ["{a}"],
                                                             "answer": "{b}"}]}},
     "data.augment.templates[0].table: {t}/absent.csv: no such file or directory"),
]


@pytest.mark.parametrize("command", ["train", "prepare"])
@pytest.mark.parametrize("data, expected", [c[1:] for c in CLEAN_AND_AUGMENT_FILE_CASES],
                         ids=[c[0] for c in CLEAN_AND_AUGMENT_FILE_CASES])
def test_files_the_cleaning_and_augmentation_read_are_checked_with_the_inputs(tmp_path: Path, command: str, data,
                                                                             expected: str) -> None:
    """A relevance reference, a synonym list or a template table that cannot be read is refused with the data
    inputs: before torch, a model or --out (it was found once the data was being prepared, in training after
    the model's tokenizer had loaded and the run directory had been written)."""
    config = _config(tmp_path, model={"name_or_path": "tiny-deepseek-v3"},
                     data={"train": [_data(tmp_path)], **data(tmp_path)})
    out = tmp_path / "out"
    args = (["train", config, "--out", str(out)] if command == "train" else
            ["data", "prepare", "--config", config, "--tokenizer", "deepseek", "--out", str(out)])
    code, torch_loaded, err = _refuse(args, tmp_path)
    assert code == 2 and expected.format(t=tmp_path) in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not out.exists(), "a refused command must not leave its --out directory"


UI_CASES = [
    ("ui-missing-runs", lambda t: ["--runs", str(t / "nope")], "no such directory"),
    ("ui-runs-is-a-file", lambda t: ["--runs", _data(t)], "is not a directory"),
    ("ui-open-bind-without-key", lambda t: ["--runs", str(t), "--host", "0.0.0.0"], "off loopback it needs --api-key"),
    ("ui-port-out-of-range", lambda t: ["--runs", str(t), "--port", "70000"], "--port: must be 1..65535"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in UI_CASES], ids=[c[0] for c in UI_CASES])
def test_ui_refuses_before_torch(tmp_path: Path, args, expected: str) -> None:
    code, torch_loaded, err = _refuse(["ui", *args(tmp_path)], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def test_ui_refuses_a_port_in_use_before_torch(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, torch_loaded, err = _refuse(["ui", "--runs", str(tmp_path), "--port", str(port)], tmp_path)
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


@pytest.mark.parametrize(("host", "expected"), [
    ("no-such-host.invalid", "--host no-such-host.invalid: cannot listen on it (Name or service not known)"),
    ("192.0.2.1", "--host 192.0.2.1: cannot listen on it (Cannot assign requested address)"),
    (" ", "--host ' ': empty"),
    ("", "--host '': empty"),
])
def test_a_host_that_cannot_be_listened_on_is_named(tmp_path: Path, host: str, expected: str) -> None:
    """An unknown host name or an address of another machine was blamed on the port ('another server may be running
    there, pick another with --port'); an empty --host (an unset variable) listened on every interface."""
    code, torch_loaded, err = _refuse(["ui", "--runs", str(tmp_path), "--host", host, "--api-key", "k", "--port",
                                       "8799"], tmp_path)
    assert code == 2 and err.startswith(f"error: {expected}") and "Traceback" not in err, err
    assert "--port" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    if not host.strip():  # without a key: said empty too, not that it is off loopback
        code, _, err = _refuse(["ui", "--runs", str(tmp_path), "--host", host, "--port", "8799"], tmp_path)
        assert code == 2 and err.startswith(f"error: {expected}"), err


def _messages(tmp: Path) -> str:
    path = tmp / "m.json"
    path.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]))
    return str(path)


TEMPLATE_FLAG_CASES = [
    ("data-inspect", lambda t: ["data", "inspect", _data(t), "--template", "deepseek-r9"]),
    ("template-render", lambda t: ["template", "render", "--template", "deepseek-r9", "--messages", _messages(t),
                                   "--mode", "train"]),
]


@pytest.mark.parametrize("args", [c[1] for c in TEMPLATE_FLAG_CASES], ids=[c[0] for c in TEMPLATE_FLAG_CASES])
def test_an_unknown_template_flag_is_refused_before_a_tokenizer_loads(tmp_path: Path, args) -> None:
    code, torch_loaded, err = _refuse(args(tmp_path), tmp_path)
    assert code == 2 and "--template: unknown template 'deepseek-r9'; choose one of" in err, err
    assert "Traceback" not in err and "template.name" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


GGUF_LABEL_CASES = [
    # (id, command, what the message starts with after "error: ")
    ("train-config-key", lambda t: ["train", _config(t, model={"name_or_path": str(t / "m.gguf")},
                                                     data={"train": [_data(t)]}), "--out", str(t / "o")],
     "model.name_or_path: {t}/m.gguf: no such file or directory"),
    ("prepare-config-key", lambda t: ["data", "prepare", _data(t), "--out", str(t / "o"),
                                      "--set", f"model.name_or_path={t / 'm.gguf'}"],
     "model.name_or_path: {t}/m.gguf: no such file or directory"),
    ("prepare-tokenizer-flag", lambda t: ["data", "prepare", _data(t), "--out", str(t / "o"),
                                          "--tokenizer", "ollama:no-such-model"],
     "--tokenizer: ollama:no-such-model: not in the Ollama store"),
    ("eval-argument", lambda t: ["eval", str(t / "m.gguf"), "--data", _data(t), "--out", str(t / "o")],
     "{t}/m.gguf: no such file or directory"),
    ("import-argument", lambda t: ["models", "import", str(t / "m.gguf"), "--out", str(t / "o")],
     "{t}/m.gguf: no such file or directory"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in GGUF_LABEL_CASES], ids=[c[0] for c in GGUF_LABEL_CASES])
def test_a_missing_gguf_or_ollama_model_is_named_by_what_the_user_typed(tmp_path: Path, monkeypatch, args,
                                                                        expected: str) -> None:
    """The message names the config key, the flag or nothing (a positional argument), once: it said
    `model.name_or_path: model.name_or_path: ...`, `--tokenizer: model.name_or_path: ...`, and named the key for
    `dsft eval X.gguf` and `dsft models import X.gguf`, where the user typed no key."""
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    code, torch_loaded, err = _refuse(args(tmp_path), tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("error: " + expected.format(t=tmp_path)), err
    assert err.count("model.name_or_path") == expected.count("model.name_or_path"), err
    assert not torch_loaded, "the refusal came after torch was imported"


def test_convert_refuses_a_missing_source_before_torch(tmp_path: Path) -> None:
    code, torch_loaded, err = _refuse(["convert", "fp8-to-bf16", str(tmp_path / "nope"), str(tmp_path / "out")],
                                      tmp_path)
    assert code == 2 and f"{tmp_path / 'nope'}: not a directory" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize(("tail", "expected"), [
    ([], "dsft convert fp8-to-bf16: give the output directory, as DST or --out DIR"),
    (["o1", "--out", "o2"], "dsft convert fp8-to-bf16: the output directory is given twice (DST o1, --out o2)"),
])
def test_convert_names_its_output_directory_problem_before_torch(tmp_path: Path, tail: list[str],
                                                                 expected: str) -> None:
    """Every other command that writes a directory takes --out; convert took DST only ('No such option: --out')."""
    (tmp_path / "src").mkdir()
    code, torch_loaded, err = _refuse(["convert", "fp8-to-bf16", "src", *tail], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


RANDOM_MODEL_CASES = [
    ("no-offline-tokenizer", ["deepseek-v3"], "no offline tokenizer for real-model preset 'deepseek-v3'"),
    ("dtype", ["r1-distill-qwen-1.5b", "--dtype", "fp8"], "--dtype fp8: choose one of"),
    ("set-field", ["r1-distill-qwen-1.5b", "--set", "num_layerz=2"], "--set num_layerz: not a field"),
    # Values transformers' config class refused with a traceback (StrictDataclassFieldValidationError), after torch.
    ("set-full-width", ["r1-distill-qwen-1.5b", "--set", "num_hidden_layers=８"],
     "--set num_hidden_layers='８': must be a whole number, as the preset's 28 is"),
    ("set-huge", ["r1-distill-qwen-1.5b", "--set", "num_hidden_layers=1e999"], "must be a whole number"),
    ("set-empty", ["r1-distill-qwen-1.5b", "--set", "num_hidden_layers="],
     "--set num_hidden_layers=None: must be a whole number"),
    ("set-bool", ["r1-distill-qwen-1.5b", "--set", "vocab_size=true"], "--set vocab_size=True: must be a whole"),
    ("set-nan", ["r1-distill-qwen-1.5b", "--set", "rms_norm_eps=.nan"], "--set rms_norm_eps=nan: must be a finite"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in RANDOM_MODEL_CASES], ids=[c[0] for c in RANDOM_MODEL_CASES])
def test_models_random_refuses_before_torch(tmp_path: Path, args: list[str], expected: str) -> None:
    code, torch_loaded, err = _refuse(["models", "random", *args, "--out", str(tmp_path / "m")], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "m").exists()


def test_models_random_names_a_set_its_config_class_refuses_and_leaves_no_out(tmp_path: Path) -> None:
    """A negative layer count ended in transformers' traceback (exit 1) and left an empty --out behind."""
    code, _, err = _refuse(["models", "random", "r1-distill-qwen-1.5b", "--set", "num_hidden_layers=-1", "--out",
                            str(tmp_path / "m")], tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("error: --set num_hidden_layers=-1: the r1-distill-qwen-1.5b config refuses it: "), err
    assert not (tmp_path / "m").exists()


BENCH_CASES = [
    ("lengths", ["--lengths", "long"], "bench --lengths: expected one of reasoning, short, got 'long'"),
    ("seq-len", ["--seq-len", "0"], "bench --seq-len 0: must be >= 64"),
    ("steps", ["--steps", "0"], "bench --steps 0: must be >= 1"),
    ("micro-batch-size", ["--micro-batch-size", "0"], "bench --micro-batch-size 0: must be >= 1"),
    ("examples-per-step", ["--examples-per-step", "0"], "bench --examples-per-step 0: must be >= 1"),
    ("compare", ["--compare", "trl,axolotl"], "bench --compare: unknown system(s) axolotl; choose from"),
    ("dsft-option", ["--dsft-option", "unknown"], "bench --dsft-option: unknown option(s) unknown; choose from"),
    ("loss-dtype", ["--loss-dtype", "fp8"], "bench --loss-dtype: expected one of auto, fp32, bf16, got 'fp8'"),
    ("precision", ["--precision", "fp16"], "bench --precision: expected one of auto, fp32, bf16, got 'fp16'"),
    ("two-at-once", ["--steps", "0", "--seq-len", "3"], "bench --steps 0: must be >= 1; bench --seq-len 3: must be"),
    # Each generated (steps + 2) x examples-per-step x micro-batch-size x 1.25 conversations in memory after torch
    # had loaded: until memory ran out, or (10**400) a float overflow's traceback.
    ("steps-beyond-the-conversations", ["--steps", str(10**9)], "bench --steps 1000000000 --examples-per-step 8 "
     "--micro-batch-size 1: 10,000,000,020 synthetic conversations ((steps + 2) x examples-per-step x "
     "micro-batch-size x 1.25), more than the 50,000 a benchmark holds in memory; set --steps to at most 4,998"),
    ("examples-per-step-beyond-the-conversations", ["--examples-per-step", str(10**400)],
     "more than the 50,000 a benchmark holds in memory; set --examples-per-step to at most 4,000"),
    ("micro-batch-size-beyond-the-conversations", ["--micro-batch-size", "10000"], "bench --steps 8 "
     "--examples-per-step 8 --micro-batch-size 10000: 1,000,000 synthetic conversations ((steps + 2) x "
     "examples-per-step x micro-batch-size x 1.25), more than the 50,000 a benchmark holds in memory; set "
     "--micro-batch-size to at most 500"),
    # A length scale that is no number of times ended in a traceback rounding the lengths (nan, inf, 1e999) after
    # torch had loaded; 0 and below ran the benchmark on one-token conversations.
    # str.isdigit() holds for any script's digits: a full-width ８ was taken for 8, where typer refuses it.
    ("loss-chunk-size-full-width", ["--loss-chunk-size", "８"],
     "bench --loss-chunk-size: expected a positive integer or auto, got '８'"),
    ("length-scale-nan", ["--length-scale", "nan"], "bench --length-scale nan: must be a finite number > 0"),
    ("length-scale-inf", ["--length-scale", "1e999"], "bench --length-scale inf: must be a finite number > 0"),
    ("length-scale-zero", ["--length-scale", "0"], "bench --length-scale 0.0: must be a finite number > 0"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in BENCH_CASES], ids=[c[0] for c in BENCH_CASES])
def test_bench_train_refuses_bad_flags_before_torch(tmp_path: Path, args: list[str], expected: str) -> None:
    """They were checked by the runner, after torch had been imported (six seconds on a quiet machine)."""
    code, torch_loaded, err = _refuse(["bench", "train", "--out", str(tmp_path / "b.json"), *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"
    assert not (tmp_path / "b.json").exists()


PLAN_CASES = [
    # A plan for 10**12 nodes "fit"; for 10**400 a full fine-tune's host-RAM sizing overflowed a float (traceback).
    ("nodes", ["--nodes", str(10**12)], "--nodes 1000000000000 x --gpus-per-node 1 = 1,000,000,000,000 processes: "
     "torch.distributed numbers a job's processes with 32-bit integers, so at most 2,147,483,647: set --nodes to at most"),
    ("nodes-overflowing-a-float", ["--method", "full", "--nodes", str(10**400)], "processes: torch.distributed"),
    ("gpus-per-node", ["--gpus-per-node", str(2**31)], "set --gpus-per-node to at most 2,147,483,647"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_plan_refuses_a_job_beyond_torch_distributed_before_torch(tmp_path: Path, args: list[str],
                                                                  expected: str) -> None:
    code, torch_loaded, err = _refuse(["plan", "--model", "tiny-deepseek-v3", *args], tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def _broken_model_dir(tmp: Path) -> str:
    """A model directory whose config.json is no JSON."""
    model = tmp / "broken-model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{model_type: llama")
    return str(model)


MODEL_READ_CASES = [
    ("plan-missing-dir", lambda t: ["plan", "--model", str(t / "no-such-model") + "/"],
     "no-such-model/: no such model directory or config.json"),
    ("plan-broken-config", lambda t: ["plan", "--model", _broken_model_dir(t)],
     "broken-model/config.json: invalid JSON at line 1 column 2"),
    ("targets-unknown-hub-id-offline", lambda t: ["models", "targets", "nosuch-org/nosuch-model"],
     "model 'nosuch-org/nosuch-model': no local directory nosuch-org/nosuch-model"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in MODEL_READ_CASES], ids=[c[0] for c in MODEL_READ_CASES])
def test_a_model_that_cannot_be_read_is_refused_before_torch(tmp_path: Path, monkeypatch, args, expected: str) -> None:
    """dsft plan imported torch (dsft.training.loss) before reading --model's config.json, and dsft models targets
    imported it (the skeleton) before looking the hub id up: each refusal came seconds late."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache: the id is nowhere here
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("DSFT_CACHE", raising=False)
    code, torch_loaded, err = _refuse(args(tmp_path), tmp_path)
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


def test_augment_refuses_more_copies_than_the_bound_before_torch_and_out(tmp_path: Path) -> None:
    """data.augment.synonym_copies=10**12 drew rewrites for ever (1,001 ran, and is refused as well)."""
    code, torch_loaded, err = _refuse(["data", "augment", _data(tmp_path), "--set", "data.augment.synonym_copies=1001",
                                       "--out", str(tmp_path / "g")], tmp_path)
    assert code == 2 and "data.augment.synonym_copies: must be at most 1,000 copies" in err, err
    assert "Traceback" not in err and not torch_loaded and not (tmp_path / "g").exists(), err


@pytest.mark.parametrize("command", [["eval", "tiny-deepseek-v3"], ["compare", "--tuned", "tiny-deepseek-v3",
                                                                   "--base", "tiny-deepseek-v3"]])
def test_a_wrong_input_beside_device_is_named_before_torch_is_imported(tmp_path: Path, command: list[str]) -> None:
    """--device was checked first, and checking it imports torch: a missing data file given with --device cuda:999
    (or --device banana) waited for torch and was then refused for the device alone."""
    code, torch_loaded, err = _refuse([*command, "--data", str(tmp_path / "absent.jsonl"), "--out",
                                       str(tmp_path / "o"), "--device", "cuda:999"], tmp_path)
    assert code == 2 and "absent.jsonl: no such file or directory" in err and "Traceback" not in err, err
    assert not torch_loaded, "the refusal came after torch was imported"


@pytest.mark.parametrize("args, expected", [
    (["data", "inspect", ""], "SOURCE '': an empty path names nothing; give a path ('.' for the current directory)"),
    (["template", "render", "--template", "deepseek-r1", "--messages", ""],
     "--messages '': an empty path names nothing; give a path ('.' for the current directory)"),
], ids=["data-inspect", "template-render"])
def test_an_empty_path_is_refused_naming_its_argument_not_read_as_the_current_directory(
        tmp_path: Path, args: list[str], expected: str) -> None:
    """A Path argument turns '' (an unset shell variable) into '.': `dsft data inspect ""` rendered the first data
    file in the current directory, and `template render --messages ""` said 'cannot read .: Is a directory'."""
    _data(tmp_path)  # what '.' would have rendered
    code, torch_loaded, err = _refuse(args, tmp_path)
    assert (code, torch_loaded) == (2, False), err
    assert expected in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", [["data", "prepare", "~/d.jsonl", "--out", "out"], ["metrics", "-p", "~/d.jsonl"]])
def test_a_quoted_tilde_is_said_not_to_be_expanded(tmp_path: Path, monkeypatch, command: list[str]) -> None:
    """'~/d.jsonl' quoted (or in a config file) was said to be missing, with 'relative paths are read from the
    current directory', while the file was there in the home directory."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "d.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    monkeypatch.setenv("HOME", str(home))
    code, torch_loaded, err = _refuse(command, tmp_path)
    assert code == 2 and "Traceback" not in err, err
    assert ("~/d.jsonl: no such file or directory; '~' is expanded by a shell only where it is unquoted, not here: "
            f"write {home / 'd.jsonl'}") in err, err
    assert "current directory" not in err and not (tmp_path / "out").exists(), err
    assert not torch_loaded, "the refusal came after torch was imported"
