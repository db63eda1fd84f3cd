"""Run the OpenAI-compatible server: build the engine for ``MODEL_OR_RUN`` and serve it with uvicorn.

Problems a user can fix (unknown model, bad ``--adapter``) are found before the port opens; the model
itself loads after, in the background, while ``/health`` answers 503.
"""

from __future__ import annotations

import functools
import logging

from dsft.errors import DsftError
from dsft.export.source import resolve_source
from dsft.serve.app import create_app
from dsft.serve.engine import TransformersEngine
from dsft.serve.load_options import check_load_options, parse_adapter_args
from dsft.serve.serving_model import load_serving_model
from dsft.serve.settings import ServeSettings, check_port_free, is_loopback

log = logging.getLogger(__name__)


def build_engine(
    model_or_run: str, adapter_specs: list[str], settings: ServeSettings, quantize: str | None = None,
    dtype: str = "auto", device: str | None = None, base_model: str | None = None,
) -> TransformersEngine:
    """Check the inputs now and return an engine that loads the model when the app starts.

    ``base_model`` overrides where a LoRA run's base model is found (``--base-model``).
    """
    check_load_options(quantize, dtype)
    adapters = parse_adapter_args(adapter_specs)
    source = resolve_source(model_or_run, base_model)  # raises DsftError now rather than in the background loader
    load = functools.partial(
        load_serving_model, source, adapters, quantize=quantize, device=device, dtype=dtype,
        max_model_len=settings.max_model_len,
    )
    return TransformersEngine(load, max_queue=settings.max_queue, max_batch=settings.max_batch)


def run_server(engine: TransformersEngine, settings: ServeSettings, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C); a model that fails to load stops the server with its error."""
    import uvicorn

    check_port_free(settings.host, settings.port)
    if not is_loopback(settings.host) and settings.api_key is None:  # dsft serve --allow-unauthenticated
        log.warning("serving on %s without --api-key: anyone who can reach this port can use the model",
                    settings.host)
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host=settings.host, port=settings.port,
                                           log_level=log_level))

    def stop_serving(_: Exception) -> None:
        server.should_exit = True  # a server that can never answer must not hang on 503

    engine.on_load_error = stop_serving
    server.run()
    if engine.load_error is not None:
        error = engine.load_error
        if isinstance(error, DsftError):
            raise error
        raise DsftError(f"loading the model failed: {error}") from error
