"""Keep every request inside the runs root: resolve, then check the prefix (symlinks included)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from dsft.config import DsftConfig
from dsft.config.loader import PATH_KEYS, validate_config
from dsft.errors import DsftError


class OutsideRoot(DsftError):
    """A request named a path that is not inside the runs root (or does not exist there)."""


# Longer names are cut in a refusal (characters): one may hold megabytes.
_NAME_SHOWN = 60


def inside_root(root: Path, relative: str, must_exist: bool = True, field: str = "") -> Path:
    """``root / relative`` resolved; refused when absolute, empty, or resolving (through ``..`` or a
    symlink) to anywhere outside ``root``. ``field``: the form field that named it, which the refusal names
    first (``model nope: no such file ...``). A name no file system holds (a NUL, a part over 255 bytes, a lone
    UTF-16 surrogate such as ``"\\ud800"`` from JSON) is refused as such, a :class:`DsftError`, not a 500."""
    if not relative:
        raise OutsideRoot(f"{field}: empty; name a path under the runs root" if field else "empty path")
    shown_name = relative if len(relative) <= _NAME_SHOWN else f"{relative[:_NAME_SHOWN]}... ({len(relative)} chars)"
    named = f"{field} {shown_name}" if field else shown_name
    if "\x00" in relative:
        raise DsftError(f"{field or 'path'}: holds a NUL character (at {relative.index(chr(0))}), which no path can")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or (pure.parts and ":" in pure.parts[0]):
        raise OutsideRoot(f"{named}: give a path relative to the runs root")
    base = root.resolve()
    try:
        target = (base / pure).resolve()
        exists = target.exists()
    except UnicodeEncodeError:  # os.fsencode: a surrogate outside surrogateescape's range
        at = next(i for i, char in enumerate(relative) if "\ud800" <= char <= "\udfff")
        raise DsftError(f"{named}: not a path: it holds a lone UTF-16 surrogate, half of a character "
                        f"(at {at})") from None
    except OSError as exc:  # ENAMETOOLONG: a part over the file system's 255 bytes, or the whole over 4096
        raise DsftError(f"{named}: not a path this machine can hold ({exc.strerror})") from None
    if target != base and base not in target.parents:
        raise OutsideRoot(f"{named}: outside the runs root")
    if must_exist and not exists:
        raise OutsideRoot(f"{named}: no such file or directory under the runs root")
    return target


def relative_name(root: Path, path: Path) -> str:
    """``path`` as the posix path relative to ``root`` that requests use."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def shown(root: Path, text: str) -> str:
    """``text`` with every path under the runs root written relative to it, as the forms take them and as the CLI
    names them run in the root (``/srv/runs/uploads/d.jsonl:3`` -> ``uploads/d.jsonl:3``): the commands the
    dashboard starts get absolute paths, so what they write and say (rejects, errors, run.json) holds those."""
    for prefix in {f"{root.resolve()}/", f"{Path(root).absolute()}/"}:
        text = text.replace(prefix, "")
    return text


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"data.val": [...], ...}``: the config's values by dotted key."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _looks_like_path(value: str) -> bool:
    if "://" in value or value.startswith("ollama:"):
        return False  # an endpoint URL, an Ollama name: not files of this machine
    return "/" in value or "\\" in value or value.startswith(("~", "."))


def config_paths_inside(root: Path, cfg: Any, defaults: Any) -> None:
    """Refuse a config built from a request whose path values (files, directories, caches) leave the root.

    Every value the request changed from ``defaults`` that looks like a path must lie inside ``root``
    (relative ones are relative to the root, where the dashboard starts its processes), so a ``key=value``
    line cannot make training or data preparation read or write elsewhere."""
    base = root.resolve()
    before = _leaves(defaults.model_dump(mode="json"))
    for key, value in _leaves(cfg.model_dump(mode="json")).items():
        if value == before.get(key):
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not _looks_like_path(item):
                continue
            path = Path(item).expanduser()
            resolved = (path if path.is_absolute() else base / path).resolve()
            if resolved != base and base not in resolved.parents:
                raise OutsideRoot(f"{key}: {item} is outside the runs root; the dashboard reads and writes only "
                                  "under it")


def _absolute_under(base: Path, node: Any, parts: list[str]) -> Any:
    """``node`` with the relative paths at the dotted ``parts`` below it made absolute under ``base``."""
    if not parts:
        if isinstance(node, list):
            return [_absolute_under(base, item, []) for item in node]
        if isinstance(node, str) and node and not Path(node).expanduser().is_absolute():
            return str(base / node)
        return node
    if parts[0] == "*":
        return [_absolute_under(base, item, parts[1:]) for item in node] if isinstance(node, list) else node
    if isinstance(node, dict) and parts[0] in node:
        node[parts[0]] = _absolute_under(base, node[parts[0]], parts[1:])
    return node


def paths_under_root(root: Path, cfg: DsftConfig) -> DsftConfig:
    """``cfg`` with every relative path (the schema's path keys, :data:`dsft.config.loader.PATH_KEYS`) made
    absolute under ``root``: the dashboard's runs run there, so that is where a relative path typed in a form
    means; resolved before the form's checks, which would otherwise look for it in the dashboard's own current
    directory."""
    raw = cfg.model_dump(mode="json")
    base = root.resolve()
    for key in PATH_KEYS:
        _absolute_under(base, raw, key.split("."))
    return validate_config(raw)
