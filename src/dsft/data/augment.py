"""Data augmentation of the train split: synonym replacement, paraphrase and back-translation.

Each method rewrites the last user turn (the question) of a train record and keeps its answer, so the
new record asks the same thing in other words. Every generated record names its method and parent in
``meta`` (``augment_method``, ``augment_parent``, and ``augment_family``: the parent's content id, which keeps
a parent and its children on one side of any later split, see :func:`dsft.data.split.with_families`; flat
scalar keys, so they survive being written and read again)
and its ``origin`` is ``"<parent origin> <method> <n>"``. Generated records that are near-duplicates of
an existing record or of an earlier generated one are dropped and counted
(:func:`dsft.data.near_dedup.drop_near_copies`). Accounting: every generated record is ``added`` under
``augment_<method>``; the dropped ones are ``removed`` under ``augment_near_duplicate``; attempts that
produced nothing (no replaceable word, an endpoint failure, an empty reply) are counted in ``skipped``
by reason, outside the ledger, since no record came of them.

Template filling from tables is :mod:`dsft.data.table_templates`; the endpoint client is
:mod:`dsft.data.endpoint`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dsft.config.schema import AugmentConfig, DsftConfig
from dsft.data.clean import Removed
from dsft.data.conversation import Conversation
from dsft.data.endpoint import ChatClient, EndpointSettings, RequestFailed, ResponseCache
from dsft.data.ingest import ingest, write_rejections
from dsft.data.inline_think import split_inline_think
from dsft.data.ledger import rejected_reasons
from dsft.data.near_dedup import drop_near_copies
from dsft.data.readers import check_outputs_spare_inputs, expand_inputs
from dsft.data.report import write_jsonl, write_removed
from dsft.data.split import family_of
from dsft.data.synonyms import is_chinese, load_thesaurus, replace_synonyms, synonym_source
from dsft.data.table_templates import fill_rows, read_table
from dsft.data.validate import validate_conversation
from dsft.disk import check_fresh_output_dir, replaced_atomically
from dsft.errors import DataError

NEAR_DUPLICATE_STEP = "augment_near_duplicate"
PARAPHRASE_PROMPT = (
    "Rewrite the following question so that it asks exactly the same thing in different words, in the same "
    "language. Keep every number, name and unit unchanged. Reply with the rewritten question only.\n\n{text}"
)
TRANSLATE_PROMPT = (
    "Translate the following text into {language}. Keep every number, name and unit unchanged. Reply with the "
    "translation only.\n\n{text}"
)


@dataclass
class Augmentation:
    """Generated records that survived (``kept``), how many each method generated, what was dropped."""

    kept: list[Conversation] = field(default_factory=list)
    added: Counter[str] = field(default_factory=Counter)
    removed: list[Removed] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def child(parent: Conversation, question: str, method: str, number: int) -> Conversation:
    """A copy of ``parent`` whose last user turn is ``question``; its meta names the method and the parent.

    >>> from dsft.data.conversation import Message
    >>> parent = Conversation([Message("user", "When was it built?"), Message("assistant", "1958.")],
    ...                       meta={"origin": "d.jsonl:4"})
    >>> made = child(parent, "When was it completed?", "synonym", 1)
    >>> made.messages[0].content, made.meta["origin"], made.meta["augment_parent"]
    ('When was it completed?', 'd.jsonl:4 synonym 1', 'd.jsonl:4')
    >>> made.meta["augment_family"] == family_of(parent)
    True
    """
    messages = list(parent.messages)
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    messages[last_user] = replace(messages[last_user], content=question)
    origin = str(parent.meta.get("origin", "?"))
    meta = {key: value for key, value in parent.meta.items() if key != "scores"}
    meta["origin"] = f"{origin} {method} {number}"
    meta.update(augment_method=method, augment_parent=origin, augment_family=family_of(parent))
    return Conversation(messages, parent.tools, meta)


def _question(conversation: Conversation) -> str | None:
    users = [m for m in conversation.messages if m.role == "user"]
    if not users or conversation.meta.get("kind") == "text" or conversation.messages[-1].role != "assistant":
        return None
    return users[-1].content


def synonym_children(train: Sequence[Conversation], settings: AugmentConfig, seed: int, out: Augmentation) -> list[Conversation]:
    """``synonym_copies`` synonym-replaced questions per record (seeded); unchanged copies are skipped."""
    rng = random.Random(f"{seed}:synonyms")
    made = []
    for parent in train:
        question = _question(parent)
        if question is None:
            continue
        chinese = is_chinese(question)
        table = load_thesaurus("zh", settings.synonyms_zh) if chinese else load_thesaurus("en", settings.synonyms_en)
        seen = {question}
        for number in range(1, settings.synonym_copies + 1):
            rewritten = replace_synonyms(question, table, settings.synonym_rate, rng, chinese)
            if rewritten in seen:
                out.skipped["synonym: no new replacement"] += 1
                continue
            seen.add(rewritten)
            made.append(child(parent, rewritten, "synonym", number))
    return made


def _reply_text(completion_content: str) -> str:
    """The reply without a leading think block (reasoning models may add one) or wrapping quotes."""
    _, answer = split_inline_think(completion_content)
    return answer.strip().strip('"“”「」').strip()


def endpoint_children(
    train: Sequence[Conversation], settings: AugmentConfig, cache_path: Path, out: Augmentation,
) -> list[Conversation]:
    """Paraphrases and back-translations of each question through the configured endpoint."""
    config = settings.endpoint
    params = {k: v for k, v in (("temperature", config.temperature), ("max_tokens", config.max_tokens)) if v is not None}
    client = ChatClient(EndpointSettings(
        config.base_url or "", config.model or "", config.api_key_env, config.concurrency, config.requests_per_minute,
        config.max_retries, config.timeout, config.backoff, params,
    ), ResponseCache(cache_path))

    def ask(text: str, prompt: str, sample: int = 0, **fields: str) -> str:
        reply = client.complete([{"role": "user", "content": prompt.format(text=text, **fields)}], sample=sample)
        return _reply_text(reply.content)

    jobs, labels = [], []
    for parent in train:
        question = _question(parent)
        if question is None:
            continue
        for number in range(1, settings.paraphrase_copies + 1):
            jobs.append(lambda q=question, n=number: ask(q, PARAPHRASE_PROMPT, sample=n))
            labels.append((parent, "paraphrase", number))
        if settings.back_translation:
            pivot, home = ("English", "Chinese") if is_chinese(question) else ("Chinese", "English")
            jobs.append(lambda q=question, p=pivot, h=home: ask(ask(q, TRANSLATE_PROMPT, language=p),
                                                                 TRANSLATE_PROMPT, language=h))
            labels.append((parent, "back_translation", 1))
    try:
        if jobs:
            client.check_reachable()
        results = client.complete_many(jobs)
    finally:
        client.close()
    made = []
    for (parent, method, number), result in zip(labels, results):
        if isinstance(result, RequestFailed):
            out.skipped[f"{method}: request failed"] += 1
        elif not result:
            out.skipped[f"{method}: empty reply"] += 1
        else:
            made.append(child(parent, result, method, number))
    return made


def augment_records(
    train: Sequence[Conversation], existing: Sequence[Conversation], settings: AugmentConfig, seed: int, out_dir: Path,
) -> Augmentation:
    """Generate children of ``train`` records; drop those too close to ``existing`` records or each other.

    ``existing`` is every record of every split (so nothing near a validation record is added to train).
    """
    result = Augmentation()
    generated: list[Conversation] = []
    if settings.synonym_copies:
        generated += synonym_children(train, settings, seed, result)
    if settings.paraphrase_copies or settings.back_translation:
        cache = Path(settings.cache) if settings.cache else out_dir / AUGMENT_CACHE_FILE
        generated += endpoint_children(train, settings, cache, result)
    valid = []
    for conversation in generated:
        problems = validate_conversation(conversation)
        if problems:  # e.g. a reply holding a stray </think>: never added, counted as skipped
            result.skipped[f"{conversation.meta['augment_method']}: invalid ({problems[0]})"] += 1
            continue
        result.added[conversation.meta["augment_method"]] += 1
        valid.append(conversation)
    checked = drop_near_copies(existing, valid, settings.near_duplicate_threshold)
    result.kept, result.removed = checked.kept, checked.removed
    return result


def check_synonym_sources(settings: AugmentConfig) -> None:
    """Before any data is read: the synonym lists the settings need exist (package or path)."""
    if settings.synonym_copies:
        synonym_source("zh", settings.synonyms_zh)
        synonym_source("en", settings.synonyms_en)


def template_records(settings: AugmentConfig) -> list[Conversation]:
    """Every table of ``augment.templates`` filled: rows x question phrasings."""
    records = []
    for number, template in enumerate(settings.templates):
        where = f"data.augment.templates[{number}]"
        texts = [*template.questions, template.answer, *(t for t in (template.reasoning, template.system) if t)]
        rows, wheres = read_table(template.table, texts, where)
        records += fill_rows(rows, wheres, template.questions, template.answer, template.reasoning, template.system)
    return records


AUGMENTED_FILE = "augmented.jsonl"
AUGMENT_REPORT_FILE = "augment_report.json"
AUGMENT_CACHE_FILE = "augment_cache.jsonl"
# Every file `dsft data augment` writes into --out (the cache only where no data.augment.cache names another).
AUGMENT_FILES = (AUGMENTED_FILE, "removed.jsonl", "rejects.jsonl", AUGMENT_REPORT_FILE, AUGMENT_CACHE_FILE)


def check_augment_request(cfg: DsftConfig, inputs: list[str], out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse what :func:`augment_files` would refuse before it reads a record: nothing to do, synonym sources that
    are missing, an ``out_dir`` it may not write, an input that is not there. ``dsft data augment`` calls it before
    it warns of the files an input directory holds that are not read, so a refusal comes alone."""
    settings = cfg.data.augment
    if not settings.enabled():
        raise DataError("data.augment: nothing to do; set templates, synonym_copies, paraphrase_copies or "
                        "back_translation (--set data.augment.synonym_copies=1)")
    check_synonym_sources(settings)
    out = Path(out_dir)
    check_fresh_output_dir(out, overwrite, rerun_markers=(AUGMENT_REPORT_FILE, AUGMENT_CACHE_FILE))
    check_outputs_spare_inputs(inputs, out, AUGMENT_FILES, f"--out {out}")
    expand_inputs(inputs)  # each named input is there (a glob matches a file)


def augment_files(cfg: DsftConfig, inputs: list[str], out_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """``dsft data augment``: read ``inputs``, fill ``data.augment.templates``, generate children of every
    record, and write ``augmented.jsonl`` (originals, then kept children), ``removed.jsonl``,
    ``rejects.jsonl`` and ``augment_report.json`` (the ledger). Returns the report.

    The output can go straight into ``dsft data prepare``: the split keeps each family on one side. ``out_dir``
    follows the output-directory rule (:func:`dsft.disk.check_fresh_output_dir`): an earlier augment output is
    rewritten (a rerun asks the endpoint only what its cache lacks), another non-empty directory only with
    ``overwrite``, and never over one of the inputs.
    """
    check_augment_request(cfg, inputs, out_dir, overwrite)
    settings, out = cfg.data.augment, Path(out_dir)
    templated = template_records(settings)
    ingested = ingest(inputs, cfg.data.format, cfg.data.columns) if inputs else None
    out.mkdir(parents=True, exist_ok=True)  # once the inputs are read: a missing one leaves no directory
    originals = (ingested.conversations if ingested else []) + templated
    result = augment_records(originals, originals, settings, cfg.train.seed, out)
    added = ({"augment_template": len(templated)} if templated else {}) | {
        f"augment_{method}": count for method, count in result.added.items()}
    rejections = ingested.rejections if ingested else []
    written = originals + result.kept
    report = {"read": ingested.read if ingested else 0, "added": added, "rejected": len(rejections),
              "rejected_reasons": rejected_reasons(rejections),
              "removed": {NEAR_DUPLICATE_STEP: len(result.removed)}, "kept": len(written),
              "skipped": dict(result.skipped), "inputs": inputs, "augment_config": settings.model_dump(mode="json")}
    assert report["read"] + sum(added.values()) == report["kept"] + report["rejected"] + len(result.removed), report
    write_jsonl(written, out / AUGMENTED_FILE)
    write_removed({NEAR_DUPLICATE_STEP: result.removed}, out / "removed.jsonl")
    write_rejections(rejections, out / "rejects.jsonl")
    with replaced_atomically(out / AUGMENT_REPORT_FILE) as handle:  # every process of a launched job writes it
        handle.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return report
