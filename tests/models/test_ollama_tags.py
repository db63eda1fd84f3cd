"""An Ollama tag (``deepseek-r1:32b``, as ``ollama run`` takes it) given where dsft takes a model is told how dsft
wants it written, ``ollama:deepseek-r1:32b``, and where the original weights are on the hub: one message under
the flag, key or argument that named it, exit code 2, before torch or transformers is imported. It was told only
that it was "not a local directory, a .gguf file, ollama:NAME[:TAG], a hub id (org/name) or a tiny preset"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_in_subprocess import run_dsft
from dsft.models.ollama_tags import ollama_tag_problem

HUB_32B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
WRITTEN = "an Ollama tag; dsft reads Ollama models written ollama:deepseek-r1:32b"


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    return str(path)


def _train_config(tmp: Path) -> str:
    path = tmp / "c.yaml"
    path.write_text(json.dumps({"model": {"name_or_path": "deepseek-r1:32b"}, "data": {"train": [_data(tmp)]}}))
    return str(path)


CASES = [
    ("eval", lambda t: ["eval", "deepseek-r1:32b", "--data", _data(t), "--out", str(t / "e")],
     f"model 'deepseek-r1:32b': {WRITTEN}", f"the hub id {HUB_32B}"),
    ("serve", lambda t: ["serve", "deepseek-r1:32b"], f"model 'deepseek-r1:32b': {WRITTEN}", f"the hub id {HUB_32B}"),
    ("chat", lambda t: ["chat", "deepseek:32b"], "model 'deepseek:32b': an Ollama tag; dsft reads Ollama models "
     "written ollama:deepseek:32b", f"a hub id (org/name), e.g. {HUB_32B}"),
    ("train", lambda t: ["train", _train_config(t), "--out", str(t / "run")],
     f"model.name_or_path: model 'deepseek-r1:32b': {WRITTEN}", f"the hub id {HUB_32B}"),
    ("plan", lambda t: ["plan", "--model", "deepseek-r1:32b"],
     "--model deepseek-r1:32b: an Ollama model, which the planner does not read", f"the hub id {HUB_32B}"),
    ("plan-ollama-prefix", lambda t: ["plan", "--model", "ollama:deepseek-r1:7b"],
     "--model ollama:deepseek-r1:7b: an Ollama model, which the planner does not read",
     "the hub id deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
    ("models-import", lambda t: ["models", "import", "deepseek-r1:32b", "--out", str(t / "m")],
     "deepseek-r1:32b: an Ollama tag; write it ollama:deepseek-r1:32b to import it", ""),
]


@pytest.mark.parametrize("args, said, weights", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_ollama_tag_is_told_how_dsft_takes_it_before_torch(tmp_path: Path, args, said: str, weights: str) -> None:
    code, heavy, stderr = run_dsft(args(tmp_path), tmp_path)
    assert code == 2, stderr
    assert said in stderr and weights in stderr, stderr
    assert "Traceback" not in stderr and not heavy, (heavy, stderr)


def test_a_local_directory_named_like_a_tag_is_still_a_directory(tmp_path: Path) -> None:
    """Only a name that is nothing on disk is read as a tag: the directory ``a:b`` is refused as what it is."""
    (tmp_path / "deepseek-r1:32b").mkdir()
    code, _, stderr = run_dsft(["serve", "deepseek-r1:32b"], tmp_path)
    assert code == 2 and "nor a model directory (config.json)" in stderr and "Ollama" not in stderr, stderr


@pytest.mark.parametrize("name", ["deepseek-ai/DeepSeek-R1", "./runs/x", "/abs/x:y", "https://x.y/a:b",
                                  "ollama:deepseek-r1:32b", "model.gguf", "tiny-deepseek-v3"])
def test_names_of_other_kinds_are_not_tags(name: str) -> None:
    assert ollama_tag_problem(name) is None


def test_the_dashboard_form_tells_a_tag_how_to_be_written(tmp_path: Path) -> None:
    from dsft.errors import DsftError
    from dsft.ui.launch import model_choice

    with pytest.raises(DsftError, match="model deepseek-r1:32b: an Ollama tag; dsft reads Ollama models written "
                                        "ollama:deepseek-r1:32b"):
        model_choice(tmp_path, "deepseek-r1:32b")


@pytest.mark.parametrize("name", ["deepseek-r1:32b", "ns/model:q4", "host/ns/model:t", "modèle:7b", "ｄeepseek:7b",
                                  "a/b/c/d:1", "x:", "-x:1", "x:a b", "deepseek-r1:32b\n", "deepseek-r1"])
def test_the_dashboard_takes_the_ollama_name_it_tells_a_tag_to_be_written_as(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The form's two Ollama checks ask one owner: a tag it tells to be written ``ollama:NAME`` is an Ollama name
    there (refused only as absent from the store), and a name it refuses as no Ollama name is told nothing about
    ``ollama:``. With its own copy of the name shape, the form told ``modèle:7b`` to be written ``ollama:modèle:7b``
    and then refused that as "not an Ollama name"."""
    from dsft.errors import DsftError
    from dsft.ui.launch import model_choice

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "store"))

    def said(value: str) -> str:
        with pytest.raises(DsftError) as refused:
            model_choice(tmp_path, value)
        return str(refused.value)

    told_to_write = f"written ollama:{name}" in said(name)
    prefixed = said(f"ollama:{name}")
    if told_to_write:
        assert "not in the Ollama store" in prefixed, (name, prefixed)
    if "not an Ollama name" in prefixed:
        assert not told_to_write and "ollama:" not in said(name), (name, said(name))
