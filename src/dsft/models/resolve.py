"""Turn ``model.name_or_path`` into a local checkpoint directory.

Four kinds of names, tried in this order:

1. a built-in tiny preset (``tiny-deepseek-v3``, ...): written once under the cache directory and
   reused; written to a temporary directory and renamed, so an interrupted write never leaves a
   half-written model that a later run would load;
2. a ``.gguf`` file or ``ollama:NAME[:TAG]``: converted once into ``CACHE/gguf/`` (see
   :mod:`dsft.models.gguf_source`);
3. a local directory holding ``config.json``: used as is;
4. a hub id ``org/name``: downloaded with ``huggingface_hub.snapshot_download`` (weights, config,
   tokenizer; no other files). Where ``org/`` is a local directory the name is a mistyped local path
   (``runs/my-rnu``) and is refused without a download.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dsft.disk import file_as_directory_reason
from dsft.errors import DsftError
from dsft.models.gguf_source import gguf_file_of, is_gguf_source, materialise_gguf
from dsft.models.loading import TOKENIZER_VOCAB_FILES, hide_local_weight_bars
from dsft.models.ollama_tags import ollama_tag_problem
from dsft.models.presets import REAL_MODEL_FACTS, REAL_MODEL_PRESETS
from dsft.models.tiny import TINY_PRESETS, write_tiny

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# Only what loading needs: skip the original/ PyTorch .bin / GGUF copies some repos carry.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.tiktoken"]


def default_cache_dir() -> Path:
    """``$DSFT_CACHE`` if set, else ``~/.cache/dsft``."""
    env = os.environ.get("DSFT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dsft"


def not_a_directory(path: Path) -> Path | None:
    """The first part of ``path`` that exists and is not a directory (a file where a folder must be), else None:
    for ``f/tiny`` where ``f`` is a file, ``f``; for ``new/tiny`` where neither exists, None."""
    for part in [path, *path.parents]:
        if part.exists():
            return None if part.is_dir() else part
    return None


def check_cache_dir(base: Path, cache_dir: str | Path | None = None) -> None:
    """Refuse a model cache that cannot hold directories, naming what set it (``model.cache_dir``, ``$DSFT_CACHE``
    or the default): every preset and conversion failed with a bare ``CACHE/tiny: Not a directory``."""
    blocker = not_a_directory(base)
    if blocker is None:
        return
    source = ("model.cache_dir" if cache_dir else "DSFT_CACHE" if os.environ.get("DSFT_CACHE")
              else "the default model cache (set DSFT_CACHE to move it)")
    where = f"{base}" if blocker == base else f"{base}: {blocker}"
    raise DsftError(f"{source}: {where} is a file, not a directory; the model cache must be a directory (point it "
                    "elsewhere, or move the file)")


def tiny_preset_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where tiny preset ``name`` lives once materialised: ``CACHE/tiny/NAME``."""
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return base / "tiny" / name


def _is_complete(directory: Path) -> bool:
    return all((directory / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json"))


def materialise_tiny(name: str, cache_dir: str | Path | None = None) -> Path:
    """Write tiny preset ``name`` under the cache once (atomically) and return its directory."""
    final = tiny_preset_dir(name, cache_dir)
    if _is_complete(final):
        return final
    check_cache_dir(final.parent.parent, cache_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    hide_local_weight_bars()
    try:
        write_tiny(name, staging)
        if final.exists() and not _is_complete(final):
            # Only a hand-edited or foreign directory can be incomplete (ours appear by rename): replace it.
            shutil.rmtree(final)
        try:
            staging.rename(final)
        except OSError:
            # Another process renamed its complete copy into place first: use that one.
            if not _is_complete(final):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def resolve_model(name_or_path: str | Path, cache_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """Return a local HF checkpoint directory for a tiny preset, a GGUF file / Ollama name, a directory or a hub id.

    ``cache_dir`` holds tiny presets (under ``tiny/``), converted GGUF models (under ``gguf/``) and hub
    downloads (under ``hub/``); default
    ``$DSFT_CACHE`` or ``~/.cache/dsft`` for presets, and for hub downloads ``$DSFT_CACHE/hub`` if set,
    else the standard Hugging Face cache. Raises :class:`DsftError` for anything that cannot be resolved.
    """
    name = str(name_or_path)
    if name in TINY_PRESETS:
        return materialise_tiny(name, cache_dir)
    if is_gguf_source(name):
        return materialise_gguf(name, Path(cache_dir).expanduser() if cache_dir else default_cache_dir()).model_dir
    check_model_name(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    return download_from_hub(name, cache_dir, revision)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a hub id (``org/name``), not of a local path (``./x``, ``/x``, ``~/x``).

    >>> is_hub_id("deepseek-ai/DeepSeek-R1"), is_hub_id("./models/x"), is_hub_id("runs/qa/final")
    (True, False, False)
    """
    return bool(HUB_ID.match(name)) and not name.startswith((".", "/", "~"))


def _what_it_holds(directory: Path) -> str:
    """`` (runs/ holds my-run, qa)``, the suggestions a missing path's message carries; empty where ``directory``
    cannot be listed (no permission to read it), which leaves the message without them rather than a traceback."""
    try:
        children = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return ""
    held = ", ".join(children[:8]) + (", ..." if len(children) > 8 else "") if children else "no directories"
    return f" ({directory}/ holds {held})"


def _check_not_a_mistyped_path(name: str) -> None:
    """Refuse ``runs/my-rnu`` (the shape of a hub id) where ``runs/`` is a local directory: a mistyped local
    path far more often than a hub id, and refused here rather than after a failed download."""
    org = Path(name.split("/", 1)[0])
    if not org.is_dir():
        return
    raise DsftError(f"{name}: no such directory{_what_it_holds(org)}; {org}/ is a local directory, "
                    f"so this is not read as a hub id (org/name)")


def _a_file_named_as_a_model(path: Path) -> str:
    """What to name instead of a file given as a model: its directory when the file is one of a model directory's
    (``model.safetensors``, ``config.json``: what a file browser or tab completion hands over), else what a model is."""
    home = path.parent
    if (home / "config.json").is_file():
        return f"{path}: is a file of the model directory {home}; name the directory, {home}"
    if (home / "adapter_config.json").is_file():  # a LoRA run's final/ or checkpoint
        return f"{path}: is a file of the adapter directory {home}; name the directory, {home}"
    return f"{path}: is a file; a model is a directory with config.json, a .gguf file, ollama:NAME[:TAG], a hub id or a preset"


def _check_not_a_missing_deep_path(name: str) -> None:
    """Refuse ``runs/qa/checkpoints/checkpoint-99`` (no hub id: more than two parts, or absolute) naming what its
    nearest existing directory holds, when that is a directory named in the path (not the current one)."""
    path = Path(name).expanduser()
    for parent in path.parents:
        if str(parent) in (".", parent.anchor):
            return
        if parent.is_dir():
            raise DsftError(f"{name}: no such directory{_what_it_holds(parent)}")


def below_a_file(name: str) -> str | None:
    """Why ``name`` names nothing when a file stands where one of its folders would be (``some.gguf/x``,
    ``runs/qa/run.json/final``), else None: a local path, never a hub id to download (``some.gguf/x`` has a hub
    id's shape and was tried on the hub). None for the file itself and for a path through directories only."""
    path = Path(name).expanduser()
    blocker = not_a_directory(path)
    if blocker is None or blocker == path:
        return None
    alone = f"; a .gguf file is named alone: {blocker}" if blocker.suffix.lower() == ".gguf" else ""
    return (f"{name}: {blocker} is a file, not a directory, so nothing lies below it (a local path: not read as a "
            f"hub id, nothing is downloaded){alone}")


def check_model_name(name_or_path: str | Path) -> None:
    """Raise the error :func:`resolve_model` would raise for a name that is none of its four kinds, without
    writing, converting or downloading anything (commands call it before importing torch)."""
    name = str(name_or_path)
    if name in TINY_PRESETS:
        return
    if not name.strip():
        raise DsftError("empty; name a model: a local directory, a .gguf file, ollama:NAME[:TAG], a hub id (org/name) "
                        f"or a tiny preset ({', '.join(TINY_PRESETS)})")
    if is_gguf_source(name):
        gguf_file_of(name)  # the file, or the Ollama model's blob, exists
        return
    if reason := file_as_directory_reason(os.path.expanduser(name)):  # m.gguf/: Path() would drop the slash
        raise DsftError(f"{name}: {reason}")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DsftError(f"{path}: not a Hugging Face model directory (no config.json)")
        return
    if path.exists():
        raise DsftError(_a_file_named_as_a_model(path))
    if problem := below_a_file(name):
        raise DsftError(problem)
    if problem := ollama_tag_problem(name):  # deepseek-r1:32b, as `ollama run` takes it
        raise DsftError(f"model {name!r}: {problem}")
    if is_hub_id(name):
        _check_not_a_mistyped_path(name)
        return
    _check_not_a_missing_deep_path(name)
    if name in REAL_MODEL_FACTS:
        raise DsftError(f"model {name!r} is a real-model config preset (numbers only, for planning); "
                        f"to fine-tune it use its hub id {REAL_MODEL_FACTS[name].hub_id!r} or a local copy")
    raise DsftError(
        f"model {name!r}: not a local directory, a .gguf file, ollama:NAME[:TAG], a hub id (org/name) or a "
        f"tiny preset; "
        f"tiny presets: {', '.join(TINY_PRESETS)} (`dsft models list` shows real-model presets too)"
    )


# A checkpoint's weights: one file, or an index naming its shards (transformers' own names).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def is_model_dir(path: Path) -> bool:
    """A directory holding a checkpoint: ``config.json`` beside weights (one file, an index, or shards)."""
    return (path / "config.json").is_file() and (
        any((path / name).is_file() for name in WEIGHT_FILES + WEIGHT_INDEX_FILES) or any(path.glob("*.safetensors")))


def check_model_files(model_dir: str | Path) -> None:
    """Refuse a local model directory that cannot load: no weights, a shard its index names but the directory
    lacks, no tokenizer vocabulary. Cheap (file names only), so commands call it before the data is prepared
    and before torch loads; otherwise the gap shows only once the model loads, after everything before it.
    Names that are no local directory (presets, hub ids, .gguf) are left to :func:`check_model_name`."""
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        return
    problems = []
    indexes = [path / name for name in WEIGHT_INDEX_FILES if (path / name).is_file()]
    if indexes:
        problems += _missing_shards(indexes[0])
    elif not any((path / name).is_file() for name in WEIGHT_FILES):
        problems.append(f"no weights ({', '.join(WEIGHT_FILES + WEIGHT_INDEX_FILES)})")
    if not any((path / name).is_file() for name in TOKENIZER_VOCAB_FILES):
        problems.append(f"no tokenizer files ({', '.join(TOKENIZER_VOCAB_FILES[:3])}, ...)")
    if problems:
        raise DsftError(f"{path}: model directory is incomplete; copy the missing files from where the model came "
                        "from", problems)


def _missing_shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return [f"{index.name}: not a JSON weight index"]
    if not isinstance(weight_map, dict):
        return [f"{index.name}: no weight_map"]
    missing = sorted({str(shard) for shard in weight_map.values() if not (index.parent / str(shard)).is_file()})
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return [f"{index.name} names shard(s) not in the directory: {shown}"]


def peek_model_config(name_or_path: str | Path) -> dict[str, Any] | None:
    """The model's ``config.json`` values without loading weights or downloading anything, for checks that
    run before the model loads: a tiny preset's config, a local directory's config.json, or a real-model
    preset's for its hub id. None when that cannot be known here (an unknown hub id)."""
    name = str(name_or_path)
    if name in TINY_PRESETS:
        return TINY_PRESETS[name].config()
    config = Path(name).expanduser() / "config.json"
    if config.is_file():
        try:
            return dict(json.loads(config.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None  # loading reports it, with the model's own error
    for preset, facts in REAL_MODEL_FACTS.items():
        if facts.hub_id.lower() == name.lower():
            return dict(REAL_MODEL_PRESETS[preset])
    return None


def hub_cache_dir(cache_dir: str | Path | None = None) -> str | None:
    """Where hub downloads go: ``CACHE/hub`` for an explicit cache (argument or ``$DSFT_CACHE``); otherwise
    None, the standard Hugging Face cache, so models other tools already downloaded are not fetched twice."""
    if cache_dir or os.environ.get("DSFT_CACHE"):
        return str((Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "hub")
    return None


def hub_config_cached(repo_id: str, cache_dir: str | Path | None = None, revision: str | None = None) -> bool:
    """Whether hub id ``repo_id``'s ``config.json`` is in the cache :func:`download_from_hub` fills (no network,
    no torch): a check that needs only the config can then run before anything is fetched."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache_dir(cache_dir),
                                             revision=revision), str)


def download_from_hub(repo_id: str, cache_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """Download a hub model's config, tokenizer and safetensors weights; return the snapshot directory."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub_cache = hub_cache_dir(cache_dir)
    # A hub id has the shape of a relative path (runs/002): say it was looked for here too.
    local = f"no local directory {repo_id} (in {Path.cwd()}), and "
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=hub_cache, allow_patterns=HUB_PATTERNS))
    except GatedRepoError as exc:
        raise DsftError(f"model {repo_id!r}: gated on the hub; accept its licence and `hf auth login` ({exc})") from exc
    except RevisionNotFoundError as exc:
        raise DsftError(f"model {repo_id!r}: revision {revision!r} not found on the hub") from exc
    except RepositoryNotFoundError as exc:
        raise DsftError(f"model {repo_id!r}: {local}no such repository on the hub (or it is private: log in)") from exc
    except LocalEntryNotFoundError as exc:
        raise DsftError(
            f"model {repo_id!r}: {local}could not download from the hub and it is not in the cache "
            f"{hub_cache or 'of huggingface_hub (HF_HOME)'} "
            "(offline, or HF_HUB_OFFLINE=1? download it where the hub is reachable and point "
            "model.name_or_path at the directory)"
        ) from exc
    except OSError as exc:  # network errors that surface as connection/IO errors
        raise DsftError(f"model {repo_id!r}: download failed: {exc}") from exc
