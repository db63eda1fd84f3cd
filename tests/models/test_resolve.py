"""Resolving model names: tiny presets (cached, atomic), local directories, hub ids, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsft.errors import DsftError
from dsft.models import resolve
from dsft.models.resolve import check_model_name, resolve_model


def test_preset_is_written_once_and_reused(tmp_path: Path) -> None:
    first = resolve_model("tiny-deepseek-llm", cache_dir=tmp_path)
    assert first == tmp_path / "tiny" / "tiny-deepseek-llm"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("tiny-deepseek-llm", cache_dir=tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    # No staging directories are left behind.
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["tiny-deepseek-llm"]


def test_half_written_preset_is_rewritten(tmp_path: Path) -> None:
    broken = tmp_path / "tiny" / "tiny-deepseek-llm"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")  # no weights: a copy someone left incomplete
    path = resolve_model("tiny-deepseek-llm", cache_dir=tmp_path)
    assert path == broken
    assert (path / "model.safetensors").is_file() and (path / "config.json").read_text() != "{}"


def test_env_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSFT_CACHE", str(tmp_path))
    assert resolve_model("tiny-deepseek-llm") == tmp_path / "tiny" / "tiny-deepseek-llm"


def test_a_file_of_a_model_directory_is_answered_with_the_directory(tmp_path: Path) -> None:
    """model.safetensors or config.json (what a file browser or tab completion hands over) was told that
    'model.name_or_path needs a model directory', whichever flag or argument named it."""
    model = tmp_path / "smollm2"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(DsftError) as told:
        check_model_name(str(model / "model.safetensors"))
    assert str(told.value) == f"{model / 'model.safetensors'}: is a file of the model directory {model}; name the " \
                              f"directory, {model}"
    adapter = tmp_path / "run" / "final"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(DsftError, match=f"is a file of the adapter directory {re.escape(str(adapter))}; name the"):
        check_model_name(str(adapter / "adapter_model.safetensors"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DsftError) as told:
        check_model_name(str(tmp_path / "notes.txt"))
    assert "model.name_or_path" not in str(told.value) and "a model is a directory with config.json" in str(told.value)


def test_local_directory_and_errors(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path / "model")) == tmp_path / "model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DsftError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(DsftError, match="is a file"):
        resolve_model(str(tmp_path / "weights.bin"))
    with pytest.raises(DsftError) as err:
        resolve_model("tiny-deepseek-v9")
    assert "tiny-deepseek-v3" in str(err.value) and "tiny-r1-distill-qwen" in str(err.value)
    with pytest.raises(DsftError, match="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"):
        resolve_model("r1-distill-qwen-7b")


def test_hub_id_offline_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DsftError, match="could not download from the hub"):
        resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", cache_dir=tmp_path)


def test_a_mistyped_run_directory_is_named_as_a_missing_directory(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`runs/my-rnu` has the shape of a hub id; when runs/ exists here, the user meant a local directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "my-run").mkdir(parents=True)
    with pytest.raises(DsftError) as err:
        resolve_model("runs/my-rnu", cache_dir=tmp_path / "cache")
    assert str(err.value).startswith("runs/my-rnu: no such directory (runs/ holds my-run)")


def test_a_mistyped_path_is_refused_without_a_download_and_a_hub_id_still_downloads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where runs/ exists locally, `runs/typo` is refused before any download is tried (check_model_name says
    so too, for the commands' light checks); `org/name` with no local org/ goes to the hub as before."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "my-run").mkdir(parents=True)
    downloads: list[str] = []
    monkeypatch.setattr(resolve, "download_from_hub",
                        lambda name, *_: downloads.append(name) or tmp_path / "runs" / "my-run")
    expected = "runs/typo: no such directory (runs/ holds my-run); runs/ is a local directory"
    for refuse in (check_model_name, resolve_model):
        with pytest.raises(DsftError, match=re.escape(expected)):
            refuse("runs/typo")
    assert downloads == []
    check_model_name("deepseek-ai/DeepSeek-R1")
    assert resolve_model("deepseek-ai/DeepSeek-R1") == tmp_path / "runs" / "my-run"
    assert downloads == ["deepseek-ai/DeepSeek-R1"]


@pytest.mark.parametrize("name, blocker", [("some.gguf/x", "some.gguf"), ("runs/r1/run.json/final", "runs/r1/run.json"),
                                           ("./notes.txt/a/b", "notes.txt")])
def test_a_path_below_a_file_is_a_local_path_refused_without_a_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, blocker: str) -> None:
    """A file where a folder of the path would be: the name is a local path that names nothing, refused naming the
    file. Before, `some.gguf/x` (a hub id's shape, no local `some.gguf/` directory) was downloaded from the hub."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    for file in ("some.gguf", "runs/r1/run.json", "notes.txt"):
        (tmp_path / file).write_text("{}")
    downloads: list[str] = []
    monkeypatch.setattr(resolve, "download_from_hub", lambda name, *_: downloads.append(name) or tmp_path)
    expected = f"{name}: {Path(blocker)} is a file, not a directory, so nothing lies below it (a local path"
    for refuse in (check_model_name, resolve_model):
        with pytest.raises(DsftError, match=re.escape(expected)):
            refuse(name)
    assert downloads == []


def test_check_model_name_refuses_what_resolve_would_without_writing(tmp_path: Path) -> None:
    check_model_name("tiny-deepseek-v3")                 # a preset: written later, by resolve_model
    check_model_name("deepseek-ai/DeepSeek-R1")          # a hub id: downloaded later
    assert not (tmp_path / "tiny").exists()
    for name, message in [("./absent", "not a local directory"), (str(tmp_path / "m.gguf"), "no such file"),
                          ("", "empty; name a model"), ("  ", "empty; name a model"),  # was '.: no config.json'
                          ("r1-distill-qwen-7b", "real-model config preset")]:
        with pytest.raises(DsftError, match=message):
            check_model_name(name)


def test_a_gguf_file_named_with_a_trailing_slash_is_named_as_data_files_are(tmp_path: Path) -> None:
    """``m.gguf/`` names a directory, as ``data.jsonl/`` does (8ad0e6e): the message said the file 'is a file; a
    model is a directory with config.json, a .gguf file, ...', which reads as if a .gguf file were refused."""
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(DsftError) as refused:
        check_model_name(f"{tmp_path}/m.gguf/")
    assert str(refused.value) == (f"{tmp_path}/m.gguf/: a file named with a trailing '/', which names a directory; "
                                  f"write {tmp_path}/m.gguf")


def test_a_name_that_is_neither_a_local_directory_nor_reachable_on_the_hub_says_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dsft export runs/002` run from the wrong directory (no runs/ here) read as a hub id and said only
    'could not download from the hub': the user meant a local run directory, and is told where it was looked for."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DsftError) as err:
        resolve_model("runs/002", cache_dir=tmp_path / "cache")
    assert str(err.value).startswith(f"model 'runs/002': no local directory runs/002 (in {tmp_path}), and "
                                     "could not download from the hub"), str(err.value)


def test_a_missing_checkpoint_or_deep_path_names_what_its_nearest_directory_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dsft serve runs/qa/checkpoints/checkpoint-99` (a step the run never saved): a path of more than two parts is
    no hub id, so it got the catch-all 'not a local directory, a .gguf file, ollama:NAME[:TAG], a hub id (org/name)
    or a tiny preset ...', where `runs/my-rnu` says which directories runs/ holds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "qa" / "checkpoints" / "checkpoint-30").mkdir(parents=True)
    (tmp_path / "runs" / "qa" / "checkpoints" / "checkpoint-100").mkdir()
    with pytest.raises(DsftError) as err:
        check_model_name("runs/qa/checkpoints/checkpoint-99")
    assert str(err.value) == ("runs/qa/checkpoints/checkpoint-99: no such directory (runs/qa/checkpoints/ holds "
                              "checkpoint-100, checkpoint-30)")
    with pytest.raises(DsftError) as err:
        check_model_name(str(tmp_path / "runs" / "nope" / "final"))
    assert str(err.value) == f"{tmp_path / 'runs' / 'nope' / 'final'}: no such directory ({tmp_path / 'runs'}/ holds qa)"


def test_a_directory_that_cannot_be_listed_leaves_the_message_without_suggestions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The missing-path and mistyped-path messages list what the nearest directory holds; one the user may not
    read raised PermissionError from Path.iterdir, a traceback in place of the message."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "qa").mkdir(parents=True)

    def unreadable(self: Path):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", unreadable)
    with pytest.raises(DsftError) as err:
        check_model_name("runs/qa/checkpoints/checkpoint-99")
    assert str(err.value) == "runs/qa/checkpoints/checkpoint-99: no such directory"
    with pytest.raises(DsftError) as err:
        check_model_name("runs/my-rnu")
    assert str(err.value).startswith("runs/my-rnu: no such directory; runs/ is a local directory, so this is not read")


@pytest.mark.parametrize("under", ["", "cache"])
def test_a_model_cache_that_is_a_file_is_named_with_what_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                under: str) -> None:
    """DSFT_CACHE pointing at a file (or below one) failed with a bare '.../tiny: Not a directory'."""
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("DSFT_CACHE", str(tmp_path / "f" / under))
    with pytest.raises(DsftError) as caught:
        resolve_model("tiny-deepseek-llm")
    where = f"{tmp_path / 'f'}" if not under else f"{tmp_path / 'f' / under}: {tmp_path / 'f'}"
    assert str(caught.value).startswith(f"DSFT_CACHE: {where} is a file, not a directory"), caught.value
    with pytest.raises(DsftError, match=r"^model.cache_dir: .* is a file, not a directory"):
        resolve_model("tiny-deepseek-llm", cache_dir=tmp_path / "f")
