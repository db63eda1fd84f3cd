"""GGUF files and Ollama models as a training source, converted once into a Hugging Face checkpoint.

``model.name_or_path`` may name a ``.gguf`` file or ``ollama:NAME[:TAG]``. An Ollama name is looked up in
the local Ollama store (``$OLLAMA_MODELS``, else ``~/.ollama/models``, else the Linux service's
``/usr/share/ollama/.ollama/models``): ``manifests/HOST/NAMESPACE/NAME/TAG`` is a JSON manifest whose
``application/vnd.ollama.image.model`` layer names the GGUF blob ``blobs/sha256-<hex>``.

transformers reads GGUF files and dequantises every tensor to float; the model it returns is marked as
quantized and refuses ``save_pretrained``. The conversion therefore rebuilds the model from its config
without ``quantization_config``, copies the dequantised weights in and saves an ordinary checkpoint with
the tokenizer and chat template read from the GGUF metadata. Training then starts from those dequantised
weights: the quantisation error of the file (e.g. Q4_1's 4-bit rounding) is part of the starting model,
which is not the original full-precision one.

The architecture is checked from the GGUF header (no tensors read) before anything heavy happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from dsft.disk import not_a_file_reason
from dsft.errors import DsftError, UnsupportedError
from dsft.models.gguf_tokenizer import gguf_added_tokens, with_gguf_special_tokens
from dsft.models.loading import use_cpu_accelerator_without_cuda
from dsft.models.ollama_tags import OLLAMA_PREFIX, is_ollama_name

log = logging.getLogger(__name__)

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_HOST = "registry.ollama.ai"
OLLAMA_DEFAULT_NAMESPACE = "library"
IMPORT_RECORD = "dsft_import.json"

# llama.cpp pre-tokenizer names whose regexes split every digit on its own before GPT-2's regex
# (llama-vocab.cpp). transformers' GGUF tokenizer converter keeps only the byte-level split, so the
# digit split is restored here: otherwise "1970" would be one token after import and four in llama.cpp.
_DIGIT_SPLIT_PRE = ("smollm", "codeshell", "exaone", "minerva-7b")

# Held while gguf.GGUFReader is swapped for one conversion's shared reader (re-entered by the conversion's steps).
_READER_SWAP = threading.RLock()


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file is, read from its header without loading tensors."""

    path: str
    architecture: str
    quantization: str  # general.file_type as llama.cpp names it (Q4_1, Q8_0, F16, ...), or "unknown"
    tensor_types: dict[str, int]  # ggml type -> number of tensors stored in it
    model_name: str | None
    pre_tokenizer: str | None
    has_chat_template: bool
    vocab_size: int  # tokens in tokenizer.ggml.tokens (0 when the file has none)
    marked_tokens: dict[int, tuple[str, bool]]  # {id: (text, special)}: tokens llama.cpp matches whole in text


@dataclass(frozen=True)
class ImportedModel:
    """A converted checkpoint and where it came from."""

    model_dir: Path
    source: dict[str, Any] = field(default_factory=dict)


def is_gguf_source(name: str | Path) -> bool:
    """Whether ``model.name_or_path`` names a GGUF file or an Ollama model."""
    text = str(name)
    return text.startswith(OLLAMA_PREFIX) or text.lower().endswith(".gguf")


def ollama_store() -> Path:
    """The local Ollama model store: ``$OLLAMA_MODELS``, else the user's, else the Linux service's."""
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        return Path(env).expanduser()
    user = Path.home() / ".ollama" / "models"
    service = Path("/usr/share/ollama/.ollama/models")
    return service if not user.is_dir() and service.is_dir() else user


def _manifest_path(store: Path, name: str) -> Path:
    """``manifests/HOST/NAMESPACE/NAME/TAG`` for ``NAME[:TAG]``, ``NS/NAME[:TAG]`` or ``HOST/NS/NAME[:TAG]``."""
    if not is_ollama_name(name):  # Ollama's own rule: no part is '.' or '..', so the path stays in the store
        raise DsftError(f"{OLLAMA_PREFIX}{name!r} is not an Ollama name (NAME[:TAG])")
    base, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:  # no tag (a ':' inside a host:port is not one)
        base, tag = name, "latest"
    parts = base.split("/")
    if len(parts) == 1:
        parts = [OLLAMA_DEFAULT_HOST, OLLAMA_DEFAULT_NAMESPACE, *parts]
    elif len(parts) == 2:
        parts = [OLLAMA_DEFAULT_HOST, *parts]
    return store.joinpath("manifests", *parts, tag)


def _stored_manifest(store: Path, manifest: Path) -> Path:
    """``manifest`` as the store spells it: Ollama's names are case-insensitive (``ollama run DeepSeek-R1:7B`` runs
    the ``deepseek-r1:7b`` it pulled: server/routes.go getExistingName takes the manifest whose host, namespace,
    model and tag equal the name's ignoring case), while the store's directories keep the case the name was pulled
    or created with. The exact spelling first; else the first such manifest; else ``manifest`` (not there)."""
    if manifest.is_file():
        return manifest
    root = store / "manifests"
    wanted = [part.lower() for part in manifest.relative_to(root).parts]
    for stored in sorted(root.glob("*/*/*/*")):  # HOST/NAMESPACE/MODEL/TAG, as ollama_models lists them
        if stored.is_file() and [part.lower() for part in stored.relative_to(root).parts] == wanted:
            return stored
    return manifest


def resolve_ollama(name: str, store: Path | None = None) -> Path:
    """The GGUF blob of Ollama model ``name`` (``NAME[:TAG]``, tag default ``latest``; any case, as Ollama takes it)
    in the local store."""
    store = store or ollama_store()
    manifest = _stored_manifest(store, _manifest_path(store, name))
    if not manifest.is_file():
        raise DsftError(
            f"{OLLAMA_PREFIX}{name}: not in the Ollama store {store} (no {manifest}); "
            f"`ollama pull {name}` first, or set OLLAMA_MODELS to the store's directory"
        )
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise DsftError(f"{manifest}: unreadable Ollama manifest ({exc})") from exc
    digests = [layer.get("digest") for layer in layers
               if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER]
    if not digests or not isinstance(digests[0], str) or not digests[0].startswith("sha256:"):
        raise DsftError(f"{manifest}: the Ollama manifest has no model layer ({OLLAMA_MODEL_LAYER})")
    blob = store / "blobs" / digests[0].replace(":", "-")
    if not blob.is_file():
        raise DsftError(f"{manifest}: its model blob {blob} is missing; `ollama pull {name}` again")
    return blob


def ollama_models(store: Path | None = None) -> list[str]:
    """The ``NAME:TAG`` (or ``NS/NAME:TAG``, ``HOST/NS/NAME:TAG``) of every model in the local Ollama store,
    as ``ollama:`` takes them; [] when there is no store."""
    store = store or ollama_store()
    names = []
    for manifest in sorted((store / "manifests").glob("*/*/*/*")):
        if not manifest.is_file():
            continue
        host, namespace, name, tag = manifest.relative_to(store / "manifests").parts
        prefix = "" if host == OLLAMA_DEFAULT_HOST and namespace == OLLAMA_DEFAULT_NAMESPACE else (
            f"{namespace}/" if host == OLLAMA_DEFAULT_HOST else f"{host}/{namespace}/")
        names.append(f"{prefix}{name}:{tag}")
    return names


def gguf_file_of(name: str) -> Path:
    """The GGUF file a ``model.name_or_path`` names (an Ollama name resolved to its blob). Errors name the path or
    the Ollama name, not where it was given (a config key, a flag, an argument): the caller adds that."""
    if name.startswith(OLLAMA_PREFIX):
        return resolve_ollama(name[len(OLLAMA_PREFIX):])
    path = Path(name).expanduser()
    if not path.is_file():
        raise DsftError(f"{path}: {not_a_file_reason(path)} (a GGUF file was expected)")
    return path


def _field_value(reader: Any, key: str) -> Any:
    """A scalar or string metadata value of a ``gguf.GGUFReader`` (None when absent)."""
    entry = reader.fields.get(key)
    if entry is None:
        return None
    return entry.contents()


def read_gguf_info(path: Path) -> GGUFInfo:
    """Architecture, quantisation and tokenizer facts from a GGUF header (tensors are memory-mapped, not read)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise DsftError(f"{path}: not a readable GGUF file ({exc})") from exc
    file_type = _field_value(reader, "general.file_type")
    try:
        quantization = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (TypeError, ValueError):
        quantization = "unknown"
    types = Counter(gguf.GGMLQuantizationType(int(t.tensor_type)).name for t in reader.tensors)
    vocab_size, marked = gguf_added_tokens(reader)
    return GGUFInfo(
        path=str(path), architecture=str(_field_value(reader, "general.architecture") or "unknown"),
        quantization=quantization, tensor_types=dict(sorted(types.items())),
        model_name=_field_value(reader, "general.name"), pre_tokenizer=_field_value(reader, "tokenizer.ggml.pre"),
        has_chat_template=_field_value(reader, "tokenizer.chat_template") is not None,
        vocab_size=vocab_size, marked_tokens=marked,
    )


def transformers_gguf_architectures() -> tuple[str, ...]:
    """GGUF architectures this transformers version can read."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # The mapping also lists the metadata groups "general" and "tokenizer", which are no architectures.
    return tuple(sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}))


def check_architecture(info: GGUFInfo) -> None:
    """Refuse, naming it, an architecture transformers cannot read from GGUF (before any tensor is loaded)."""
    supported = transformers_gguf_architectures()
    if info.architecture not in supported:
        raise UnsupportedError(
            f"{info.path}: GGUF architecture {info.architecture!r} cannot be read by transformers (it reads "
            f"{', '.join(supported)}); convert the original Hugging Face checkpoint instead"
        )


def _restore_digit_split(tokenizer: Any, pre: str | None) -> None:
    """Give the converted tokenizer llama.cpp's single-digit split for ``pre`` names that have one."""
    if pre not in _DIGIT_SPLIT_PRE:
        return
    from tokenizers import pre_tokenizers

    backend = tokenizer.backend_tokenizer
    current = backend.pre_tokenizer
    if current is None or "Digits" in json.dumps(json.loads(backend.to_str()).get("pre_tokenizer")):
        return
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), current])


# Texts whose tokenization must be the same in the converted tokenizer and in llama.cpp on the original file:
# words, digit runs (split differently by different regexes), Chinese, whitespace runs, punctuation.
TOKENIZATION_PROBES = (
    "The quick brown fox jumps over the lazy dog 1234567.",
    "青山水库于1970年9月建成，总库容76526万立方米。",
    "  leading spaces,\ttabs\nand\n\nnewlines   ",
    "x=3.14159; y = x**2 // 7 != 0x1F",
)


def tokenization_mismatches(path: Path, tokenizer: Any, texts: tuple[str, ...] = TOKENIZATION_PROBES) -> list[str] | None:
    """Texts the converted tokenizer splits differently from llama.cpp reading ``path`` (None: no llama.cpp).

    transformers rebuilds a GGUF's tokenizer from its vocabulary and merges but not from llama.cpp's
    per-model pre-tokenizer regexes, so a model whose regex it does not reproduce would be trained on
    token sequences it never saw.
    """
    try:
        from llama_cpp import Llama
    except ImportError:  # optional: llama-cpp-python (dsft[gguf-verify])
        return None
    # llama-cpp-python prints llama.cpp's warnings despite verbose=False (its log levels are off by one for
    # recent llama.cpp), and a vocabulary-only load always warns "possible training context overflow":
    # untrue here (no context is used) and alarming in a training tool. A load failure still raises.
    with contextlib.redirect_stderr(io.StringIO()):
        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        problems = []
        for text in texts:
            expected = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
            got = tokenizer.encode(text, add_special_tokens=False)
            if got != expected:
                at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
                problems.append(f"{text[:30]!r}: from token {at}, llama.cpp {expected[at:at + 6]}, "
                                f"converted {got[at:at + 6]}")
        return problems
    finally:
        llm.close()


def convert_gguf(path: Path, out_dir: Path, source: str | None = None, info: GGUFInfo | None = None) -> ImportedModel:
    """Convert GGUF ``path`` into a float32 Hugging Face checkpoint at ``out_dir`` (written atomically); ``info``:
    its header facts when the caller has read them already (each read parses the whole vocabulary)."""
    with _one_reader_per_file():  # the header read here and transformers' reads below share one parse
        return _convert(path, Path(out_dir), source, info if info is not None else read_gguf_info(path))


def _convert(path: Path, out_dir: Path, source: str | None, info: GGUFInfo) -> ImportedModel:
    check_architecture(info)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _write_checkpoint(path, info, staging)
        # The file as an absolute path (not resolved: an Ollama blob stays the blob), so a record read from
        # another directory still names it.
        record = {"source": source or str(path), "gguf_file": os.path.abspath(path), "architecture": info.architecture,
                  "quantization": info.quantization, "tensor_types": info.tensor_types,
                  "model_name": info.model_name, "dequantized_to": "float32"}
        (staging / IMPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)  # mkdtemp makes it private; the checkpoint is an ordinary directory
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ImportedModel(out_dir, record)


@contextlib.contextmanager
def _one_reader_per_file() -> Iterator[None]:
    """While converting, ``gguf.GGUFReader(path)`` parses each file once and hands the same reader out again.

    transformers parses the whole GGUF metadata (every token and merge as a numpy view: about 4 s of CPU for
    SmolLM2's 49,152 tokens on a 2-core machine, 3x that for a 152k vocabulary) in each of the tokenizer's
    config lookup, the model's config and the model's weights, after dsft's own header read: four parses of one
    file per conversion. The reader is only read from, so one serves all four. The hook: ``load_gguf_checkpoint`` in
    transformers.modeling_gguf_pytorch_utils imports ``GGUFReader`` from ``gguf`` when it is called (pinned
    transformers range in pyproject; tests/models/test_gguf_source.py counts the parses). The swap is
    process-wide, so conversions in one process take turns (threads converting two files at once would
    otherwise restore each other's swap). Inside one, a nested call keeps the readers of the outer one.
    """
    import gguf

    with _READER_SWAP:
        if getattr(gguf.GGUFReader, "shares_readers", False):
            yield
            return
        opened = gguf.GGUFReader
        readers: dict[tuple[str, str], Any] = {}

        def shared_reader(path: Any, mode: str = "r") -> Any:
            key = (os.path.realpath(path), mode)
            if key not in readers:
                readers[key] = opened(path, mode)
            return readers[key]

        shared_reader.shares_readers = True  # type: ignore[attr-defined]
        gguf.GGUFReader = shared_reader
        try:
            yield
        finally:
            gguf.GGUFReader = opened


def _write_checkpoint(path: Path, info: GGUFInfo, out_dir: Path) -> None:
    """Dequantise, rebuild without quantization_config, save weights + tokenizer (+ chat template)."""
    import torch

    use_cpu_accelerator_without_cuda()  # transformers' GGUF loading imports DeepSpeed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise DsftError(f"{path}: transformers could not read the tokenizer of this GGUF file ({exc})") from exc
    tokenizer = with_gguf_special_tokens(tokenizer, path, info.vocab_size, info.marked_tokens,
                                         out_dir / ".tokenizer-repair")
    _restore_digit_split(tokenizer, info.pre_tokenizer)
    mismatches = tokenization_mismatches(path, tokenizer)  # before the weights: a refusal costs seconds
    if mismatches:
        raise UnsupportedError(
            f"{path}: the tokenizer transformers rebuilds from this GGUF splits text differently from llama.cpp "
            f"(pre-tokenizer {info.pre_tokenizer!r}); training on it would feed the model token sequences it never "
            "saw. Use the original Hugging Face checkpoint of this model instead", problems=mismatches,
        )
    if mismatches is None:
        log.warning("%s: llama-cpp-python is not installed, so the converted tokenizer was not compared with "
                    "llama.cpp's (pip install llama-cpp-python)", path)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise DsftError(f"{path}: transformers could not read this {info.architecture} GGUF file ({exc})") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # The GGUF-loaded model refuses save_pretrained; an ordinary model built from the same config does not.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def import_key(path: Path) -> str:
    """A cache key for a GGUF file: its resolved path, size and modification time (no hashing of GBs)."""
    stat = path.resolve().stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def imported_dir(path: Path, cache_dir: Path) -> Path:
    """``CACHE/gguf/STEM-KEY``: where the converted copy of ``path`` lives.

    Named after the file itself (an Ollama name and the blob's path share one conversion).
    """
    stem = path.resolve().stem
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-.") or "model"
    return cache_dir / "gguf" / f"{safe}-{import_key(path)}"


def read_import_record(model_dir: Path) -> dict[str, Any] | None:
    """The GGUF source of a converted checkpoint (``dsft_import.json``), or None for other checkpoints."""
    record = Path(model_dir) / IMPORT_RECORD
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def materialise_gguf(name: str, cache_dir: Path) -> ImportedModel:
    """The converted checkpoint of GGUF/Ollama source ``name`` under ``cache_dir`` (converted on first use).

    Under a launcher every process resolves the same model into the same cache at once. One converts, holding
    ``CACHE/gguf/STEM-KEY.lock``; the others wait for it and then read its conversion (converting again would
    replace the directory another process is already loading, and hold a float32 copy of the model per
    process). The lock is the kernel's (flock), so a killed converter leaves none held.
    """
    path = gguf_file_of(name)
    target = imported_dir(path, cache_dir)
    converted = _converted(target)
    if converted is not None:
        return converted
    # The header read here and the conversion's reads share one parse (taken before the file lock, as every
    # conversion in this process takes them).
    with _one_reader_per_file():
        info = read_gguf_info(path)
        check_architecture(info)  # from the header: a refused file leaves the cache as it was
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.with_name(target.name + ".lock"))):
            converted = _converted(target)  # converted by the process that held the lock before this one
            return converted if converted is not None else _convert_announced(name, path, info, target)


def _converted(target: Path) -> ImportedModel | None:
    record = read_import_record(target)
    if record is not None and (target / "config.json").is_file():
        return ImportedModel(target, record)
    return None


def _convert_announced(name: str, path: Path, info: GGUFInfo, target: Path) -> ImportedModel:
    log.warning("%s: converting %s %s GGUF to a float32 checkpoint in %s (once); training starts from these "
                "dequantised weights, which carry the file's %s rounding", name, info.architecture,
                info.quantization, target, info.quantization)
    return convert_gguf(path, target, source=name, info=info)


def dequantisation_note(record: dict[str, Any]) -> str:
    """One plain sentence about where a converted model's weights came from."""
    return (f"model from {record.get('source')} ({record.get('architecture')}, {record.get('quantization')}): "
            f"training starts from weights dequantised to {record.get('dequantized_to', 'float32')}, "
            f"not the original full-precision model")

