"""``prepare``: inputs -> valid, cleaned, split conversations, with a report that accounts for every record.

Order of steps (each optional step is configured under ``data.clean``):

1. read + normalise + validate every input (train inputs, explicit val/test files) -> rejections; under
   ``template.masking: last``, records whose last assistant turn has ``loss: false`` (nothing to train) removed;
2. text rewrites per record: HTML stripping, Unicode NFKC + control characters;
3. exact and near-duplicate removal across all inputs, evaluation files first (so the train copy of a
   record that is also in val/test is the one removed);
4. tokenization (model tokenizer, multiprocess) -> token-length filters; TF-IDF relevance; semantic filters
   (embedding question-answer consistency, IFD scored by an injected model scorer);
5. split (seeded, stratified, near-duplicate clusters and generated families on one side) unless val/test
   files are given; records filled from tables (``data.augment.templates``) join the train inputs first;
   ``data.mix`` records are held out of the split;
6. augmentation of the train split (``data.augment``); class balancing of the train split; ``data.mix``
   sources drawn into the train split at their ratios (:mod:`dsft.data.mix`); contamination check of
   train against val/test;
7. reasoning policy on every split; statistics, histograms, files.

The identity ``read + sum(added) == kept + rejected + sum(removed)`` (``kept`` = the records in the splits)
is asserted before anything is written.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dsft.config.schema import DsftConfig
from dsft.data import augment, clean, mix, near_dedup, relevance, semantic
from dsft.data.control_tokens import reject_control_tokens
from dsft.data.conversation import Conversation
from dsft.data.ingest import ingest, rejection_error, write_rejections
from dsft.data.ledger import Ledger
from dsft.data.readers import expand_inputs
from dsft.data.reasoning_policy import apply_reasoning_policy, length_stats, reasoning_stats
from dsft.data.report import (
    HISTOGRAM_FILE, REASONING_HISTOGRAM_FILE, rejection_notice, render_markdown, write_histograms, write_jsonl,
    write_removed,
)
from dsft.data.split import SPLITS, split_conversations, with_families
from dsft.data.validate import nothing_trained
from dsft.data.tokens import ConversationTokens, count_tokens
from dsft.disk import replaced_atomically
from dsft.errors import DataError, DsftError

log = logging.getLogger(__name__)

REPORT_FILE = "data_report.json"
PLACEHOLDER_REPORT = {"preparing": True}  # the report of a preparation under way (see mark_preparing)
# What a reader says of a folder whose report is still the placeholder, after naming the folder.
UNFINISHED_PREPARATION = (f"a preparation that did not finish (its {REPORT_FILE} is still the placeholder a preparation "
                          "writes first; its rejects.jsonl or the error it stopped with says why): rerun the "
                          "preparation into it")
EVAL_SPLITS = ("test", "val")


@dataclass
class Prepared:
    """The prepared splits (``train``/``val``/``test``) and the report (see ``data_report.json``)."""

    splits: dict[str, list[Conversation]]
    report: dict[str, Any]
    out_dir: Path | None = None


def prepare(
    cfg: DsftConfig, tokenizer: Any, out_dir: str | Path, inputs: list[str] | None = None,
    ifd_scorer: semantic.Scorer | None = None, tokenizer_source: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> Prepared:
    """Run the whole data pipeline and write its outputs to ``out_dir``.

    ``inputs`` (files, directories, globs) replace ``cfg.data.train`` when given. ``ifd_scorer`` scores
    conversations with the model being fine-tuned (:class:`dsft.training.ifd.IfdScorer`); it is needed
    only when ``data.clean.semantic.ifd`` is on. ``warn`` says what the preparation warns of (default: logged);
    ``dsft train`` passes one that says it once for a launched job, whose every process prepares the same data.
    Writes
    ``train.jsonl``/``val.jsonl``/``test.jsonl`` (OpenAI messages form), ``rejects.jsonl``,
    ``removed.jsonl``, ``data_report.json``, ``data_report.md`` and token-length histograms.
    """
    started = time.perf_counter()
    data = cfg.data
    sources = {"train": training_sources(cfg, inputs), "val": list(data.val), "test": list(data.test)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mark_preparing(out)  # before any other file is written into out
    scorers = semantic.score_steps(cfg.data.clean.semantic, ifd_scorer)  # before reading: a missing model or package fails fast
    augment.check_synonym_sources(cfg.data.augment)
    templated = augment.template_records(cfg.data.augment)  # a bad table fails before the inputs are read
    ledger = Ledger()
    clock = _Stopwatch()
    pools = clock("read_validate", _ingest_pools, sources, cfg, ledger, out)
    if templated:
        pools["train"] += templated
        ledger.added["augment_template"] = len(templated)
    pools = clock("nothing_trained", _nothing_trained, pools, cfg, ledger)
    pools = clock("rewrite", _rewrite, pools, cfg, ledger)
    pools = clock("control_tokens", _reject_control_tokens, pools, tokenizer, cfg, ledger, out)  # after NFKC, which defuses some
    pools = clock("dedup", _deduplicate, pools, cfg, ledger)
    tokens = clock("tokenize", _count, pools, tokenizer, cfg)
    pools = clock("filter", _filter, pools, tokens, cfg, ledger)
    pools = clock("semantic", _semantic, pools, tokens, scorers, ledger)
    pools["train"], mixed = mix.take_mixed(pools["train"])  # data.mix records skip the split and augmentation
    splits = clock("split", _split, pools, sources, cfg)
    splits["train"] = clock("augment", _augment, splits, tokens, tokenizer, cfg, ledger, out)
    splits["train"] = clock("balance", _balance, splits["train"], cfg, ledger, warn or log.warning)
    splits["train"], mixing = clock("mix", _mix, splits["train"], mixed, cfg, ledger)
    contamination = clock("contamination", _contamination, splits, cfg, ledger)
    before_policy = reasoning_stats(splits["train"], [tokens[id(c)][1].reasoning for c in splits["train"]])
    splits = clock("reasoning_policy", _reasoning, splits, tokens, cfg)
    report = clock("report", _report, sources, splits, tokens, ledger, contamination, before_policy, cfg, out)
    report["prepared_for"]["tokenizer"] = tokenizer_source  # None: the model's own
    report["semantic"] = ledger.scores
    report["mix"] = mixing
    clock("write", _write, out, splits, ledger)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["step_seconds"] = clock.seconds
    _write_report(out, report)
    empty = [m["path"] for m in mixing if not m["available"]]
    if empty:  # after the report and rejects are written: they say why
        raise DataError(f"data.mix: {', '.join(empty)}: no records left to mix in after reading and cleaning "
                        f"(see {out / REPORT_FILE} and {out / 'rejects.jsonl'})", job_wide=True)
    if not splits["train"]:
        why = ": the inputs hold no records" if not report["read"] else ""  # often one wrong field name, or one filter
        removed = [f"{step} {count}" for step, count in report["removed"].items() if count]
        if removed:
            why += f"; removed by {', '.join(removed)}"
            first_removed = next(item for items in ledger.removed.values() for item in items)
            why += f"; first removed: {first_removed.conversation.meta.get('origin', '?')}: {first_removed.reason}"
        notice = rejection_notice(report, out)  # the most frequent reasons, as a preparation that kept some says them
        raise DataError(
            f"no records left to train on: read {report['read']}, rejected {report['rejected']}, "
            f"removed {sum(report['removed'].values())}, kept {report['kept']} "
            f"(splits {report['splits']}; see {out / REPORT_FILE}){why}" + (f"\n{notice}" if notice else ""),
            job_wide=True,  # every process of a launched job prepares the same data
        )
    for name in ("val", "test"):
        if sources[name] and not splits[name]:  # asked for by name: an empty one would go unnoticed (no eval, no test)
            raise _named_split_left_empty(name, sources[name], ledger, out)
    return Prepared(splits, report, out)


def _named_split_left_empty(name: str, files: list[str], ledger: Ledger, out: Path) -> DataError:
    """``data.val`` / ``data.test`` named files and none of their records is left: why, as the train check says."""
    purpose = {"val": "validate on", "test": "test on"}[name]
    rejected = ledger.rejected_by_split.get(name, [])
    why = f"; first rejection: {rejected[0].where}: {'; '.join(rejected[0].reasons)}" if rejected else ""
    if not why:
        why = "; removed by cleaning (deduplicated against train, or filtered)" if ledger.read_by_split[name] else \
            ": the files hold no records"
    return DataError(f"data.{name}: no records left to {purpose}: read {ledger.read_by_split[name]}, rejected "
                     f"{len(rejected)} ({', '.join(files)}; see {out / REPORT_FILE} and {out / 'rejects.jsonl'}){why}",
                     job_wide=True)


def training_sources(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """What ``dsft data prepare`` reads as training data: ``inputs`` when given, else ``data.train``; an error
    when there is neither."""
    sources = list(inputs) if inputs else list(cfg.data.train)
    if not sources:
        raise DataError("no training data: pass input files (dsft data prepare INPUT...) or set data.train")
    return sources


def input_problems(cfg: DsftConfig, inputs: list[str] | None = None) -> list[str]:
    """Every data input the config names that cannot be read (missing, unsupported, a glob matching nothing),
    one line each naming its key, or the absence of any training input: checked before a model is resolved,
    so a typo costs no model load. The files SFT cleaning and augmentation read (relevance references,
    synonym lists, template tables) count as inputs.

    ``inputs`` (``dsft data prepare INPUT...``) replace ``data.train``; they are named by their path alone,
    and the config's ``data.val``, ``data.test`` and ``data.mix``, still read, by their keys."""
    if inputs:
        named = [(None, pattern) for pattern in inputs]
    elif cfg.data.prepared_dir:
        return _prepared_dir_problems(cfg.data.prepared_dir, cfg.data.train)
    elif not cfg.data.train:
        return ["data.train: no training data; list files in data.train or set data.prepared_dir"]
    else:
        named = [("data.train", pattern) for pattern in cfg.data.train]
    named += [(f"data.{split}", pattern) for split in ("val", "test") for pattern in getattr(cfg.data, split)]
    named += [(f"data.mix.{position}.path", source.path) for position, source in enumerate(cfg.data.mix)]
    problems = []
    for key, pattern in named:
        try:
            expand_inputs([pattern])
            _refuse_prepared_dir(pattern)
        except DataError as exc:
            problems.append(f"{key}: {exc}" if key else str(exc))
    if cfg.train.objective == "sft":  # other objectives read neither (and refuse these keys)
        problems += _cleaning_and_augment_file_problems(cfg)
    return problems


def _prepared_dir_problems(directory: str, train: list[str]) -> list[str]:
    """``data.prepared_dir`` is read as it is, and ``data.train`` is not read: a directory prepared from other inputs
    than the ``data.train`` beside it (another guide's, an older preparation) would be trained on without a word."""
    path = Path(directory)
    if preparation_state(path) == "unfinished":
        return [f"data.prepared_dir: {path}: {UNFINISHED_PREPARATION}"]
    if not (path / "train.jsonl").is_file():
        return [f"data.prepared_dir: {path}: not a prepared data directory (no train.jsonl); run `dsft data prepare` "
                "first"]
    try:
        inputs = json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))["inputs"]["train"]
    except (OSError, ValueError, KeyError, TypeError):
        inputs = None  # no report (an older or hand-made directory): nothing to compare with
    if not train or not isinstance(inputs, list) or not inputs or _resolved(train) == _resolved(map(str, inputs)):
        return []
    return [f"data.prepared_dir: {path} was prepared from {', '.join(inputs)}, not data.train ({', '.join(train)}); "
            "a prepared directory is trained on as it is: prepare data.train again, or leave data.train out "
            "(--set data.train=[])"]


def _resolved(paths: Iterable[str]) -> set[Path]:
    return {Path(p).expanduser().resolve() for p in paths}


def _refuse_prepared_dir(pattern: str) -> None:
    """A directory ``dsft data prepare`` wrote, named as input: read whole, its train, val and test splits would be
    merged and split again (validation records trained on) and its report read as a record."""
    state = preparation_state(pattern)
    if state == "unfinished":  # read whole, its splits (if any) would be mixed with its rejects
        raise DataError(f"{pattern}: {UNFINISHED_PREPARATION}, then train on it with data.prepared_dir: {pattern}")
    if state == "finished":
        raise DataError(f"{pattern}: a directory written by dsft data prepare; reading all of it would mix its train, "
                        f"val and test splits: train on it as prepared with data.prepared_dir: {pattern}, or name one "
                        f"split file, e.g. {Path(pattern) / 'train.jsonl'}")


def _cleaning_and_augment_file_problems(cfg: DsftConfig) -> list[str]:
    """The files cleaning and augmentation read: relevance references, synonym lists, template tables."""
    settings = cfg.data.clean
    problems = []
    if settings.relevance_references and settings.relevance_min > 0:
        problems += relevance.reference_problems(settings.relevance_references)
    model = settings.semantic.embedding_model
    model_problem = semantic.embedding_model_problem(model) if model else None
    if model_problem:
        problems.append(model_problem)
    try:
        augment.check_synonym_sources(cfg.data.augment)
    except DsftError as exc:
        problems.append(str(exc))
    for number, template in enumerate(cfg.data.augment.templates):
        try:
            expand_inputs([template.table])
        except DataError as exc:
            problems.append(f"data.augment.templates[{number}].table: {exc}")
    return problems


def check_inputs(cfg: DsftConfig, inputs: list[str] | None = None) -> None:
    """Raise one :class:`DataError` listing :func:`input_problems`, if any."""
    problems = input_problems(cfg, inputs)
    if problems:
        head = f"{len(problems)} data input(s) cannot be read"
        if any(_missing_relative_path(problem) for problem in problems):  # e.g. a guide's config run from its folder
            head += f" (relative paths are read from the current directory, {Path.cwd()})"
        raise DataError(head, problems, job_wide=True)  # every process reads the same paths


def _missing_relative_path(problem: str) -> bool:
    """Whether ``problem`` (``[key: ]path: no such file or directory``) is about a relative path."""
    missing = ": no such file or directory"  # dsft.disk.not_a_file_reason's words for a missing path
    if not problem.endswith(missing):
        return False
    return not Path(problem.removesuffix(missing).split(": ")[-1]).is_absolute()


def _ingest_pools(sources: dict[str, list[str]], cfg: DsftConfig, ledger: Ledger, out: Path) -> dict[str, list[Conversation]]:
    pools: dict[str, list[Conversation]] = {}
    for name in SPLITS:
        if not sources[name]:
            pools[name] = []
            continue
        ingested = ingest(sources[name], cfg.data.format, cfg.data.columns)
        ledger.read += ingested.read
        ledger.rejections += ingested.rejections
        ledger.read_by_split[name] += ingested.read
        ledger.rejected_by_split[name] = ingested.rejections
        ledger.formats.update(ingested.formats)
        pools[name] = ingested.conversations
    for conversation in pools["train"]:
        conversation.meta.pop(mix.MIX_SOURCE_KEY, None)  # only data.mix entries below are mixed sources
    for position, source in enumerate(cfg.data.mix):
        ingested = ingest([source.path], cfg.data.format, cfg.data.columns)
        ledger.read += ingested.read
        ledger.rejections += ingested.rejections
        ledger.formats.update(ingested.formats)
        for conversation in ingested.conversations:
            conversation.meta[mix.MIX_SOURCE_KEY] = position
        pools["train"] += ingested.conversations
    if ledger.rejections and cfg.data.on_error == "fail":
        write_rejections(ledger.rejections, out / "rejects.jsonl")
        raise rejection_error(ledger.rejections, out / "rejects.jsonl")
    return pools


def _nothing_trained(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    """Remove records the configured masking trains nothing of (listed only under ``last``, the one it can remove
    for): training would drop them anyway, and the report's counts would be untrue."""
    if cfg.template.masking != "last":
        return pools
    for name in SPLITS:
        result = clean.StepResult([])
        for conversation in pools[name]:
            reason = nothing_trained(conversation, cfg.template.masking)
            if reason is None:
                result.kept.append(conversation)
            else:
                result.removed.append(clean.Removed(conversation, reason))
        pools[name] = ledger.record("nothing_trained", result)
    return pools


def _rewrite(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    for step, function in clean.rewrite_steps(cfg.data.clean.strip_html, cfg.data.clean.normalize_unicode):
        pools = {name: ledger.record(step, function(pool)) for name, pool in pools.items()}
    return pools


def _reject_control_tokens(pools: dict[str, list[Conversation]], tokenizer: Any, cfg: DsftConfig, ledger: Ledger,
                           out: Path) -> dict[str, list[Conversation]]:
    """Reject records whose text holds a tokenizer control token (see :mod:`dsft.data.control_tokens`)."""
    found = []
    for name in SPLITS:
        pools[name], rejected = reject_control_tokens(pools[name], tokenizer)
        ledger.rejected_by_split.setdefault(name, []).extend(rejected)
        found += rejected
    ledger.rejections += found
    if found and cfg.data.on_error == "fail":
        write_rejections(ledger.rejections, out / "rejects.jsonl")
        raise rejection_error(ledger.rejections, out / "rejects.jsonl")
    return pools


def _across_pools(pools: dict[str, list[Conversation]], step: str, function: Any, ledger: Ledger) -> dict[str, list[Conversation]]:
    """Run a whole-dataset step over evaluation pools first, then train, and split the result back."""
    order = [*EVAL_SPLITS, "train"]
    owner = {id(c): name for name in order for c in pools[name]}
    kept = ledger.record(step, function([c for name in order for c in pools[name]]))
    out: dict[str, list[Conversation]] = {name: [] for name in SPLITS}
    for conversation in kept:
        out[owner[id(conversation)]].append(conversation)
    return out


def _deduplicate(pools: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    settings = cfg.data.clean
    if settings.exact_dedup:
        pools = _across_pools(pools, "exact_dedup", clean.exact_dedup, ledger)
    if settings.near_dedup:
        step = lambda items: near_dedup.near_dedup(items, settings.near_dedup_threshold)  # noqa: E731
        pools = _across_pools(pools, "near_dedup", step, ledger)
    return pools


_Tokens = dict[int, tuple[Conversation, ConversationTokens]]  # id -> (conversation kept alive, counts)


def _count(pools: dict[str, list[Conversation]], tokenizer: Any, cfg: DsftConfig) -> _Tokens:
    everything = [c for name in SPLITS for c in pools[name]]
    counts = count_tokens(everything, tokenizer, cfg.data.num_proc)
    return {id(c): (c, n) for c, n in zip(everything, counts)}


def _filter(pools: dict[str, list[Conversation]], tokens: _Tokens, cfg: DsftConfig, ledger: Ledger) -> dict[str, list[Conversation]]:
    settings = cfg.data.clean
    if settings.min_tokens is not None or settings.max_tokens is not None or settings.max_tokens_per_role:
        for name in SPLITS:
            result = clean.filter_by_length(
                pools[name], [tokens[id(c)][1] for c in pools[name]],
                settings.min_tokens, settings.max_tokens, settings.max_tokens_per_role,
            )
            pools[name] = ledger.record("length_filter", result)
    if settings.relevance_references and settings.relevance_min > 0:
        references = relevance.read_reference_texts(settings.relevance_references)
        for name in SPLITS:
            if pools[name]:
                result = relevance.filter_by_relevance(pools[name], references, settings.relevance_min)
                pools[name] = ledger.record("relevance", result)
    return pools


def _semantic(
    pools: dict[str, list[Conversation]], tokens: _Tokens, steps: list[semantic.ScoreStep], ledger: Ledger,
) -> dict[str, list[Conversation]]:
    """Score every pool, record the score distribution (before any cut) and drop what fails the cut-offs."""
    for step in steps:
        everything: list[float | None] = []
        for name in SPLITS:
            if not pools[name]:
                continue
            scores = step.scorer(pools[name])
            everything += scores
            result = semantic.filter_by_score(pools[name], scores, step.name, step.minimum, step.maximum, step.keep_top,
                                              step.higher_is_better)
            # Kept conversations are copies carrying their score in meta; they share the messages list.
            counted = {id(c.messages): tokens[id(c)][1] for c in pools[name]}
            for conversation in result.kept:
                tokens[id(conversation)] = (conversation, counted[id(conversation.messages)])
            pools[name] = ledger.record(step.name, result)
        ledger.scores[step.name] = semantic.score_distribution(everything)
    return pools


def _split(pools: dict[str, list[Conversation]], sources: dict[str, list[str]], cfg: DsftConfig) -> dict[str, list[Conversation]]:
    data = cfg.data
    val_ratio = 0.0 if sources["val"] else data.val_ratio
    test_ratio = 0.0 if sources["test"] else data.test_ratio
    pool = pools["train"]
    groups = None
    # With near-dedup on, no two survivors are near-duplicates (same threshold), so grouping again would only
    # repeat the MinHash work; except copies that train different turns (loss flags), which dedup keeps.
    copies_kept = data.clean.near_dedup and any(m.loss is not None for c in pool for m in c.messages)
    if data.group_near_duplicates and (not data.clean.near_dedup or copies_kept) and (val_ratio or test_ratio) and pool:
        texts = [near_dedup.similarity_text(c) for c in pool]
        groups = near_dedup.near_duplicate_groups(texts, data.clean.near_dedup_threshold)
    groups = with_families(pool, groups)  # a table row's phrasings (and any generated family) stay together
    splits = split_conversations(pool, val_ratio, test_ratio, cfg.train.seed, data.stratify_by, groups)
    for name in EVAL_SPLITS:
        splits[name] = pools[name] + splits[name]
    return splits


def _augment(
    splits: dict[str, list[Conversation]], tokens: _Tokens, tokenizer: Any, cfg: DsftConfig, ledger: Ledger, out: Path,
) -> list[Conversation]:
    """Children of train records (never of val/test), checked against every split for near copies."""
    settings = cfg.data.augment
    train = splits["train"]
    if not (settings.synonym_copies or settings.paraphrase_copies or settings.back_translation) or not train:
        return train
    everything = [c for name in SPLITS for c in splits[name]]
    made = augment.augment_records(train, everything, settings, cfg.train.seed, out)
    for method, count in made.added.items():
        ledger.added[f"augment_{method}"] = count
    ledger.removed[augment.NEAR_DUPLICATE_STEP] = made.removed
    ledger.augment_skipped.update(made.skipped)
    for conversation, counted in zip(made.kept, count_tokens(made.kept, tokenizer, cfg.data.num_proc)):
        tokens[id(conversation)] = (conversation, counted)
    return train + made.kept


def _balance(
    train: list[Conversation], cfg: DsftConfig, ledger: Ledger, warn: Callable[[str], None],
) -> list[Conversation]:
    settings = cfg.data.clean
    if not settings.balance_by or not train:
        return train
    result, added = clean.balance_classes(train, settings.balance_by, settings.balance_mode, cfg.train.seed)
    note = clean.missing_class_note(train, result, added, settings.balance_by, settings.balance_mode)
    if note:  # the report counts them among the class's removals; the log says they were records without the field
        warn(note)
    kept = ledger.record("balance", result)
    if settings.balance_mode == "over":
        ledger.added["balance_oversample"] = len(added)
    return kept + added


def _mix(
    train: list[Conversation], mixed: dict[int, list[Conversation]], cfg: DsftConfig, ledger: Ledger,
) -> tuple[list[Conversation], list[dict[str, Any]]]:
    """The train split with each ``data.mix`` source drawn in at its ratio, and what was drawn from each."""
    sources = cfg.data.mix
    counts = mix.mix_counts(len(train), [source.ratio for source in sources])
    added: list[Conversation] = []
    summary = []
    for position, (source, count) in enumerate(zip(sources, counts)):
        available = mixed.get(position, [])
        part = mix.draw_records(available, count, f"{cfg.train.seed}:{position}", source.path)
        ledger.removed.setdefault(mix.SAMPLE_STEP, []).extend(part.removed)
        if part.repeats:
            ledger.added[mix.REPEAT_STEP] = ledger.added.get(mix.REPEAT_STEP, 0) + part.repeats
        for conversation in available:
            conversation.meta.pop(mix.MIX_SOURCE_KEY, None)  # the tag served its purpose; origin names the file
        added += part.drawn
        summary.append({"path": source.path, "ratio": source.ratio, "available": len(available), "drawn": len(part.drawn),
                        "repeats": part.repeats})
    if sources and not ledger.removed.get(mix.SAMPLE_STEP):
        ledger.removed.pop(mix.SAMPLE_STEP, None)
    return train + added, summary


def _contamination(splits: dict[str, list[Conversation]], cfg: DsftConfig, ledger: Ledger) -> dict[str, Any] | None:
    evaluation = splits["val"] + splits["test"]
    if not evaluation or not splits["train"]:
        return None
    settings = cfg.data.clean
    found = relevance.check_contamination(splits["train"], evaluation, settings.contamination_ngram)
    if settings.drop_contaminated:
        splits["train"] = ledger.record("contamination", relevance.drop_contaminated(splits["train"], found))
    return {**found.as_dict(), "dropped": settings.drop_contaminated}


def _reasoning(splits: dict[str, list[Conversation]], tokens: _Tokens, cfg: DsftConfig) -> dict[str, list[Conversation]]:
    out: dict[str, list[Conversation]] = {}
    for offset, name in enumerate(SPLITS):
        before = splits[name]
        after = apply_reasoning_policy(before, cfg.data.reasoning, cfg.data.think_ratio, cfg.train.seed + offset)
        for old, new in zip(before, after):
            if new is not old:
                tokens[id(new)] = (new, tokens[id(old)][1].without_reasoning())
        out[name] = after
    return out


def _report(
    sources: dict[str, list[str]], splits: dict[str, list[Conversation]], tokens: _Tokens, ledger: Ledger,
    contamination: dict[str, Any] | None, before_policy: dict[str, Any], cfg: DsftConfig, out: Path,
) -> dict[str, Any]:
    kept = sum(len(part) for part in splits.values())
    ledger.check_identity(kept)
    totals = {name: [tokens[id(c)][1].total for c in part] for name, part in splits.items()}
    thinking = {name: [tokens[id(c)][1].reasoning for c in part if tokens[id(c)][1].reasoning] for name, part in splits.items()}
    histograms = []
    if write_histograms(totals, out / HISTOGRAM_FILE, "Tokens per conversation", "tokens (text, no template)"):
        histograms.append(HISTOGRAM_FILE)
    if write_histograms(thinking, out / REASONING_HISTOGRAM_FILE, "Reasoning tokens per conversation", "reasoning tokens"):
        histograms.append(REASONING_HISTOGRAM_FILE)
    by_role: dict[str, list[int]] = {}
    for conversation in splits["train"]:
        for role, count in tokens[id(conversation)][1].by_role().items():
            by_role.setdefault(role, []).append(count)
    return {
        "read": ledger.read, "kept": kept, "rejected": len(ledger.rejections), "removed": ledger.removed_counts(),
        "added": dict(ledger.added),
        "augment_skipped": dict(ledger.augment_skipped),
        "splits": {name: len(part) for name, part in splits.items()},
        "inputs": sources,
        "formats": dict(ledger.formats),
        "rejected_examples": ledger.rejected_examples(), "rejected_reasons": ledger.rejected_reasons(),
        "tokens": {name: length_stats(values) for name, values in totals.items()},
        "train_tokens_by_role": {role: length_stats(values) for role, values in sorted(by_role.items())},
        "reasoning": {
            "policy": cfg.data.reasoning, "think_ratio": cfg.data.think_ratio, "train_before_policy": before_policy,
            "splits": {name: reasoning_stats(part, [tokens[id(c)][1].reasoning for c in part]) for name, part in splits.items()},
        },
        "contamination": contamination,
        "histograms": histograms,
        "seed": cfg.train.seed,
        "data_config": cfg.data.model_dump(mode="json"),
        # What the token counts above were measured with, and what `dsft data inspect DIR` renders with.
        "prepared_for": {"model": cfg.model.name_or_path, "template": cfg.template.name,
                         "masking": cfg.template.masking},
    }


class _Stopwatch:
    """Wall time per pipeline stage (seconds), reported as ``step_seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, function: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 3)


def _write(out: Path, splits: dict[str, list[Conversation]], ledger: Ledger) -> None:
    for name in SPLITS:
        write_jsonl(splits[name], out / f"{name}.jsonl")
    write_rejections(ledger.rejections, out / "rejects.jsonl")
    write_removed(ledger.removed, out / "removed.jsonl")


def mark_preparing(out: Path) -> None:
    """Make ``out`` hold a data report from the start of a preparation (a placeholder, which the real report replaces).

    Every process of a launched job prepares the same data into ``RUN/data`` at once, and a process that is still
    checking that folder before its own preparation (:func:`dsft.data.prepared_output.check_prepared_output`) took
    another's splits, written before their report, for the user's files and stopped the job. A preparation that
    fails before its report (``data.on_error: fail`` writes rejects.jsonl only) is known for one too, so the same
    command can be rerun over it.
    """
    if not (out / REPORT_FILE).is_file():
        with replaced_atomically(out / REPORT_FILE) as handle:
            handle.write(json.dumps(PLACEHOLDER_REPORT) + "\n")


def preparation_state(directory: str | Path) -> Literal["finished", "unfinished"] | None:
    """What ``directory``'s data report says of it: None (no report: no preparation wrote it), ``"unfinished"`` (the
    placeholder of :func:`mark_preparing`: a preparation under way, or one that stopped before its report) or
    ``"finished"``. Every reader that takes a folder for prepared data by its report asks this, never the file alone.

    >>> preparation_state("/nonexistent")
    """
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "finished"  # written whole or not at all (a rename): a report someone edited; its readers say more
    return "unfinished" if report == PLACEHOLDER_REPORT else "finished"


def check_finished_preparation(path: Path) -> None:
    """Refuse to read ``path`` as prepared data unless a preparation finished writing it (its splits, then its
    report): :class:`DataError` naming what is missing."""
    if preparation_state(path) == "unfinished":
        raise DataError(f"{path}: {UNFINISHED_PREPARATION}", job_wide=True)
    if not (path / "train.jsonl").is_file():
        raise DataError(f"{path}: not a prepared data directory (no train.jsonl); run `dsft data prepare` first",
                        job_wide=True)


def _write_report(out: Path, report: dict[str, Any]) -> None:
    # Rejection reasons may quote input bytes that are not UTF-8 (lone surrogates, e.g. a GBK column name): written
    # as \\udcXX escapes, which JSON reads back as the same characters, instead of failing the whole write.
    with replaced_atomically(out / REPORT_FILE, errors="backslashreplace") as handle:
        handle.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    with replaced_atomically(out / "data_report.md", errors="backslashreplace") as handle:
        handle.write(render_markdown(report))


def load_prepared(directory: str | Path) -> Prepared:
    """Read a directory written by :func:`prepare` (``dsft data prepare``) back into a :class:`Prepared`."""
    path = Path(directory)
    check_finished_preparation(path)
    splits: dict[str, list[Conversation]] = {}
    for name in SPLITS:
        file = path / f"{name}.jsonl"
        splits[name] = []
        if not file.is_file():
            continue
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    splits[name].append(Conversation.from_dict(json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise DataError(f"{file}:{number}: not a prepared conversation ({exc})", job_wide=True) from None
    report_path = path / REPORT_FILE
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    return Prepared(splits, report, path)
