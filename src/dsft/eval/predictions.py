"""Read a predictions JSONL file and score it (``dsft metrics``).

Each line is an object with ``prediction`` and ``reference`` (strings; numbers are accepted and written
as text; or a list of acceptable references, under ``reference`` or ``references``, scored as
:mod:`dsft.eval.scoring` says), optionally ``choices`` (a list of option texts, or an object ``{"A": text, ...}``;
an empty one is none), ``label`` and ``prompt_opened_think`` (true when the prompt ended inside ``<think>``, as ``dsft eval`` records for
R1 models). The ``predictions.jsonl`` that ``dsft eval`` writes is such a file.

Bad lines never stop scoring: each is skipped and counted under its reason (``malformed JSON``,
``not a JSON object``, ``missing prediction``, ``missing reference``, ``prediction is not text``,
``empty reference`` (blank, or nothing outside its ``<think>`` block; in a list, any of them), ``choices is not a
list``, ``not UTF-8 text``, ``reference is NaN or infinite, not text`` (the bare ``NaN`` that ``json.dumps`` writes for a float
NaN, pandas' missing value, is no answer to score nor one to score against; so for ``label is NaN ...`` and
``choices: an option is NaN ...``), ``empty label`` (blank, a CSV's empty cell), ...); a file in which no line can
be scored is refused, and so is one with a list of references that is empty or holds anything but text, naming
its line.
Blank lines are not records and are ignored. An empty or blank prediction is scored, as an empty
answer, the way ``dsft eval`` scores a generation that said nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsft.disk import not_a_file_reason
from dsft.errors import DataError, DsftError
from dsft.eval.reasoning import parse_output
from dsft.eval.scoring import Sample, missing_choice_or_label, not_text_reason, record_choices, score_samples
from dsft.text_encoding import encoding_hint


def _text_field(record: dict[str, Any], key: str) -> tuple[str | None, str | None]:
    """(value, skip reason): strings as they are, numbers as text, anything else a reason."""
    if key not in record or record[key] is None:
        return None, f"missing {key}"
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"{key} is not text"
    if reason := not_text_reason(value, key):  # a bare NaN/Infinity: a missing value, not "nan"
        return None, reason
    return str(value), None


_JSON_KINDS = {bool: "true or false", int: "a number", float: "a number", type(None): "null", list: "a list",
               dict: "an object"}


def _reference_field(record: dict[str, Any]) -> tuple[str | list[str] | None, str | None]:
    """(the reference or the list of acceptable references, skip reason): ``reference`` or ``references``, each text
    or a list of texts. A list that is empty or holds anything but text, or both keys, is no line to skip but a file
    written another way: :class:`DataError` (the caller names the line)."""
    if record.get("reference") is not None and record.get("references") is not None:
        raise DataError("both 'reference' and 'references'; give the acceptable references in one of them")
    key = "references" if record.get("references") is not None else "reference"
    value = record.get(key)
    if not isinstance(value, list):
        return _text_field(record, key)
    if not value:
        raise DataError(f"{key!r} is an empty list; give at least one reference")
    for number, item in enumerate(value, start=1):
        if not isinstance(item, str):
            raise DataError(f"{key!r}: item {number} is {_JSON_KINDS.get(type(item), 'not text')}, not text; each "
                            'acceptable reference is a string: {"references": ["a", "b"]}')
    return list(value), None


def sample_from_record(record: Any) -> tuple[Sample | None, str | None]:
    """A :class:`Sample` from one parsed line, or the reason it cannot be scored."""
    if not isinstance(record, dict):
        return None, "not a JSON object"
    prediction, reason = _text_field(record, "prediction")
    if reason:
        return None, reason
    reference, reason = _reference_field(record)
    if reason:
        return None, reason
    assert prediction is not None and reference is not None
    # An empty prediction is an answer (the model said nothing) and scores 0, as in dsft eval; a
    # reference with nothing outside its think block leaves nothing to score against.
    if not all(parse_output(text).answer for text in ([reference] if isinstance(reference, str) else reference)):
        return None, "empty reference"
    choices, reason = record_choices(record)
    if reason := reason or missing_choice_or_label(record):
        return None, reason
    label = record.get("label")
    return Sample(
        prediction=prediction,
        reference=reference,
        choices=choices,
        label=None if label is None else str(label),
        prompt_opened_think=bool(record.get("prompt_opened_think", False)),
    ), None


# Other tools' names for the two fields (``dsft metrics`` names them when no line can be scored; never read as them).
_OTHER_NAMES = {
    "prediction": ("pred", "preds", "predicted", "predictions", "output", "outputs", "response", "generation",
                   "generated", "generated_text", "completion", "model_output", "model_answer", "hypothesis"),
    "reference": ("ref", "refs", "target", "targets", "gold", "answer", "answers", "ground_truth",
                  "expected", "expected_output", "truth"),
}


def read_predictions(path: str | Path) -> tuple[list[Sample], Counter[str]]:
    """Samples from a JSONL file and a count of skipped lines per reason. Missing file -> DsftError."""
    samples, skipped, _, _ = _read_predictions(Path(path))
    return samples, skipped


def _read_predictions(path: Path) -> tuple[list[Sample], Counter[str], dict[str, int], tuple[int, list[str]] | None]:
    """:func:`read_predictions`, the line number (1-based) of the first line skipped for each reason, and the line
    number and keys of the first object that lacks a prediction or a reference."""
    missing_keys: tuple[int, list[str]] | None = None
    if not path.is_file():
        raise DsftError(f"predictions file {path}: {not_a_file_reason(path)}")
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    first: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle):
            reason: str | None = None
            try:  # decoded strictly: replacement characters would be scored as if they were the answer's text
                line = raw.decode("utf-8-sig" if number == 0 else "utf-8")
            except UnicodeDecodeError:
                reason = "not UTF-8 text"
            else:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    reason = "malformed JSON"
                else:
                    try:
                        sample, reason = sample_from_record(record)
                    except DataError as exc:
                        raise DataError(f"predictions file {path}, line {number + 1}: {exc}") from None
                    if sample is not None:
                        samples.append(sample)
                    elif reason in ("missing prediction", "missing reference") and missing_keys is None:
                        missing_keys = number + 1, [str(key) for key in record]
            if reason is not None:
                skipped[reason] += 1
                first.setdefault(reason, number + 1)
    return samples, skipped, first, missing_keys


def score_predictions_file(path: str | Path, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``dsft metrics`` result: aggregate metrics plus ``skipped`` ({reason: count}, lines and
    per-metric exclusions together). A file with no line that can be scored is refused: it is not a
    predictions file (a data file given by mistake, another encoding), and a table of dashes would pass for a
    result."""
    samples, skipped, first, missing_keys = _read_predictions(Path(path))
    if not samples:
        raise DataError(_nothing_to_score(Path(path), skipped, first) + _keys_hint(missing_keys))
    result = score_samples(samples, metrics)
    out = dict(result.aggregate)
    out["skipped"] = dict(sorted((skipped + result.skipped).items()))
    return out


def _nothing_to_score(path: Path, skipped: Counter[str], first: dict[str, int]) -> str:
    """Why ``path`` gave no sample: empty, or every line skipped (the reasons, each with the line of its first, and
    the encoding if not UTF-8)."""
    needs = "each line needs a prediction and a reference, as in the predictions.jsonl dsft eval writes"
    if not skipped:
        return f"predictions file {path}: holds no lines to score; {needs}"
    reasons = "; ".join(f"{reason} {count}, first at line {first[reason]}" for reason, count in skipped.most_common())
    with path.open("rb") as handle:
        hint = encoding_hint(handle.read(65536)) if "not UTF-8 text" in skipped or "malformed JSON" in skipped else ""
    if not hint and _is_one_json_array(path):
        hint = ("; the file is one JSON array, not JSON Lines: write one object per line (e.g. jq -c '.[]' "
                f"{path} > predictions.jsonl)")
    return f"predictions file {path}: no line can be scored ({reasons}); {needs}{hint}"


def _keys_hint(missing_keys: tuple[int, list[str]] | None) -> str:
    """The keys of the first line that lacks a field, and which of them look like another tool's name for one.

    >>> _keys_hint((1, ["pred", "ref", "id"]))
    "; line 1 has keys 'pred', 'ref', 'id': rename 'pred' to 'prediction', 'ref' to 'reference'"
    >>> _keys_hint((4, ["prompt", "completion"]))
    "; line 4 has keys 'prompt', 'completion'"
    """
    if missing_keys is None:
        return ""
    number, keys = missing_keys
    hint = f"; line {number} has keys {', '.join(repr(key) for key in keys) or 'none'}"
    renames = {field: key for key in keys for field, names in _OTHER_NAMES.items()
               if field not in keys and key.lower() in names}
    if len(renames) + sum(field in keys for field in _OTHER_NAMES) < len(_OTHER_NAMES):
        return hint  # not both fields even renamed (a training file's prompt/completion): no guess
    return hint + ": rename " + ", ".join(f"{key!r} to {field!r}" for field, key in renames.items())


def _is_one_json_array(path: Path) -> bool:
    """Whether the whole file is one JSON array (a .json export, one line or pretty-printed); read whole only when it
    begins with ``[`` and no line could be scored."""
    with path.open("rb") as handle:
        if not handle.read(4096).decode("utf-8-sig", "replace").lstrip().startswith("["):
            return False
    try:
        return isinstance(json.loads(path.read_bytes().decode("utf-8-sig")), list)
    except (UnicodeDecodeError, json.JSONDecodeError, MemoryError):
        return False
