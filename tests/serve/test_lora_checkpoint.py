"""A LoRA run's intermediate checkpoint (``RUN/checkpoints/checkpoint-N``: the adapter and trainer state only) is
evaluated, exported, served and chatted with as the run itself is: the run's base model and chat template, the
checkpoint's adapter.

One real training run of two steps saving at each feeds every test: checkpoint-1's adapter differs from final/'s,
so a command that quietly took final/ (or the base alone) fails here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from jsonl_files import write_reservoir_chats
from live_server import run_live
from safetensors.torch import load_file

from dsft.config import load_config
from dsft.training.rundir import RunDir

pytestmark = pytest.mark.slow  # one real training run (about 15 s on a shared CPU) feeds every test here

PRESET = "tiny-r1-distill-qwen"


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run, data)``: a LoRA run of two steps with a checkpoint at each."""
    from dsft.training.run import run_training

    root = tmp_path_factory.mktemp("checkpoint-run")
    data = write_reservoir_chats(root / "data.jsonl")
    cfg = load_config(None, [f"model.name_or_path={tiny_model_dir(PRESET)}", f"data.train=[{data}]",
                             "data.val_ratio=0", "train.max_steps=2", "train.save_steps=1",
                             "train.micro_batch_size=2", "train.max_seq_len=64", "train.lr=1e-2", "lora.r=4",
                             "train.warmup_ratio=0", "serve.served_model_name=reservoirs"])
    run_training(cfg, root / "run", progress=False)
    return root / "run", data


def _checkpoint(run: Path) -> Path:
    checkpoint = run / "checkpoints" / "checkpoint-1"
    assert not (checkpoint / "config.json").exists() and (checkpoint / "adapter_config.json").is_file()
    return checkpoint


def _lora_tensors(directory: Path) -> dict:
    return load_file(str(directory / "adapter_model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_the_run_is_found_from_its_checkpoint_and_its_final_directory(lora_run, tiny_model_dir) -> None:
    from dsft.export.source import resolve_source

    run, _ = lora_run
    checkpoint = _checkpoint(run)
    assert not _same(_lora_tensors(checkpoint), _lora_tensors(run / "final")), "the steps changed nothing"
    for path, weights in ((run, run / "final"), (run / "final", run / "final"), (checkpoint, checkpoint)):
        source = resolve_source(path)
        assert (source.method, source.template, source.adapter_dir) == ("lora", "deepseek-r1", weights)
        assert source.model_dir == tiny_model_dir(PRESET) and source.run_dir.resolve() == run.resolve()
    assert RunDir.find(run / "checkpoints") is None and RunDir.find(tiny_model_dir(PRESET)) is None


def test_eval_of_a_checkpoint_measures_its_adapter(lora_run, tmp_path, run_cli) -> None:
    from peft import get_peft_model_state_dict

    from dsft.eval.target import load_eval_target

    run, data = lora_run
    checkpoint = _checkpoint(run)
    code, out, err = run_cli(["eval", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "eval"),
                              "--limit", "2", "--max-new-tokens", "3"])
    assert code == 0, out + err
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["evaluated"]
    assert evaluated["model"] == str(checkpoint) and evaluated["adapter"] is True
    assert evaluated["template"] == "deepseek-r1"
    target = load_eval_target(checkpoint, device="cpu", dtype="float32")
    assert _same(get_peft_model_state_dict(target.model), _lora_tensors(checkpoint))


def test_compare_of_a_checkpoint_takes_the_run_base_and_curves(lora_run, tmp_path, run_cli, tiny_model_dir) -> None:
    """`dsft compare --tuned CHECKPOINT` said '--base is required when --tuned is not a dsft run directory'."""
    run, data = lora_run
    checkpoint = _checkpoint(run)
    code, out, err = run_cli(["compare", "--tuned", str(checkpoint), "--data", str(data), "--out",
                              str(tmp_path / "cmp"), "--limit", "1", "--max-new-tokens", "2"])
    assert code == 0, out + err
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert result["base_name"] == str(tiny_model_dir(PRESET)) and result["tuned_name"] == str(checkpoint)
    assert result["loss"] and result["loss_png"] == "loss.png"


def test_export_of_a_checkpoint_writes_its_adapter(lora_run, tmp_path, run_cli) -> None:
    run, _ = lora_run
    checkpoint = _checkpoint(run)
    code, out, err = run_cli(["export", str(checkpoint), "--format", "adapter", "--out", str(tmp_path / "a")])
    assert code == 0, out + err
    assert _same(_lora_tensors(tmp_path / "a"), _lora_tensors(checkpoint))
    written = json.loads((tmp_path / "a" / "export.json").read_text())
    assert written["weights"] == str(checkpoint) and written["template"] == "deepseek-r1"


def test_serve_of_a_checkpoint_answers_with_the_run_settings(lora_run) -> None:
    from dsft.serve.server import build_engine
    from dsft.serve.settings import ServeSettings, serve_defaults

    run, _ = lora_run
    checkpoint = _checkpoint(run)
    assert serve_defaults(checkpoint).served_model_name == "reservoirs"  # the run's config.yaml
    settings = ServeSettings(served_model_name="reservoirs")
    engine = build_engine(str(checkpoint), [], settings)
    with run_live(engine, settings) as server:
        answer = server.client().chat.completions.create(
            model="reservoirs", messages=[{"role": "user", "content": "Which reservoir is R1?"}], max_tokens=4,
            temperature=0)
    assert answer.usage.completion_tokens > 0


def test_chat_with_a_checkpoint_loads_its_adapter(lora_run, capsys, monkeypatch) -> None:
    import dsft.serve.serving_model as serving_model
    from dsft.cli.app import main

    run, _ = lora_run
    checkpoint = _checkpoint(run)
    loaded = []
    real = serving_model.load_serving_model

    def recording(source, **options):
        loaded.append(source)
        return real(source, **options)

    monkeypatch.setattr(serving_model, "load_serving_model", recording)
    monkeypatch.setattr("sys.stdin", io.StringIO("Which reservoir is R1?\n"))
    main(["chat", str(checkpoint), "--max-tokens", "4", "--temperature", "0"])
    assert capsys.readouterr().out.strip()
    assert [(s.adapter_dir, s.template) for s in loaded] == [(checkpoint, "deepseek-r1")]
