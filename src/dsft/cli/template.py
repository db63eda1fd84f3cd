"""``dsft template``: list the template families, render a conversation (prompt or training ids + labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dsft.cli.empty_paths import empty_refused
from dsft.cli.keywords import keyword
from dsft.cli.thinking_flag import say_unused_thinking

template_app = typer.Typer(help="Chat templates: list families, render conversations and masks.", no_args_is_help=True)

MODES = ("prompt", "train")
# '' (an unset shell variable) is refused under the flag: it read as the current directory.
TOKENIZER_GIVEN = empty_refused("--tokenizer", "a tokenizer directory or a tiny preset")


@template_app.command("list")
def list_templates() -> None:
    """List the template families: what each covers, its thinking flag, tool-call format and vLLM parser."""
    from rich.console import Console
    from rich.table import Table

    from dsft.templates import TEMPLATE_NAMES, get_template

    table = Table("name", "models", "thinking flag", "tool calls", "vLLM reasoning parser")
    for name in TEMPLATE_NAMES:
        family = get_template(name)
        table.add_row(name, family.description, family.thinking_flag or "-", family.tool_call_format,
                      family.vllm_reasoning_parser or "-")
    Console().print(table)


def _tokenizer_dir(spec: str) -> Path:
    """``--tokenizer``: a checkpoint/tokenizer directory, or a tiny preset name materialised once."""
    from dsft.errors import DsftError

    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    try:
        from dsft.models.resolve import check_model_name, resolve_model
    except ImportError:  # pragma: no cover - resolving presets ships with dsft.models
        raise DsftError(f"--tokenizer: {spec} is not a directory") from None
    try:
        check_model_name(spec)  # names nothing: said under the flag, before anything loads
    except DsftError as exc:
        raise DsftError(f"--tokenizer: {exc}") from None
    return resolve_model(spec)


def _load_tokenizer(path: Path | None) -> Any:
    """The tokenizer in ``path``, loaded as training and ``dsft data inspect`` load it (a directory without
    tokenizer files refused, pad = EOS, ``add_bos_token`` honoured); the DeepSeek tokenizer package when None."""
    from dsft.errors import DsftError
    from dsft.models.loading import load_tokenizer
    from dsft.models.tokenizers import load_deepseek_tokenizer

    if path is None:
        return load_deepseek_tokenizer()
    try:
        return load_tokenizer(path)
    except DsftError as exc:
        raise DsftError(f"--tokenizer {exc}") from None


@template_app.command("render")
def render(
    template: str = typer.Option(..., "--template", help="Template family (see `dsft template list`), or auto "
                                                          "to detect it from --tokenizer."),
    messages: Path = typer.Option(..., "--messages", show_default=False,
                                  help="JSON file: a list of OpenAI-form messages (role, content, "
                                       "optional reasoning_content, loss, tool_calls)."),
    mode: str = typer.Option("prompt", "--mode", help="prompt: the inference prompt; train: ids + labels."),
    thinking: bool | None = typer.Option(None, "--thinking/--no-thinking", help="Thinking mode (V3.1, V3.2, V4); "
                                         "default: official default for prompts, per-turn reasoning for training."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", parser=TOKENIZER_GIVEN,
                                         help="Tokenizer directory or tiny preset name (default: the DeepSeek "
                                              "tokenizer package)."),
    masking: str = typer.Option("assistant", "--masking", help="Supervised tokens in train mode: assistant, last, all."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: text (+ input_ids, labels in train mode)."),
) -> None:
    """Render a conversation with a template: the exact prompt text, or training ids and labels."""
    from dsft.errors import DsftError
    from dsft.templates import detect_template, get_template
    from dsft.templates.base import MASKING_STRATEGIES, check_masking
    from dsft.templates.conversation_io import load_messages_file
    from dsft.templates.registry import check_template_name

    mode, masking = keyword(mode, MODES), keyword(masking, MASKING_STRATEGIES)
    if mode not in MODES:
        raise DsftError(f"--mode: must be prompt or train, got {mode!r}")
    check_template_name(template, "--template")  # before the tokenizer loads
    check_masking(masking, "--masking")  # the flag the user typed, not the config key it stands for
    conv = load_messages_file(messages)
    if mode == "train" and template != "auto":  # what the family cannot render is refused before a tokenizer loads
        try:
            get_template(template).check_conversation(conv, masking, thinking)
        except DsftError as exc:
            raise DsftError(f"{messages}: {exc}") from None
    needs_tokenizer = mode == "train" or template in ("hf", "auto")
    if template == "auto" and tokenizer is None:
        raise DsftError("--template auto detects the family from --tokenizer DIR; give one, or name the template")
    if template == "hf" and tokenizer is None:  # the default, the DeepSeek tokenizer package, has no chat template
        raise DsftError("--template hf renders with a model's own chat template: give the model with --tokenizer DIR, "
                        "or name a DeepSeek family (`dsft template list`)")
    tok_dir = _tokenizer_dir(tokenizer) if tokenizer is not None else None
    tok = _load_tokenizer(tok_dir) if needs_tokenizer else None
    chosen = get_template(detect_template(tok_dir) if template == "auto" else template, tokenizer=tok)
    say_unused_thinking(chosen, thinking)
    if mode == "prompt":
        try:
            text = chosen.render_prompt(conv, thinking=thinking)
        except DsftError as exc:
            raise DsftError(f"{messages}: {exc}") from None
        typer.echo(json.dumps({"text": text}, ensure_ascii=False) if as_json else text)
        return
    rendered = chosen.render_train(conv, tok, masking=masking, thinking=thinking)
    if as_json:
        typer.echo(json.dumps({"text": rendered.text, "input_ids": rendered.input_ids, "labels": rendered.labels()},
                              ensure_ascii=False))
        return
    from dsft.templates.inspect import print_rendered

    print_rendered(rendered, tok)


def register(app: typer.Typer) -> None:
    """Add ``dsft template`` to the root app."""
    app.add_typer(template_app, name="template")
