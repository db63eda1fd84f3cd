"""`dsft export` command line: help, and user errors as one message with exit code 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest



def test_help_lists_formats_and_options(run_cli) -> None:
    code, text = run_cli(["export", "--help"])
    assert code == 0
    for word in ("--format", "--out", "--dtype", "--no-verify", "--tolerance", "gguf", "ollama", "adapter"):
        assert word in text


def test_missing_run_directory(tmp_path, run_cli) -> None:
    code, text = run_cli(["export", str(tmp_path / "no-such-run"), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "no-such-run" in text and "Traceback" not in text


def test_unknown_format(tmp_path, run_cli) -> None:
    code, text = run_cli(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "o")])
    assert code == 2 and "--format onnx" in text


def test_run_json_without_final_directory(tmp_path, run_cli) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"template": "deepseek-r1", "base_model": "x", "method": "lora"}))
    code, text = run_cli(["export", str(tmp_path), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2 and "no final/ directory" in text
    # a finished run whose final/ was removed (said 'the run has not finished (status: finished)')
    (tmp_path / "run.json").write_text(json.dumps({"template": "deepseek-r1", "base_model": "x", "method": "lora",
                                                   "status": "finished"}))
    code, text = run_cli(["export", str(tmp_path), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2 and "the run finished, but it was removed (status: finished)" in text, text


def test_an_unfinished_run_says_how_to_continue_or_which_checkpoint_to_use(tmp_path, run_cli) -> None:
    """An interrupted LoRA run was sent to 'use a checkpoint under RUN/checkpoints as a model directory', and the
    checkpoint (a bare adapter) back to 'export its run directory': a circle. It now gives the command that
    continues the run, and its newest checkpoint, which export takes as it takes the run (LoRA or full)."""
    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    for name in ("adapter_config.json", "trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (run / "checkpoints" / "checkpoint-2" / name).write_text("{}")
    info = {"template": "deepseek-r1", "base_model": "x", "method": "lora", "status": "interrupted"}
    (run / "run.json").write_text(json.dumps(info))
    code, text = run_cli(["export", str(run), "--format", "hf", "--out", str(tmp_path / "o")])
    text = " ".join(text.split())
    assert code == 2 and "the run has not finished (status: interrupted)" in text, text
    assert f"continue it with `dsft train {run / 'config.yaml'} --out {run} --resume auto`" in text, text
    assert f"or use one of its checkpoints, e.g. {run / 'checkpoints' / 'checkpoint-2'}" in text, text
    (run / "run.json").write_text(json.dumps(info | {"method": "full"}))
    code, text = run_cli(["export", str(run), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2 and f"or use one of its checkpoints, e.g. {run / 'checkpoints' / 'checkpoint-2'}" in " ".join(
        text.split()), text


@pytest.mark.parametrize(("content", "message"), [
    (json.dumps({"template": "deepseek-r1", "base_model": "x"}), "run.json: missing method"),
    ("{not json", "run.json: unreadable"),
])
def test_incomplete_or_broken_run_json(tmp_path, run_cli, content: str, message: str) -> None:
    (tmp_path / "run.json").write_text(content)
    code, text = run_cli(["export", str(tmp_path), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2 and message in text and "Traceback" not in text


def test_gguf_of_unsupported_architecture(tiny_model_dir, tmp_path, run_cli) -> None:
    """A model type without a GGUF writer is refused before any conversion, naming the type."""
    model = tmp_path / "gemma-like"
    model.mkdir()
    for path in tiny_model_dir("tiny-r1-distill-qwen").iterdir():
        if path.suffix == ".json":  # config and tokenizer files; the weights are never reached
            shutil.copy2(path, model / path.name)
    (model / "model.safetensors").write_bytes(b"")  # present, as the directory check asks; never read
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "gemma"
    (model / "config.json").write_text(json.dumps(config))
    code, text = run_cli(["export", str(model), "--format", "gguf", "--out", str(tmp_path / "o")])
    assert code == 2 and "model_type 'gemma' is not supported" in text


@pytest.mark.parametrize(("fmt", "dtype", "message"), [
    ("adapter", "auto", "has no adapter"),
    ("hf", "q8_0", "q8_0 applies to --format gguf/ollama only"),
])
def test_format_dtype_combinations_refused(tiny_model_dir, tmp_path, run_cli, fmt, dtype, message) -> None:
    model: Path = tiny_model_dir("tiny-deepseek-llm")
    code, text = run_cli(["export", str(model), "--format", fmt, "--dtype", dtype, "--out", str(tmp_path / "o")])
    assert code == 2 and message in text
    # the refusal is all that is said: a full model's adapter export began 'exporting ... as adapter to o' first
    assert "exporting" not in text and len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "o").exists()


def test_a_run_that_stopped_before_it_trained_is_named_so(tmp_path, run_cli) -> None:
    """dsft train whose data left nothing to train on leaves config.yaml and data/ (with the report) in --out; export,
    serve, eval and chat called it 'neither a run directory (run.json) nor a model directory (config.json)'."""
    run = tmp_path / "runs" / "r"
    (run / "data").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  name_or_path: tiny-deepseek-llm\n")
    (run / "data" / "data_report.json").write_text("{}")
    code, text = run_cli(["export", str(run), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 2 and " ".join(text.split()) == (
        f"error: {run}: a run that stopped before it trained (its config.yaml and data/, no run.json or weights; why: "
        f"{run / 'data' / 'data_report.json'}); fix that and rerun dsft train with --out {run}"), text


def test_non_empty_out_directory_refused(tiny_model_dir, tmp_path, run_cli) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("x")
    code, text = run_cli(["export", str(tiny_model_dir("tiny-deepseek-llm")), "--format", "hf",
                          "--out", str(tmp_path / "o")])
    assert code == 2 and "not empty" in text


def test_export_section_of_config_supplies_the_defaults(tiny_model_dir, tmp_path, run_cli) -> None:
    config = tmp_path / "export.yaml"
    config.write_text("export:\n  format: hf\n  dtype: float16\n  verify: false\n  max_shard_size: 10MB\n")
    code, text = run_cli(["export", str(tiny_model_dir("tiny-deepseek-llm")), "--config", str(config),
                          "--out", str(tmp_path / "o")])
    assert code == 0, text
    assert "not verified" in text  # export.verify: false
    assert json.loads((tmp_path / "o" / "config.json").read_text())["dtype"] == "float16"
    # The command line wins over the section.
    code, text = run_cli(["export", str(tiny_model_dir("tiny-deepseek-llm")), "--config", str(config),
                          "--dtype", "float32", "--out", str(tmp_path / "o32")])
    assert code == 0, text
    assert json.loads((tmp_path / "o32" / "config.json").read_text())["dtype"] == "float32"


def test_a_run_directory_exports_with_its_own_export_section(tmp_path) -> None:
    from dsft.cli.export import export_defaults

    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "config.yaml").write_text("export:\n  format: gguf\n  dtype: q8_0\n")
    defaults = export_defaults(str(tmp_path), None)
    assert (defaults.format, defaults.dtype, defaults.verify, defaults.tolerance) == ("gguf", "q8_0", True, None)
    assert export_defaults(str(tmp_path / "elsewhere"), None).format == "hf"  # not a run: the schema's defaults


def test_bad_export_section_is_named(tiny_model_dir, tmp_path, run_cli) -> None:
    config = tmp_path / "export.yaml"
    config.write_text("export:\n  format: onnx\n")
    code, text = run_cli(["export", str(tiny_model_dir("tiny-deepseek-llm")), "--config", str(config),
                          "--out", str(tmp_path / "o")])
    assert code == 2 and "export.format" in text and "Traceback" not in text


def test_overwrite_replaces_the_earlier_export_whole(tiny_model_dir, tmp_path, run_cli) -> None:
    """An export of one model in one file, then --overwrite with another, sharded: no earlier file is left
    for transformers to load instead (a stale model.safetensors beside the new shards was loaded and the
    export's own check failed with a traceback); the user's own file stays."""
    from safetensors import safe_open

    out = tmp_path / "o"
    first = ["export", str(tiny_model_dir("tiny-r1-distill-qwen")), "--format", "hf", "--out", str(out)]
    assert run_cli(first)[0] == 0 and (out / "model.safetensors").is_file()
    (out / "notes.txt").write_text("mine")
    code, text = run_cli(["export", str(tiny_model_dir("tiny-deepseek-v3")), "--format", "hf", "--out", str(out),
                          "--overwrite", "--max-shard-size", "20MB"])
    assert code == 0, text
    assert not (out / "model.safetensors").exists() and len(list(out.glob("model-*.safetensors"))) > 1
    assert (out / "notes.txt").read_text() == "mine" and not (out / ".dsft-previous-export").exists()
    with safe_open(str(sorted(out.glob("model-*.safetensors"))[0]), "pt") as handle:
        assert not any("q_proj" in key for key in handle.keys())  # DeepSeek-V3's MLA, not the Qwen2 export


def test_a_failed_overwrite_puts_the_earlier_export_back(tiny_model_dir, tmp_path, run_cli, monkeypatch) -> None:
    from dsft.export import api

    out = tmp_path / "o"
    assert run_cli(["export", str(tiny_model_dir("tiny-r1-distill-qwen")), "--format", "hf", "--out", str(out)])[0] == 0
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}

    def write_then_fail(source, fmt, out_dir, *args):  # noqa: ANN001, ANN002, ANN202
        (out_dir / "model-00001-of-00002.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_dispatch", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        api.export(tiny_model_dir("tiny-deepseek-v3"), "hf", out, overwrite=True, echo=lambda _: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def test_a_format_on_the_command_line_does_not_take_a_config_dtype_it_cannot_store(tiny_model_dir, tmp_path,
                                                                                  run_cli) -> None:
    """Guide 000's run says `export: {format: ollama, dtype: q8_0}`; `dsft export RUN --format hf` was refused with
    '--dtype q8_0: ...', an option the user never typed. The section's dtype goes with its format: another
    --format takes it where that format can store it, else auto."""
    config = tmp_path / "export.yaml"
    config.write_text("export:\n  format: ollama\n  dtype: q8_0\n  verify: false\n")
    model = str(tiny_model_dir("tiny-deepseek-llm"))
    code, text = run_cli(["export", model, "--config", str(config), "--format", "hf", "--out", str(tmp_path / "o")])
    assert code == 0, text
    assert (tmp_path / "o" / "model.safetensors").is_file()
    # Both from the section: the section's key is named, not an option that was not given.
    config.write_text("export:\n  format: hf\n  dtype: q8_0\n")
    code, text = run_cli(["export", model, "--config", str(config), "--out", str(tmp_path / "o2")])
    assert code == 2 and text.startswith("error: export.dtype q8_0: Hugging Face exports") and "--dtype" not in \
        text.split("only")[0], text


def test_an_export_into_the_run_directory_itself_is_refused(tmp_path, run_cli) -> None:
    """`--out RUN --overwrite` wrote config.json, model.safetensors and the tokenizer beside run.json: the run
    directory then reads as a model directory too, and an hf export of a full run sits beside its checkpoints."""
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"template": "deepseek-r1", "base_model": "x", "method": "lora"}))
    code, text = run_cli(["export", str(run), "--format", "hf", "--out", str(run), "--overwrite"])
    assert code == 2 and f"--out {run}: the run directory itself" in text, text
    assert sorted(p.name for p in run.iterdir()) == ["final", "run.json"]


@pytest.mark.parametrize(("fmt", "name", "message"), [
    ("ollama", "医疗模型", "--name 医疗模型: not an Ollama model name"),
    ("ollama", "my model", "--name my model: not an Ollama model name"),
    ("hf", "medical-qa", "--name medical-qa: the Ollama model name applies to --format ollama only"),
])
def test_a_name_ollama_cannot_take_or_a_format_without_one_is_refused(tiny_model_dir, tmp_path, run_cli, fmt, name,
                                                                       message) -> None:
    """--name was rewritten without a word (a Chinese name became 'dsft-model', 'medical-qa:v1' lost its tag as
    'medical-qa-v1') and, with a format other than ollama, ignored without a word."""
    model: Path = tiny_model_dir("tiny-deepseek-llm")
    code, text = run_cli(["export", str(model), "--format", fmt, "--name", name, "--out", str(tmp_path / "o")])
    assert code == 2 and message in text and "Traceback" not in text, text
    assert not (tmp_path / "o").exists()


def test_an_ollama_name_given_is_kept_as_given() -> None:
    from dsft.export.ollama import ollama_name_for

    assert ollama_name_for("medical-qa:v1", "run") == "medical-qa:v1"  # a tag is Ollama's own syntax
    assert ollama_name_for("team/Medical_QA.v2", "run") == "team/Medical_QA.v2"
    assert ollama_name_for(None, "My Run (R1)") == "my-run-r1"  # made from the directory name when not given


def test_an_ollama_name_made_from_a_long_directory_name_is_one_ollama_takes() -> None:
    """Made from a run directory's name of any length: it was as long as the name, past the 80 characters
    `ollama create` takes in a model name, and the README's `ollama create NAME` then failed."""
    from dsft.export.ollama import ollama_name_for
    from dsft.models.ollama_tags import is_ollama_name

    name = ollama_name_for(None, "lora-" + "r1-distill-qwen-32b-medical-qa-" * 4)
    assert is_ollama_name(name) and len(name) <= 80, name  # a model name, Ollama's longest
    assert name.startswith("lora-r1-distill-qwen-32b-medical-qa-"), name
