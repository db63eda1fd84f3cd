"""``dsft config show``: the resolved config with defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)


@config_app.command("show")
def show(
    config: Path | None = typer.Argument(None, help="YAML config (omit for the defaults)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set train.lr=1e-4 (repeatable)."),
    describe: bool = typer.Option(False, "--describe", help="List every key with its description."),
    preset: str | None = typer.Option(None, "--preset", help="Size preset applied over the file (each of its values "
                                      "replaced is named) and under --set (see `dsft config preset`)."),
) -> None:
    """Print the resolved config (file + preset + overrides + defaults) as YAML, once every check has passed.

    The checks are those `dsft train` runs before loading anything, against this machine (its device
    and installed packages; the number of processes only when a launcher set WORLD_SIZE). Settings the run
    would not apply are named on stderr, one line each, as `dsft train` names them.
    """
    from dsft.config import describe_config, dump_config, load_config
    from dsft.config.loader import preset_notice
    from dsft.data.input_checks import check_inputs, names_data
    from dsft.models.dropout import check_dropout_before_loading
    from dsft.models.skeleton import check_lora_targets
    from dsft.plan.preflight import preflight, preflight_notices
    from dsft.training.environment import Environment

    resolved = load_config(config, set_, preset=preset, set_flags=set_)
    env = Environment.this_machine()
    preflight(resolved, env, str(config) if config else "config", set_)
    if names_data(resolved):  # as dsft train checks them (a missing file, one reached twice by a link): paths only
        check_inputs(resolved)
    check_lora_targets(resolved)  # on the weightless skeleton, as dsft train checks it: torch only for a LoRA run
    check_dropout_before_loading(resolved)  # on the model's config: torch only when a dropout key is set
    for notice in [preset_notice(config, preset, set_), *preflight_notices(resolved, env)]:
        if notice is not None:  # on stderr: stdout stays the config
            typer.echo(notice, err=True)
    if not describe:
        typer.echo(dump_config(resolved), nl=False)
        return
    rows = describe_config(resolved)
    if not sys.stdout.isatty():
        # Piped or redirected: one whole line per key (a table would be cut to 80 columns).
        for key, value, text in rows:
            typer.echo(f"{key}\t{value!r}\t{text}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("key", "value", "description")
    table.columns[0].overflow = "fold"
    for key, value, text in rows:
        table.add_row(key, repr(value), text)
    Console().print(table)


@config_app.command("preset")
def preset(
    name: str | None = typer.Argument(None, help="Preset name (7b, 13b, 34b); omit to list them."),
) -> None:
    """Print a size preset as YAML with where its values come from (use it with --preset NAME)."""
    from dsft.config.presets import PRESETS, get_preset, preset_yaml

    if name is None:
        for item in PRESETS.values():
            typer.echo(f"{item.name}: " + ", ".join(item.overrides()))
        typer.echo(f"source: {next(iter(PRESETS.values())).source}")
        return
    typer.echo(preset_yaml(get_preset(name, label="NAME")), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
