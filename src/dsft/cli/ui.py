"""``dsft ui [--runs DIR] [--host 127.0.0.1] [--port 7860] [--api-key K]``: the web dashboard."""

from __future__ import annotations

from pathlib import Path

import typer

from dsft.cli import stopping

DEFAULT_RUNS = Path("runs")  # created on first use; a --runs given by hand must exist


def ui(
    runs: Path | None = typer.Option(
        None, "--runs", show_default=False,
        help="Existing directory holding run directories (default: runs/, created on first use)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default); another needs --api-key."),
    port: int = typer.Option(7860, "--port", help="Port."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="DSFT_UI_API_KEY",
                                       help="Require this key (sign-in page, or `Authorization: Bearer KEY`)."),
) -> None:
    """Web dashboard over run directories: prepare data, start runs, live metrics, data masks, compare, chat, export."""
    stopping.restore()  # SIGTERM: uvicorn shuts the server down
    from dsft.errors import DsftError
    from dsft.serve.settings import check_open_bind, check_port_free, is_loopback

    if api_key is not None and (not api_key or api_key != api_key.strip()):
        raise DsftError("--api-key (DSFT_UI_API_KEY): must be a non-empty key without surrounding spaces; omit it "
                        "to run on loopback without a key")
    if not 1 <= port <= 65535:
        raise DsftError(f"--port: must be 1..65535, got {port}")
    check_open_bind(host, api_key, exposes="the dashboard can start training runs", key_from="DSFT_UI_API_KEY")
    if runs is None:
        runs = DEFAULT_RUNS
        runs.mkdir(parents=True, exist_ok=True)
    elif not runs.exists():  # a mistyped root would otherwise become a new, empty dashboard
        raise DsftError(f"--runs {runs}: no such directory; give an existing runs root, or create it first "
                        f"(mkdir -p {runs})")
    elif not runs.is_dir():
        raise DsftError(f"--runs {runs}: is not a directory; give the directory that holds the run directories")
    check_port_free(host, port)
    import uvicorn  # the server and the app (torch, through the chat engine) load once everything is checked

    from dsft.ui.app import create_app

    # DNS rebinding: on loopback only its own names are answered (starlette cannot parse an IPv6 Host header).
    allowed = sorted({"127.0.0.1", "localhost", host}) if is_loopback(host) and ":" not in host else None
    app = create_app(runs, api_key=api_key, allowed_hosts=allowed)
    typer.echo(f"dsft ui: http://{host}:{port}/  (runs under {runs.resolve()})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
