"""Run the OpenAI-compatible server: build the engine for ``MODEL_OR_RUN`` and serve it with uvicorn.

Problems a user can fix (unknown model, bad ``--adapter``) are found before the port opens; the model
itself loads after, in the background, while ``/health`` answers 503.
"""

from __future__ import annotations

import functools
import logging

from dsft.serve.engine import TransformersEngine
from dsft.serve.serving_model import check_load_options, load_serving_model, parse_adapter_args
from dsft.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def build_engine(
    model_or_run: str, adapter_specs: list[str], settings: ServeSettings, quantize: str | None = None,
    dtype: str = "auto", device: str | None = None,
) -> TransformersEngine:
    """Check the inputs now and return an engine that loads the model when the app starts."""
    from dsft.export.source import resolve_source

    check_load_options(quantize, dtype)
    adapters = parse_adapter_args(adapter_specs)
    source = resolve_source(model_or_run)  # raises DsftError now rather than in the background loader
    load = functools.partial(
        load_serving_model, source, adapters, quantize=quantize, device=device, dtype=dtype,
        max_model_len=settings.max_model_len,
    )
    return TransformersEngine(load, max_queue=settings.max_queue, max_batch=settings.max_batch)


def run_server(engine: TransformersEngine, settings: ServeSettings, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    from dsft.serve.app import create_app

    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        log.warning("serving on %s without --api-key: anyone who can reach this port can use the model",
                    settings.host)
    uvicorn.run(create_app(engine, settings), host=settings.host, port=settings.port, log_level=log_level)
