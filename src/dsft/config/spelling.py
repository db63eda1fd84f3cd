"""Which accepted key an unknown one is a slip of: the did-you-mean of every unknown-name message (config keys,
serve request fields, ``lora.targets`` module names, ``data.columns`` keys and data records' field names).

A slip is a few typed characters away from the key (a letter dropped, doubled, swapped or mistyped), or the
key's start written alone (``warmup`` for ``warmup_ratio``). A likeness score such as difflib's ratio also
pairs different words that share letters (a tracker's ``project`` with ``objective``, TrainingArguments'
``hub_revision`` with ``precision``), sending the user to a key that does something else.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SHORTEST_PREFIX = 4  # characters: a shorter start (``lr``, ``eval``) begins too many keys to say which was meant


def edits(a: str, b: str) -> int:
    """Single-character edits (insert, delete, replace, swap of neighbours) that turn ``a`` into ``b``.

    >>> edits("trian", "train"), edits("methd", "method"), edits("project", "objective")
    (1, 1, 6)
    """
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, other in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (char != other))
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[-1]


def allowed_edits(word: str) -> int:
    """How many edits a slip of ``word`` may hold: one per four characters, at least one.

    >>> allowed_edits("methd"), allowed_edits("instrution"), allowed_edits("hub_revision")
    (1, 2, 3)
    """
    return max(1, len(word) // 4)


def meant_key(word: str, keys: Iterable[str], any_case: bool = False) -> str | None:
    """The key ``word`` is a slip of, else None; of several, the fewest edits away (then the likeliest by difflib).
    With ``any_case``, for names whose case is part of the name (a data file's ``Complex_CoT``), a change of case
    costs no edit.

    >>> meant_key("methd", ["method", "objective"]), meant_key("instrution", ["instruction", "input"])
    ('method', 'instruction')
    >>> meant_key("project", ["objective", "method"]), meant_key("hub_revision", ["precision", "seed"])
    (None, None)
    >>> meant_key("warmup", ["warmup_ratio", "weight_decay"])
    'warmup_ratio'
    >>> meant_key("respone", ["Question", "Response"], any_case=True), meant_key("question_id", ["Question"], any_case=True)
    ('Response', None)
    """
    keys = list(keys)
    if any_case:
        spelt = {key.lower(): key for key in keys}
        meant = meant_key(word.lower(), spelt)
        return None if meant is None else spelt[meant]
    slips = [(edits(word, key), key) for key in keys]
    close = [(n, key) for n, key in slips if n <= allowed_edits(word)]
    if close:
        fewest = min(n for n, _ in close)
        tied = [key for n, key in close if n == fewest]
        return max(tied, key=lambda key: difflib.SequenceMatcher(None, word, key).ratio())
    starts = [key for key in keys if len(word) >= SHORTEST_PREFIX and key.startswith(word)]
    return starts[0] if len(starts) == 1 else None
