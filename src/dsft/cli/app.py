"""The ``dsft`` command: a thin typer app; each command group lives in its own module.

Command modules import only typer/rich at module level (heavy imports go inside the command
functions) so ``dsft --help`` stays instant. Library errors (:class:`dsft.errors.DsftError`)
become a short message and exit code 2; ``--debug`` shows the traceback. A stop (SIGTERM, Ctrl-C) runs the
command's cleanup and ends with one ``stopped`` line and exit status 128+signal (:mod:`dsft.cli.stopping`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

from dsft import __version__
from dsft.cli import stopping
from dsft.cli.empty_paths import refuse_empty_paths
from dsft.errors import Stopped
from dsft.onednn_caches import bound_onednn_caches

# Each module defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "config", "models", "data", "template", "train", "sweep", "eval", "export", "serve", "plan", "doctor", "bench",
    "demo", "ui",
)

app = typer.Typer(
    name="dsft",
    help="Fine-tune DeepSeek-family models end to end: data, exact templates, training, eval, export, serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dsft {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if debug:
        os.environ["DSFT_DEBUG"] = "1"


def _help_as_written(group: typer.Typer, escaped: set[int]) -> None:
    """Escape rich markup in every option's and argument's help: typer prints help through rich, which reads
    ``[default: 8000]`` or ``[word]`` as a style tag and drops it from ``--help``. ``escaped`` holds the ids of
    the options done (one option object may serve several commands)."""
    import inspect

    from rich.markup import escape

    for command in group.registered_commands:
        for parameter in inspect.signature(command.callback).parameters.values():
            info = parameter.default
            if isinstance(info, typer.models.ParameterInfo) and info.help and id(info) not in escaped:
                info.help = escape(info.help)
                escaped.add(id(info))
    for subgroup in group.registered_groups:
        _help_as_written(subgroup.typer_instance, escaped)


for _name in COMMAND_MODULES:
    importlib.import_module(f"dsft.cli.{_name}").register(app)
_help_as_written(app, set())
refuse_empty_paths(app)  # '' is no path: typer would read it as the current directory


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one message and exit code 2 and a stop (SIGTERM,
    Ctrl-C) into one line and 128+signal, after the command's own cleanup."""
    bound_onednn_caches()  # before any command's first bf16 CPU matmul (dsft.onednn_caches)
    stopping.install()
    try:
        _run(argv)
    finally:
        stopping.restore()


def _debug_first(args: list[str]) -> list[str]:
    """``--debug`` belongs to ``dsft`` itself; typed after the command (``dsft train c.yaml --debug``) it is
    moved in front of it rather than refused as an unknown option of the command."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[1:end]:
        return args
    return ["--debug"] + [a for a in args[:end] if a != "--debug"] + args[end:]


def _command_words(ctx: Any) -> str:
    """``dsft data prepare``: the command a click context runs, by the names it was typed with (whatever the program
    was started as: ``python -m dsft``)."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["dsft", *reversed(names)])


def _config_key_hint(exc: Exception) -> None:
    """An unknown option that is a config key (``dsft train c.yaml --max-steps 3``), on a command that takes
    ``--set``: the message says how to set it, instead of suggesting an unrelated option."""
    name = getattr(exc, "option_name", None)
    ctx = getattr(exc, "ctx", None)
    if not name or not name.startswith("--") or ctx is None:
        return
    options = {opt for param in ctx.command.params for opt in getattr(param, "opts", ())}
    # `models random --set` changes the model's config.json, not a dsft config
    takes_set = "--set" in options and ctx.command_path.split()[1:2] != ["models"]
    from dsft.config.foreign_keys import foreign_option_hint
    from dsft.config.loader import key_home  # pydantic: only on this error path, so `dsft --help` stays instant

    key = key_home(name[2:].replace("-", "_")) if takes_set else None
    if key is not None:
        exc.message = f"No such option: {name}; {key} is a config key: --set {key}=VALUE"  # type: ignore[attr-defined]
        exc.possibilities = []  # type: ignore[attr-defined]
    elif (hint := foreign_option_hint(name, options, takes_set, _command_words(ctx))) is not None:
        # a guide's launcher or TrainingArguments flag (`--num_gpus 2`, `--deepspeed ds_config.json`)
        exc.message = f"No such option: {name}; {hint}"  # type: ignore[attr-defined]
        exc.possibilities = []  # type: ignore[attr-defined]


def _run(argv: list[str] | None) -> None:
    from dsft.errors import DsftError

    argv = _debug_first(list(argv if argv is not None else sys.argv[1:]))
    debug = "--debug" in argv or os.environ.get("DSFT_DEBUG") == "1"
    if not debug:
        import warnings

        # transformers 5.x renames gradient_checkpointing -> activation_checkpointing and warns on every run
        # even where the old name is used internally (Trainer, peft); dsft keeps the name its lower bound has.
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    try:
        # Without standalone mode click returns (not raises) the code of typer.Exit(n).
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            _exit_stopped()  # typer turns Ctrl-C into the code 130
            sys.exit(code)
    except DsftError as exc:
        if debug:
            raise
        from rich.console import Console
        from rich.markup import escape

        from dsft.training.ranks import leave_the_error_to_the_node, says_error

        if says_error(exc):  # under a launcher, an error every process met alike is said once per node
            # emoji=False: a message quotes what the user typed, and rich reads `float:-1:0.001` as the :-1: emoji.
            Console(stderr=True, highlight=False, emoji=False).print(f"[bold red]error:[/] {escape(str(exc))}",
                                                                     markup=True, soft_wrap=True)
        leave_the_error_to_the_node(exc)
        sys.exit(exc.exit_code)
    except OSError as exc:
        from dsft.disk import USER_FILESYSTEM_ERRORS, describe_os_error

        if debug or exc.errno not in USER_FILESYSTEM_ERRORS:
            raise
        # A place the user chose to read or write cannot be used (full, read-only, not a directory, ...).
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False, emoji=False).print(
            f"[bold red]error:[/] {escape(describe_os_error(exc))}", markup=True, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Stopped as exc:
        _exit_stopped()  # the CLI's own handler saw the signal
        # Raised by a command after a stop its training handled (a sweep's trial, the demo's run).
        print(f"stopped ({exc})", file=sys.stderr, flush=True)
        sys.exit(128 + exc.signum)
    except (typer.Abort, KeyboardInterrupt):
        _exit_stopped()
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - usage errors from typer's bundled click land here
        if type(exc).__name__ in {"UsageError", "BadParameter", "MissingParameter", "NoSuchOption",
                                  "BadOptionUsage", "BadArgumentUsage", "FileError", "ClickException"}:
            _config_key_hint(exc)
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2) or 2)
        raise


def _exit_stopped() -> None:
    """After a stop signal: its one line and 128+signal."""
    stopped = stopping.stopped_line()
    if stopped is not None:
        print(stopped[0], file=sys.stderr, flush=True)
        sys.exit(stopped[1])
