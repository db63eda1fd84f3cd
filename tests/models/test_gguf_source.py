"""GGUF files and Ollama models as a source: the Ollama store's layout, refusals before any weight loads.

The conversion of a real GGUF (SmolLM2-135M-Instruct) is tested in ``tests/realmodel``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dsft.errors import DsftError, UnsupportedError
from dsft.models.gguf_source import (
    OLLAMA_MODEL_LAYER, gguf_file_of, imported_dir, is_gguf_source, ollama_models, read_gguf_info, resolve_ollama,
)
from dsft.models.resolve import resolve_model


def write_header_only_gguf(path: Path, architecture: str) -> Path:
    """A GGUF file with metadata (a four-token vocabulary, one CONTROL and one USER_DEFINED token among them) and
    one tiny tensor, as llama.cpp's converter lays them out."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("header-only")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    writer.add_token_list(["a", "b", "<｜User｜>", "<eos>"])
    writer.add_token_types([1, 1, 4, 3])  # NORMAL, NORMAL, USER_DEFINED, CONTROL
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def fake_ollama_store(root: Path, name: str, tag: str, blob_bytes: bytes, namespace: str = "library") -> Path:
    """An Ollama store as ``ollama pull`` leaves it: a manifest per NAME/TAG, blobs named by sha256."""
    digest = hashlib.sha256(blob_bytes).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    blob = root / "blobs" / f"sha256-{digest}"
    blob.write_bytes(blob_bytes)
    template = root / "blobs" / ("sha256-" + "0" * 64)
    template.write_text("{{ .Prompt }}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "1" * 64, "size": 10},
        "layers": [
            {"mediaType": OLLAMA_MODEL_LAYER, "digest": f"sha256:{digest}", "size": len(blob_bytes)},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 13},
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return blob


def test_names_that_are_gguf_sources() -> None:
    assert is_gguf_source("ollama:deepseek-r1:7b") and is_gguf_source("/models/x.Q4_K_M.GGUF")
    assert not is_gguf_source("tiny-deepseek-v3") and not is_gguf_source("deepseek-ai/DeepSeek-V3")


def test_ollama_names_resolve_through_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    blob = fake_ollama_store(store, "smollm2", "135m", b"GGUF-one")
    latest = fake_ollama_store(store, "smollm2", "latest", b"GGUF-two")
    mine = fake_ollama_store(store, "tuned", "v1", b"GGUF-three", namespace="alice")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert resolve_ollama("smollm2:135m") == blob
    assert resolve_ollama("smollm2") == latest  # no tag = latest
    assert resolve_ollama("library/smollm2:135m") == blob
    assert resolve_ollama("registry.ollama.ai/alice/tuned:v1") == mine
    assert resolve_ollama("alice/tuned:v1") == mine


def test_ollama_names_are_found_in_any_case_as_ollama_finds_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`ollama run DeepSeek-R1:7B` runs the deepseek-r1:7b it pulled (Ollama compares names ignoring case); dsft
    looked for manifests/registry.ollama.ai/library/DeepSeek-R1/7B and said the model was not in the store."""
    store = tmp_path / "store"
    pulled = fake_ollama_store(store, "deepseek-r1", "7b", b"GGUF-pulled")
    created = fake_ollama_store(store, "Medical-QA", "V1", b"GGUF-created", namespace="Alice")  # kept as created
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert gguf_file_of("ollama:DeepSeek-R1:7B") == pulled
    assert resolve_ollama("Library/DEEPSEEK-R1:7b") == pulled
    assert resolve_ollama("REGISTRY.OLLAMA.AI/library/deepseek-r1:7B") == pulled
    assert resolve_ollama("alice/medical-qa:v1") == created
    with pytest.raises(DsftError, match=r"ollama:DeepSeek-R1:8B: not in the Ollama store"):  # another tag is not it
        resolve_ollama("DeepSeek-R1:8B")


def test_ollama_models_lists_the_store_as_ollama_names_them(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert ollama_models(store) == []
    fake_ollama_store(store, "smollm2", "135m", b"GGUF-one")
    fake_ollama_store(store, "tuned", "v1", b"GGUF-two", namespace="alice")
    assert ollama_models(store) == ["alice/tuned:v1", "smollm2:135m"]
    assert all(resolve_ollama(name, store) for name in ollama_models(store))


def test_ollama_errors_name_the_store_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    blob = fake_ollama_store(store, "smollm2", "135m", b"GGUF")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    with pytest.raises(DsftError, match=r"not in the Ollama store .*ollama pull qwen2:7b"):
        resolve_model("ollama:qwen2:7b", cache_dir=tmp_path / "cache")
    with pytest.raises(DsftError, match="not an Ollama name"):
        resolve_ollama("../../etc:x")
    blob.unlink()
    with pytest.raises(DsftError, match="model blob .* is missing"):
        resolve_ollama("smollm2:135m")
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.template",
                                                "digest": "sha256:" + "0" * 64}]}))
    with pytest.raises(DsftError, match="no model layer"):
        resolve_ollama("smollm2:135m")
    with pytest.raises(DsftError, match=r"missing.gguf: no such file or directory \(a GGUF file was expected\)"):
        resolve_model(str(tmp_path / "missing.gguf"), cache_dir=tmp_path / "cache")
    (tmp_path / "folder.gguf").mkdir()
    with pytest.raises(DsftError, match="folder.gguf: is a directory, not a file"):
        resolve_model(str(tmp_path / "folder.gguf"), cache_dir=tmp_path / "cache")


def test_header_facts_are_read_without_loading(tmp_path: Path) -> None:
    info = read_gguf_info(write_header_only_gguf(tmp_path / "m.gguf", "llama"))
    assert (info.architecture, info.quantization, info.tensor_types) == ("llama", "Q8_0", {"F32": 1})
    assert (info.vocab_size, info.marked_tokens) == (4, {2: ("<｜User｜>", False), 3: ("<eos>", True)})
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(DsftError, match="not a readable GGUF file"):
        read_gguf_info(tmp_path / "junk.gguf")


def test_a_conversion_parses_the_gguf_header_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a GGUFReader parses every metadata value, one numpy view per token: about 5 s for SmolLM2's
    49,152 tokens and merges, 15 s for R1-Distill-Qwen's 151,936, on a 2-core machine. The conversion read the
    header for its checks, again in ``convert_gguf`` and a third time for the special tokens; it reads it once
    (transformers' own loading reads the file too, which dsft cannot share)."""
    import gguf

    import dsft.models.gguf_source as gguf_source

    path = write_header_only_gguf(tmp_path / "m.gguf", "llama")
    opened: list[str] = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args: object, **kwargs: object) -> None:
            opened.append(str(args[0]))
            super().__init__(*args, **kwargs)

    given: list[object] = []

    def write_checkpoint(path: Path, info: object, out_dir: Path) -> None:
        given.append(info)  # what the weights and tokenizer are written with (transformers is not under test)
        (out_dir / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    monkeypatch.setattr(gguf_source, "_write_checkpoint", write_checkpoint)
    gguf_source.materialise_gguf(str(path), tmp_path / "cache")
    assert opened == [str(path)]
    assert [(info.vocab_size, info.marked_tokens) for info in given] == [(4, {2: ("<｜User｜>", False), 3: ("<eos>", True)})]


def test_a_conversion_shares_one_reader_of_the_file(tmp_path: Path) -> None:
    """transformers parsed the whole GGUF metadata three times per conversion (the tokenizer's config lookup,
    the model's config, the weights), after dsft's header read: about 4 s of CPU each for SmolLM2's vocabulary.
    During a conversion every
    ``gguf.GGUFReader`` of one file is the same reader; after it, gguf's own class is back. (The real conversion's
    count: tests/realmodel/test_conversion.py.)"""
    import gguf

    import dsft.models.gguf_source as gguf_source

    path = write_header_only_gguf(tmp_path / "m.gguf", "llama")
    other = write_header_only_gguf(tmp_path / "other.gguf", "qwen2")
    with gguf_source._one_reader_per_file():
        first = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(path) is first and gguf.GGUFReader(str(tmp_path / "." / "m.gguf")) is first
        with gguf_source._one_reader_per_file():  # the conversion's steps inside a resolution's
            assert gguf.GGUFReader(path) is first
        assert gguf.GGUFReader(other) is not first
        assert str(gguf.GGUFReader(other).fields["general.architecture"].contents()) == "qwen2"
    assert isinstance(gguf.GGUFReader, type) and gguf.GGUFReader(path) is not first


def test_unreadable_architecture_is_one_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         run_cli) -> None:
    path = write_header_only_gguf(tmp_path / "v3.gguf", "deepseek2")
    with pytest.raises(UnsupportedError, match="GGUF architecture 'deepseek2' cannot be read by transformers"):
        resolve_model(str(path), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())
    # The same through an Ollama name and through `dsft models import`: exit 2, one message, no traceback.
    store = tmp_path / "store"
    fake_ollama_store(store, "deepseek-v3", "latest", path.read_bytes())
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    code, out, err = run_cli(["models", "import", "ollama:deepseek-v3", "--out", str(tmp_path / "out")])
    assert code == 2 and "'deepseek2'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(["models", "import", str(tmp_path / "v3.bin"), "--out", str(tmp_path / "out")])
    assert code == 2 and "not a .gguf file" in err


def test_converted_copies_are_keyed_by_the_file(tmp_path: Path) -> None:
    path = write_header_only_gguf(tmp_path / "Model.Q8_0.gguf", "llama")
    first = imported_dir(path, tmp_path / "cache")
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("Model.Q8_0-")
    assert imported_dir(path, tmp_path / "cache") == first
    write_header_only_gguf(path, "qwen2")  # rewritten: a new conversion
    assert imported_dir(path, tmp_path / "cache") != first or path.stat().st_mtime_ns == 0


@pytest.mark.slow
def test_a_tokenizer_llama_cpp_splits_differently_is_refused_before_the_weights(tmp_path: Path,
                                                                                 tiny_model_dir) -> None:
    """transformers rebuilds DeepSeek-V3's regex as plain byte-level: digits and CJK split differently."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (test extra) compares the tokenizers")
    from dsft.export.gguf_export import write_gguf
    from dsft.models.loading import load_model, load_tokenizer

    source = tiny_model_dir("tiny-deepseek-llm")
    path = tmp_path / "tiny-llm.gguf"
    write_gguf(load_model(source), load_tokenizer(source), source, path, "float16", "tiny")
    with pytest.raises(UnsupportedError, match="splits text differently from llama.cpp") as err:
        resolve_model(str(path), cache_dir=tmp_path / "cache")
    # The stand-in DeepSeek-LLM tokenizer carries V3's regex (CJK runs and 1-3 digit groups split apart).
    assert "'deepseek-v3'" in str(err.value) and "1970" in str(err.value)
    left = [p.name for p in (tmp_path / "cache" / "gguf").iterdir() if not p.name.endswith(".lock")]
    assert not left  # nothing half-written is left (the empty lock file of the conversion stays)


def test_the_special_token_repair_examples_hold() -> None:
    import doctest

    import dsft.models.gguf_tokenizer as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_the_import_record_names_the_gguf_file_absolutely(tmp_path: Path, monkeypatch) -> None:
    # `dsft models import ./m.gguf` recorded "m.gguf": run.json's model_source then named no file from elsewhere.
    import dsft.models.gguf_source as gguf_source

    write_header_only_gguf(tmp_path / "m.gguf", "llama")
    monkeypatch.setattr(gguf_source, "_write_checkpoint", lambda path, info, out_dir: None)  # the record is under test
    monkeypatch.chdir(tmp_path)
    imported = gguf_source.convert_gguf(Path("m.gguf"), tmp_path / "out", source="./m.gguf")
    assert imported.source["gguf_file"] == str(tmp_path / "m.gguf") and imported.source["source"] == "./m.gguf"
    assert json.loads((tmp_path / "out" / "dsft_import.json").read_text())["gguf_file"] == str(tmp_path / "m.gguf")


def test_processes_converting_the_same_gguf_at_once_convert_it_once(tmp_path: Path, monkeypatch, caplog) -> None:
    """Every process of a launched job resolves the same GGUF into the same cache at once. The second one, finding
    no conversion while the first is still writing it, used to convert again and replace the directory the
    first was loading from; now it waits for the first's conversion and reads it."""
    import threading

    import dsft.models.gguf_source as gguf_source

    path = write_header_only_gguf(tmp_path / "m.gguf", "llama")
    first_converting, second_looked = threading.Event(), threading.Event()
    conversions: list[str] = []
    read_record = gguf_source.read_import_record

    def write_checkpoint(path: Path, info: object, out_dir: Path) -> None:
        conversions.append(threading.current_thread().name)
        if threading.current_thread().name == "first":
            first_converting.set()
            second_looked.wait()  # the second process looks for the conversion while this one writes it
        (out_dir / "config.json").write_text("{}", encoding="utf-8")

    def looked_for_conversion(model_dir: Path) -> object:
        if threading.current_thread().name == "second":
            second_looked.set()
        return read_record(model_dir)

    monkeypatch.setattr(gguf_source, "_write_checkpoint", write_checkpoint)
    monkeypatch.setattr(gguf_source, "read_import_record", looked_for_conversion)
    results: dict[str, object] = {}

    def resolve(name: str) -> None:
        try:
            results[name] = gguf_source.materialise_gguf(str(path), tmp_path / "cache").model_dir
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc
            first_converting.set()
            second_looked.set()

    first = threading.Thread(target=resolve, args=("first",), name="first")
    first.start()
    first_converting.wait()  # it waits in write_checkpoint until the second has looked for its conversion
    second = threading.Thread(target=resolve, args=("second",), name="second")
    second.start()
    first.join()
    second.join()
    target = imported_dir(path, tmp_path / "cache")
    assert results == {"first": target, "second": target}, results
    assert conversions == ["first"]
    assert caplog.text.count(": converting llama") == 1  # said by the process that converts
    assert (target / "config.json").is_file() and (target / "dsft_import.json").is_file()
