"""Deduplicating preference data: records that teach opposite lessons, then exact copies.

A :data:`Group` is what one raw record became: one record, or two for a pair read as KTO data (its chosen side
desirable, its rejected side undesirable), which stay together. Text is compared as SFT deduplication compares it
(:func:`dsft.data.clean.dedup_key`: case, Unicode form and whitespace runs ignored).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from dsft.data.clean import Removed, dedup_key
from dsft.data.conversation import Conversation
from dsft.data.ledger import Ledger
from dsft.data.preference import PreferenceRecord, same_sides_problem
from dsft.data.split import SPLITS

Group = list[PreferenceRecord]  # the records one raw record became (two for a pair read as KTO data)


def as_conversation(group: Group) -> Conversation:
    """One conversation standing for a group: its prompt, then every record's completions (as ledger entry
    and as the unit the split orders and stratifies)."""
    first = group[0]
    return Conversation([*first.prompt, *(m for r in group for m in r.completions())], first.tools, first.meta)


def as_read(group: Group) -> dict[str, Any]:
    """The record ``group`` was read as, in its canonical JSON form (:meth:`PreferenceRecord.to_dict`): a pair read as
    KTO data is written back as the pair (``chosen`` its desirable completion, ``rejected`` its undesirable one).

    >>> from dsft.data.conversation import Message as M
    >>> halves = [PreferenceRecord("labeled", [M("user", "q")], completion=M("assistant", text), label=label)
    ...           for text, label in (("good", True), ("bad", False))]
    >>> as_read(halves)
    {'prompt': [{'role': 'user', 'content': 'q'}], 'chosen': [{'role': 'assistant', 'content': 'good'}], \
'rejected': [{'role': 'assistant', 'content': 'bad'}]}
    """
    if len(group) == 1:
        return group[0].to_dict()
    desirable, undesirable = group  # split_pair_for_kto's order
    return PreferenceRecord("pair", desirable.prompt, chosen=desirable.completion, rejected=undesirable.completion,
                            tools=desirable.tools, meta=dict(desirable.meta)).to_dict()


def removal(group: Group, reason: str) -> Removed:
    """``group`` removed for ``reason``: a ledger entry standing for it by one conversation, holding the record."""
    return Removed(as_conversation(group), reason, record=as_read(group))


def same_sides(group: Group, after: str | None = None, as_text: bool = False) -> str | None:
    """:func:`dsft.data.preference.same_sides_problem` on a pair, or on a pair read as KTO data (its two halves,
    one desirable and one undesirable); None for any other group. The sides are named where they are in the record
    as written."""
    if len(group) == 2:  # only a pair read as KTO data becomes two records
        first, second = (record.completion for record in group)
        names, labelled = [location for record in group for location in record.side_locations()], True
    else:
        first, second, labelled = group[0].chosen, group[0].rejected, False
        names = group[0].side_locations()
    if first is None or second is None:
        return None
    return same_sides_problem(first, second, labelled, after, as_text, names)


def _text_key(record: PreferenceRecord) -> str:
    """The normalised prompt and completions of ``record`` (:func:`dsft.data.clean.dedup_key`)."""
    return dedup_key(Conversation([*record.prompt, *record.completions()], record.tools))


def _key(group: Group) -> str:
    """What two groups share when one is an exact copy of the other: each record's text key, label and references.

    >>> from dsft.data.conversation import Message as M
    >>> pair = lambda chosen: [PreferenceRecord("pair", [M("user", "q")], M("assistant", chosen), M("assistant", "b"))]
    >>> _key(pair("A")) == _key(pair(" a ")), _key(pair("A")) == _key(pair("c"))
    (True, False)
    """
    return "\x1b".join(f"{_text_key(record)}\x1c{record.label}\x1c{json.dumps(record.references, sort_keys=True)}"
                        for record in group)


_LABEL_WORD = {True: "desirable", False: "undesirable"}
_DEDUP_ORDER = ("test", "val", "train")  # evaluation splits first: of two copies, theirs is kept
_Claims = dict[tuple[str, str], list[tuple[int, str]]]  # claim -> the groups making it: (id(group), origin)


def _claim(record: PreferenceRecord, flipped: bool = False) -> tuple[str, str] | None:
    """What ``record`` teaches, as a key on :func:`dsft.data.clean.dedup_key` (``flipped``: the opposite lesson): a
    KTO record its completion's label, a pair its chosen side over its rejected one; None for a prompt (GRPO).

    >>> from dsft.data.conversation import Message as M
    >>> kto = PreferenceRecord("labeled", [M("user", "q")], completion=M("assistant", "A"), label=True)
    >>> _claim(kto)[1], _claim(kto, flipped=True)[1]
    ('desirable', 'undesirable')
    >>> pair = lambda chosen, rejected: PreferenceRecord("pair", [M("user", "q")], chosen=M("assistant", chosen),
    ...                                                  rejected=M("assistant", rejected))
    >>> _claim(pair("A", "B")) == _claim(pair("B", "A"), flipped=True) != _claim(pair("B", "A"))
    True
    """
    if record.label is not None:
        return _text_key(record), _LABEL_WORD[record.label != flipped]
    if record.chosen is None or record.rejected is None:
        return None
    first, second = (record.rejected, record.chosen) if flipped else (record.chosen, record.rejected)
    return dedup_key(Conversation([*record.prompt, first, second], record.tools)), "pair"


def _origin(group: Group) -> str:
    """Where ``group`` was read (``file:line``)."""
    return str(group[0].meta.get("origin"))


def _claims(pools: dict[str, list[Group]]) -> _Claims:
    """Every claim (:func:`_claim`) the groups of ``pools`` make, with the groups making it, in reading order
    (evaluation splits first).

    >>> from dsft.data.conversation import Message as M
    >>> kto = lambda label, line: [PreferenceRecord("labeled", [M("user", "q")], completion=M("assistant", "A"),
    ...                                             label=label, meta={"origin": f"k:{line}"})]
    >>> claims = _claims({"train": [kto(True, 1), kto(True, 2)], "val": [kto(False, 3)], "test": []})
    >>> [(word, [origin for _, origin in makers]) for (_, word), makers in claims.items()]
    [('undesirable', ['k:3']), ('desirable', ['k:1', 'k:2'])]
    """
    claims: _Claims = defaultdict(list)
    for group in (group for name in _DEDUP_ORDER for group in pools[name]):
        for claim in filter(None, map(_claim, group)):
            claims[claim].append((id(group), _origin(group)))
    return claims


def _contradiction(group: Group, claims: _Claims) -> tuple[str, str] | None:
    """The step and reason removing ``group`` when another group read teaches the opposite of one of its records
    (KTO: the same prompt and completion labelled desirable and undesirable; DPO/ORPO: the same prompt preferring B
    over A where this prefers A over B), naming the first such group; else None.

    >>> from dsft.data.conversation import Message as M
    >>> kto = lambda label, line: [PreferenceRecord("labeled", [M("user", "q")], completion=M("assistant", "A"),
    ...                                             label=label, meta={"origin": f"k:{line}"})]
    >>> pools = {"train": [kto(True, 1), kto(False, 2)], "val": [], "test": []}
    >>> _contradiction(pools["train"][0], _claims(pools))
    ('label_conflict', 'label conflicts with k:2: same prompt and completion marked undesirable there')
    """
    for record in group:
        opposite = _claim(record, flipped=True)
        others = [origin for owner, origin in claims.get(opposite, []) if owner != id(group)] if opposite else []
        if not others:
            continue
        if record.label is not None:
            return "label_conflict", (f"label conflicts with {others[0]}: same prompt and completion marked "
                                      f"{opposite[1]} there")
        return "preference_conflict", (f"preference conflicts with {others[0]}: same prompt and completions, chosen "
                                       f"and rejected the other way round there")
    return None


def _conflict(group: Group, claims: _Claims) -> tuple[str, str] | None:
    """The step and reason removing ``group`` for teaching opposite lessons: with another group read
    (:func:`_contradiction`), or with itself, a pair whose chosen and rejected sides are the same text as dedup_key
    compares them (``Paris`` and ``paris``; exactly identical sides are rejected when read), read as DPO/ORPO or KTO
    data; else None.

    >>> from dsft.data.conversation import Message as M
    >>> pair = [PreferenceRecord("pair", [M("user", "q")], chosen=M("assistant", "Rome"),
    ...                          rejected=M("assistant", "rome"))]
    >>> _conflict(pair, {})
    ('preference_conflict', 'chosen and rejected differ only in case, Unicode form or whitespace: nothing to prefer')
    """
    same = same_sides(group, as_text=True)
    if same:
        return ("preference_conflict" if group[0].label is None else "label_conflict"), same
    return _contradiction(group, claims)


def _why_removed(group: Group, key: str, claims: _Claims, kept: dict[str, str], exact: bool) -> tuple[str, str] | None:
    """The step and reason removing ``group`` (whose :func:`_key` is ``key``): a conflict (:func:`_conflict`), else,
    with ``exact``, being a copy of a group already ``kept`` (its key -> its origin); None when it stays.

    >>> from dsft.data.conversation import Message as M
    >>> pair = [PreferenceRecord("pair", [M("user", "q")], chosen=M("assistant", "A"), rejected=M("assistant", "B"))]
    >>> kept = {_key(pair): "p:1"}
    >>> _why_removed(pair, _key(pair), {}, kept, exact=True), _why_removed(pair, _key(pair), {}, kept, exact=False)
    (('exact_dedup', 'exact duplicate of p:1'), None)
    """
    conflict = _conflict(group, claims)
    if conflict is not None:
        return conflict
    original = kept.get(key) if exact else None
    return ("exact_dedup", f"exact duplicate of {original}") if original is not None else None


def deduplicate(pools: dict[str, list[Group]], ledger: Ledger, exact: bool = True) -> dict[str, list[Group]]:
    """Records that contradict each other, then exact duplicates (prompt and completions, normalised as for SFT).

    A completion labelled desirable in one record and undesirable in another with the same prompt (KTO) removes
    every record holding it (``label_conflict``, naming the other record), and so does a pair preferring A over B
    where another prefers B over A (DPO/ORPO, ``preference_conflict``), whatever ``exact``: trained, they would
    push the model towards and away from the same text. With ``exact`` (``data.clean.exact_dedup``), a copy of a
    kept record is removed (``exact_dedup``); eval splits keep theirs first.

    >>> from dsft.data.conversation import Message as M
    >>> pair = lambda line: [PreferenceRecord("pair", [M("user", "q")], chosen=M("assistant", "A"),
    ...                                       rejected=M("assistant", "B"), meta={"origin": f"p:{line}"})]
    >>> ledger = Ledger()
    >>> {name: len(part) for name, part in deduplicate({"train": [pair(1)], "val": [pair(2)], "test": []},
    ...                                                ledger).items()}
    {'train': 0, 'val': 1, 'test': 0}
    >>> [item.reason for item in ledger.removed["exact_dedup"]]
    ['exact duplicate of p:2']
    """
    claims = _claims(pools)
    kept: dict[str, str] = {}  # _key -> the origin of the group kept
    out: dict[str, list[Group]] = {name: [] for name in SPLITS}
    for name in _DEDUP_ORDER:
        for group in pools[name]:
            key = _key(group)
            removed = _why_removed(group, key, claims, kept, exact)
            if removed is not None:
                ledger.remove(removed[0], removal(group, removed[1]))
                continue
            kept.setdefault(key, _origin(group))
            out[name].append(group)
    return out
