"""What a run's weights load as (the base model, tokenizer and adapter directories) is one answer, RunDir's: dsft eval
and dsft export / serve / chat / the dashboard load the same directories for the same run, or refuse it alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dsft.eval.target as target
from dsft.errors import DsftError
from dsft.eval.target import load_eval_target
from dsft.export.source import resolve_source


def _files(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("{}", encoding="utf-8")


def _run(tmp_path: Path, method: str, final_files: tuple[str, ...]) -> Path:
    """A run directory as far as choosing what to load goes: run.json, final/ holding ``final_files``, a base beside."""
    base, run = tmp_path / "base", tmp_path / "run"
    _files(base, "config.json", "tokenizer_config.json")
    _files(run / "final", *final_files)
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": method, "template": "deepseek-r1",
                                              "base_model": str(base), "model_name_or_path": str(base),
                                              "final": "final"}), encoding="utf-8")
    return run


class _Model:
    def eval(self) -> "_Model":
        return self


def _what_eval_loads(run: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path | None] | str:
    """(model, tokenizer, adapter) directories dsft eval loads for ``run`` (nothing is loaded), or its refusal."""
    loaded: dict[str, Path | None] = {"adapter": None}
    monkeypatch.setattr(target, "load_tokenizer", lambda d: loaded.setdefault("tokenizer", Path(d)))
    monkeypatch.setattr(target, "load_model", lambda d, **_: loaded.setdefault("model", Path(d)) and _Model())
    monkeypatch.setattr(target, "load_lora_adapter", lambda model, d: loaded.update(adapter=Path(d)) or model)
    try:
        load_eval_target(run)
    except DsftError as exc:
        return str(exc)
    return loaded["model"], loaded["tokenizer"], loaded["adapter"]  # type: ignore[return-value]


def _what_export_loads(run: Path) -> tuple[Path, Path, Path | None] | str:
    try:
        source = resolve_source(run)
    except DsftError as exc:
        return str(exc)
    return source.model_dir, source.tokenizer_dir, source.adapter_dir


@pytest.mark.parametrize("method, final_files, expected", [
    # A LoRA adapter saved with the run's tokenizer: on the base, the run's tokenizer (both agreed already).
    ("lora", ("adapter_config.json", "tokenizer_config.json"), ("base", "run/final", "run/final")),
    # A full run's weights saved without a tokenizer: eval took the base's, export refused ('no tokenizer files in
    # run/final or run/final').
    ("full", ("config.json",), ("run/final", "base", None)),
    # run.json says lora, final/ holds full weights: export refused, eval evaluated final/ as a full model.
    ("lora", ("config.json", "tokenizer_config.json"), "run.json says method 'lora' but there is no adapter_config"),
])
def test_eval_and_export_load_the_same_directories_for_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             method: str, final_files: tuple[str, ...],
                                                             expected: tuple[str, ...] | str) -> None:
    run = _run(tmp_path, method, final_files)
    by_eval, by_export = _what_eval_loads(run, monkeypatch), _what_export_loads(run)
    if isinstance(expected, str):
        assert isinstance(by_eval, str) and expected in by_eval, by_eval
        assert by_eval == by_export
    else:
        assert by_eval == by_export == tuple(tmp_path / e if e else None for e in expected)


def test_a_missing_base_model_says_what_to_do_in_no_front_ends_words(tmp_path: Path, run_cli) -> None:
    """The library's error said the command line's 'pass the base model with --base-model PATH_OR_ID' to every caller
    of RunDir: a program, the dashboard, and `dsft compare`, which had no --base-model then. It says what to do in
    words any caller can act on; the commands that take --base-model (eval, compare, export, serve, chat) name it
    (test_cli_light_refusals), the dashboard says its own (test_ui_chat)."""
    from dsft.training.base_model import BaseModelNotFound
    from dsft.training.rundir import RunDir

    run = _run(tmp_path, "lora", ("adapter_config.json",))
    base = tmp_path / "base"
    for name in ("config.json", "tokenizer_config.json"):
        (base / name).unlink()
    expected = (f"{run}: the run's base model was not found on this machine; tried: {base}\n  - put the base model "
                "back where the first path tried says, or give the run another base model (a model directory, hub id "
                "or tiny preset)")
    for call in (RunDir(run).base_model, RunDir(run).check_base_model, RunDir(run).to_load, lambda: resolve_source(run)):
        with pytest.raises(BaseModelNotFound) as refused:
            call()
        assert str(refused.value) == expected
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n", encoding="utf-8")
    code, out, err = run_cli(["compare", "--tuned", str(run), "--data", str(tmp_path / "d.jsonl"), "--out",
                              str(tmp_path / "cmp")])
    assert code == 2 and "pass the base model with --base-model PATH_OR_ID" in err, out + err  # compare's flag now
