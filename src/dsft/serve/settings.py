"""Server settings: what ``dsft serve`` was started with.

One frozen dataclass shared by the app (auth, names, limits) and the engine (queue and batch sizes),
built from the ``serve`` config section plus command-line flags. Which ``serve`` section that is, for a model or a
run, is :func:`serve_defaults`'s to say (``dsft serve`` and the dashboard's chat both ask it).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from dsft.config import ServeConfig, load_config
from dsft.errors import DsftError
from dsft.training.rundir import RunDir

# The serving engines, as serve.engine names them.
ENGINES: tuple[str, ...] = get_args(ServeConfig.model_fields["engine"].annotation)
# Host names that reach this machine only; any IP address ipaddress calls loopback does too (127.0.0.0/8, ::1).
LOOPBACK_NAMES = ("localhost",)
# Largest request body accepted (bytes): a 128k-token prompt is well under 2 MiB of JSON; a bigger body
# is answered 413 before it is parsed.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Limits and identity of one server.

    ``max_queue`` counts requests waiting for the worker (not those being generated); one more is
    answered 503. ``max_tokens`` caps a request's ``max_tokens``; ``max_model_len`` (tokens, prompt plus
    completion) defaults to the model's ``max_position_embeddings`` when None. ``max_body_bytes`` caps a
    request body (413 above it). Values out of range raise :class:`DsftError` naming the flag.
    """

    served_model_name: str = "dsft"
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_queue: int = 64
    max_batch: int = 8
    max_tokens: int = 2048
    max_model_len: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        problems = []
        if self.api_key is not None and (not self.api_key or self.api_key != self.api_key.strip()):
            problems.append("--api-key (serve.api_key, DSFT_API_KEY): must be a non-empty key without surrounding "
                            "spaces; omit it to serve without a key")
        if not 1 <= self.port <= 65535:
            problems.append(f"--port: must be 1..65535, got {self.port}")
        for flag, value in (("--max-queue", self.max_queue), ("--max-batch", self.max_batch),
                            ("--max-tokens", self.max_tokens), ("--max-model-len", self.max_model_len),
                            ("max_body_bytes", self.max_body_bytes)):
            if value is not None and value < 1:
                problems.append(f"{flag}: must be >= 1, got {value}")
        if problems:
            raise DsftError("invalid server settings", problems)

    @classmethod
    def from_config(cls, serve_cfg: Any, **overrides: Any) -> "ServeSettings":
        """Build from a :class:`dsft.config.schema.ServeConfig`; ``overrides`` that are None are ignored."""
        values: dict[str, Any] = {
            "served_model_name": serve_cfg.served_model_name or cls.served_model_name,
            "api_key": serve_cfg.api_key,
            "host": serve_cfg.host,
            "port": serve_cfg.port,
            "max_queue": serve_cfg.max_queue,
            "max_batch": serve_cfg.max_batch,
            "max_tokens": serve_cfg.max_tokens,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


def serve_defaults(model_or_run: str | Path, config: Path | None = None) -> ServeConfig:
    """The ``serve:`` section that gives serving ``model_or_run`` its defaults: ``config``'s (``--config``), else the
    run's own config.yaml's where ``model_or_run`` names a run (:meth:`RunDir.find`: the run directory, its ``final/``
    or one of its checkpoints; as ``dsft export`` takes its ``export:`` section), else the schema's. A directory
    holding only config.yaml is no run :meth:`RunDir.find` takes (training has not written run.json): the schema's."""
    return serve_defaults_and_source(model_or_run, config)[0]


def serve_defaults_and_source(model_or_run: str | Path, config: Path | None = None) -> tuple[ServeConfig, str]:
    """:func:`serve_defaults`, and where they come from, for a message: the config file's path, or "the schema's
    default" (``dsft chat`` names it where ``--max-new-tokens`` passes ``serve.max_tokens``)."""
    if config is not None:
        return load_config(config).serve, str(config)
    run = RunDir.find(model_or_run)
    if run is not None and run.config_path.is_file():
        return run.config.serve, str(run.config_path)
    return load_config(None).serve, "the schema's default"


def check_reply_tokens(max_tokens: int | None, serve_cfg: ServeConfig, source: str, *, flag: str,
                       default: int) -> int:
    """The tokens one reply may generate: ``max_tokens`` (``default`` when None, lowered to the cap), refused above
    ``serve.max_tokens``, the cap ``dsft serve`` puts on a request's ``max_tokens``, so that a model answers a
    terminal chat within the bound it answers its clients (``source``: where ``serve_cfg`` came from)."""
    limit = serve_cfg.max_tokens
    if max_tokens is None:
        return min(default, limit)
    if max_tokens > limit:
        raise DsftError(f"{flag} {max_tokens}: above serve.max_tokens, {limit} ({source}), the most a reply may "
                        f"generate (as `dsft serve` caps a request's max_tokens); ask for at most {limit}, or raise "
                        "serve.max_tokens in a YAML passed with --config")
    return max_tokens


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve to any interface


def check_open_bind(host: str, api_key: str | None, *, exposes: str, key_from: str, source: str = "",
                    opt_out: str | None = None) -> None:
    """Refuse a bind off loopback without an API key (``dsft serve``, ``dsft ui``), before anything loads.

    ``exposes`` says what anyone who reaches the address could do, ``key_from`` where else a key may come from,
    ``source`` where the host came from when not ``--host`` (a config key), ``opt_out`` the flag that serves
    without a key on purpose (the caller skips this check when it is given).
    """
    refuse_empty_host(host)
    if api_key is not None or is_loopback(host):
        return
    allow = f", or pass {opt_out} to serve without one on purpose" if opt_out else ""
    where = f" ({source})" if source else ""
    raise DsftError(f"--host {host}{where}: {exposes}; off loopback it needs --api-key (or {key_from}){allow}")


def refuse_empty_host(host: str) -> None:
    """An empty ``--host`` (an unset variable: ``--host "$HOST"``) would listen on every interface."""
    if not host.strip():
        raise DsftError(f"--host {host!r}: empty; leave it out for 127.0.0.1 (this machine only), or write 0.0.0.0 "
                        "to listen on every interface")


def check_port_free(host: str, port: int) -> None:
    """Refuse a bind address that is already taken, naming it, before the model loads; or a host that is no name
    or address of this machine, naming the host (the port is not what is wrong)."""
    refuse_empty_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                raise DsftError(f"--host {host}: cannot listen on it ({exc.strerror}): not a name or address of this "
                                "machine; use 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or one of "
                                "its own addresses") from None
            raise DsftError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                            "another server may be running there, pick another with --port") from exc
