"""The search space of a sweep: ``--grid KEY=v1,v2`` choices and ``--range KEY=KIND:LOW:HIGH`` ranges.

A trial is a dict of config overrides ``{"train.lr": 3e-05, "lora.r": 16}``; each becomes ``--set KEY=VALUE``
on top of the sweep's config, so every key ``dsft config show`` lists can be swept and is validated the
same way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dsft.config.loader import parse_override, unknown_key_message
from dsft.errors import ConfigError

RANGE_KINDS = ("float", "log", "int")
# The most corners of a random/TPE search space checked before its first trial (each a config validation and
# preflight, about 2 ms on one CPU core: under 10 s in all); a larger space has each value and bound checked on
# its own only.
MAX_CORNERS = 4096


@dataclass(frozen=True)
class Range:
    """A continuous (or integer) axis for random/TPE search: ``float``, ``log`` (log-uniform) or ``int``."""

    kind: str
    low: float
    high: float

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest value a sampler draws: whole numbers for ``int``, ``(int(low), int(high))``."""
        return (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)

    def inner(self) -> float | None:
        """A value a ``float`` or ``log`` sampler draws between the bounds that is not a whole number, checked with
        them (a float range on an integer key holds good bounds, 8 and 64, and fails at nearly every draw); None
        for ``int``. It lies 1/e of the way in (in log space for ``log``): not a whole number for typed bounds.

        >>> round(Range("float", 4, 8).inner(), 3), Range("int", 4, 8).inner()
        (5.472, None)
        """
        if self.kind == "int":
            return None
        if self.kind == "log":
            return self.low * (self.high / self.low) ** (1 / math.e)
        return self.low + (self.high - self.low) / math.e

    def text(self, key: str) -> str:
        """The ``--range`` value that gives this axis: ``train.lr=log:1e-05:0.001``."""
        return f"{key}={self.kind}:{self.low:g}:{self.high:g}"


@dataclass
class SearchSpace:
    """Choice axes (``--grid``) and range axes (``--range``), in the order given."""

    choices: dict[str, list[Any]] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.choices) + list(self.ranges)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the choice axes, the first axis varying slowest.

        >>> SearchSpace({"train.lr": [1e-5, 3e-5], "lora.r": [16, 32]}).grid()  # doctest: +NORMALIZE_WHITESPACE
        [{'train.lr': 1e-05, 'lora.r': 16}, {'train.lr': 1e-05, 'lora.r': 32},
         {'train.lr': 3e-05, 'lora.r': 16}, {'train.lr': 3e-05, 'lora.r': 32}]
        """
        if self.ranges:
            raise ConfigError("--range axes need a sampler (--sampler random or tpe); a grid takes --grid values only")
        keys = list(self.choices)
        return [dict(zip(keys, values)) for values in itertools.product(*self.choices.values())]


    def probes(self) -> list[dict[str, Any]]:
        """The trial parameters a random or TPE sweep checks before its first trial: each choice and each bound
        (and :meth:`Range.inner` value) of each range on its own, then, with several axes, every corner of the
        space (every combination of the choices and the bounds), where values good on their own may not be together.

        >>> SearchSpace({"lora.r": [8, 16]}, {"lora.alpha": Range("int", 8, 64)}).probes()[:4]
        [{'lora.r': 8}, {'lora.r': 16}, {'lora.alpha': 8}, {'lora.alpha': 64}]
        >>> len(SearchSpace({"lora.r": [8, 16]}, {"train.lr": Range("log", 1e-5, 1e-3)}).probes())  # 2 + 3 + 2x2
        9
        """
        axes = {**self.choices, **{key: list(axis.bounds()) for key, axis in self.ranges.items()}}
        inner = {key: [] if axis.inner() is None else [axis.inner()] for key, axis in self.ranges.items()}
        alone = [{key: value} for key, values in axes.items() for value in values + inner.get(key, [])]
        if len(axes) < 2 or not self.corners_checked():
            return alone
        return alone + [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def corners(self) -> int:
        """How many corners the space has: every choice value with either bound of every range."""
        return math.prod(len(values) for values in self.choices.values()) * 2 ** len(self.ranges)

    def corners_checked(self) -> bool:
        """Whether :meth:`probes` holds every corner (at most :data:`MAX_CORNERS` of them)."""
        return self.corners() <= MAX_CORNERS


def _split_key(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"{flag} {text!r}: expected KEY=..., e.g. {flag} train.lr=1e-5,3e-5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if "." not in key:
        # The key meant, as a config file names a key put outside its section ('; did you mean 'train.lr'?',
        # '; use train.lr'); not a section the name is close to.
        meant = unknown_key_message((key,)).removeprefix("unknown key")
        raise ConfigError(f"{flag} {text!r}: the key must name a section and a field"
                          f"{meant if '.' in meant else ', e.g. train.lr'}")
    return key, raw


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """``train.lr=1e-5,3e-5`` -> ``("train.lr", [1e-05, 3e-05])``; values are typed like ``--set`` values.

    >>> parse_grid("lora.r=16,32")
    ('lora.r', [16, 32])
    >>> parse_grid("train.lr_scheduler=cosine,linear")
    ('train.lr_scheduler', ['cosine', 'linear'])
    >>> parse_grid("train.lr=[1e-5, 3e-5]")
    Traceback (most recent call last):
    dsft.errors.ConfigError: --grid 'train.lr=[1e-5, 3e-5]': list the values separated by commas, without brackets: --grid train.lr=1e-5,3e-5
    """
    key, raw = _split_key(text, "--grid")
    listed = raw.strip()
    if listed.startswith("[") and listed.endswith("]"):  # a YAML list: its commas are the grid's own
        items = ",".join(item.strip() for item in listed[1:-1].split(",") if item.strip())
        raise ConfigError(f"--grid {text!r}: list the values separated by commas, without brackets: "
                          f"--grid {key}={items}")
    if listed.endswith(","):  # `--grid train.lr=1e-5, 3e-5` unquoted: the shell ended the list at the space
        raise ConfigError(f"--grid {text!r}: ends with a comma, so the values after it were read as other arguments "
                          f"(the shell splits a list at its spaces); {_unsplit(key, [*_items(listed), '...'])}")
    values = []
    for item in (item.strip() for item in raw.split(",")):
        if not item:
            continue
        try:
            values.append(parse_override(f"{key}={item}")[1])
        except ConfigError as exc:  # said of the --grid typed, not of a --set the user never wrote
            raise ConfigError(str(exc).replace(f"--set {f'{key}={item}'!r}", f"--grid {text!r}, value {item!r}",
                                               1)) from None
    if not values:
        raise ConfigError(f"--grid {text!r}: no values; list them separated by commas")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"--grid {text!r}: a value is listed twice")
    return key, values


def _unsplit(key: str, values: Sequence[str] = ("VALUE1", "VALUE2")) -> str:
    """How to write a --grid list so that it stays one argument.

    >>> _unsplit("train.lr", ["1e-5", "3e-5"])
    "write the values without spaces (--grid train.lr=1e-5,3e-5) or quote the list (--grid 'train.lr=1e-5, 3e-5')"
    """
    return (f"write the values without spaces (--grid {key}={','.join(values)}) or quote the list "
            f"(--grid '{key}={', '.join(values)}')")


def extra_words_message(grid: Sequence[str], extra: Sequence[str]) -> str:
    """The refusal of words on a sweep's command line that no argument reads: most often the rest of a ``--grid``
    list that held a space (``--grid train.lr=1e-5, 3e-5``), which the shell split into several words.

    >>> extra_words_message(["train.lr=1e-5,"], ["3e-5"])  # doctest: +NORMALIZE_WHITESPACE
    "dsft sweep: '3e-5': an argument nothing reads; the shell splits a --grid list at its spaces: write the values
    without spaces (--grid train.lr=1e-5,3e-5) or quote the list (--grid 'train.lr=1e-5, 3e-5')"
    >>> extra_words_message(["train.lr=1e-5,"], ["train.epochs=1"])[-81:]
    'spaces: give each key its own --grid (--grid train.lr=1e-5 --grid train.epochs=1)'
    """
    words = ", ".join(repr(word) for word in extra)
    head = f"dsft sweep: {words}: {'an argument' if len(extra) == 1 else 'arguments'} nothing reads"
    if not grid:
        return f"{head}; the command takes one CONFIG"
    keyed = [word for word in extra if "." in word.split("=", 1)[0] and "=" in word]  # a second key's list
    values = [item for word in extra if word not in keyed for item in _items(word)]
    split = [text for text in grid if text.rstrip().endswith(",") or text.split("=", 1)[-1].lstrip().startswith("[")]
    target = split[0] if len(split) == 1 else (grid[0] if len(grid) == 1 else None)
    if keyed:
        first = (f"{target.split('=', 1)[0].strip()}={','.join(_items(target.split('=', 1)[1]))}"
                 if target is not None and "=" in target else "KEY=VALUE1,VALUE2")
        return (f"{head}; the shell splits a --grid list at its spaces: give each key its own --grid (--grid {first} "
                f"--grid {keyed[0].rstrip(',')})")
    if target is None or "=" not in target:
        return f"{head}; the shell splits a --grid list at its spaces: {_unsplit('KEY')}"
    key, raw = target.split("=", 1)
    return f"{head}; the shell splits a --grid list at its spaces: {_unsplit(key.strip(), _items(raw) + values)}"


def _items(text: str) -> list[str]:
    """The values in one word of a split list: ``[1e-5,`` -> ``['1e-5']``."""
    return [item.strip(" []") for item in text.split(",") if item.strip(" []")]


def parse_range(text: str) -> tuple[str, Range]:
    """``train.lr=log:1e-5:1e-3`` -> ``("train.lr", Range("log", 1e-05, 0.001))``.

    >>> parse_range("lora.r=int:8:64")
    ('lora.r', Range(kind='int', low=8.0, high=64.0))
    """
    key, raw = _split_key(text, "--range")
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] not in RANGE_KINDS:
        raise ConfigError(f"--range {text!r}: expected KEY=KIND:LOW:HIGH with KIND one of {', '.join(RANGE_KINDS)}")
    try:
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise ConfigError(f"--range {text!r}: LOW and HIGH must be numbers") from None
    if not low < high or (parts[0] == "log" and low <= 0) or not all(map(math.isfinite, (low, high))):
        raise ConfigError(f"--range {text!r}: need LOW < HIGH (and LOW > 0 for log)")
    if parts[0] == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"--range {text!r}: an int range needs whole-number bounds")
    return key, Range(parts[0], low, high)


def build_space(grid: list[str], ranges: list[str]) -> SearchSpace:
    space = SearchSpace()
    for text in grid:
        key, values = parse_grid(text)
        if key in space.choices:
            raise ConfigError(f"--grid {key}: given twice")
        space.choices[key] = values
    for text in ranges:
        key, axis = parse_range(text)
        if key in space.choices or key in space.ranges:
            raise ConfigError(f"--range {key}: already swept")
        space.ranges[key] = axis
    if not space.keys:
        raise ConfigError("nothing to sweep: give at least one --grid KEY=v1,v2 (or --range with a sampler)")
    return space


def overrides_of(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as ``--set`` overrides (values written so ``parse_override`` reads them back)."""
    return [f"{key}={_literal(value)}" for key, value in params.items()]


def _literal(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # 1e-05, 0.0003: read back as floats
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
