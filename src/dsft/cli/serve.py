"""``dsft serve``, ``dsft chat`` and ``dsft deploy k8s``: serve a model or run, talk to it, deploy it."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dsft.cli import base_model as base_model_flag
from dsft.cli import stopping
from dsft.cli.empty_paths import A_MODEL_OR_RUN, empty_refused
from dsft.cli.keywords import keyword
from dsft.dtype_names import dtype_name
from dsft.cli.thinking_flag import say_unused_thinking

if TYPE_CHECKING:
    from dsft.serve.settings import ServeSettings

ADAPTER_HELP = "A named LoRA adapter, NAME=PATH (an adapter directory or a LoRA run); repeatable."
CONFIG_HELP = ("YAML whose `serve:` section gives the defaults [default: a run directory's own config.yaml, else "
               "the schema's].")
# Tokens a chat reply may generate when --max-new-tokens is not given (lowered to serve.max_tokens).
CHAT_REPLY_TOKENS = 512
MODEL_OR_RUN_HELP = "Model directory, tiny preset, hub id, or a run directory (or its final/ or one of its checkpoints)."
MODEL_OR_RUN_GIVEN = empty_refused("MODEL_OR_RUN", A_MODEL_OR_RUN)  # '' is refused naming it


def _default_served_name(model_or_run: str) -> str:
    return Path(model_or_run.rstrip("/")).name or "dsft"


@base_model_flag.names_the_flag
def serve(
    model_or_run: str = typer.Argument(..., parser=MODEL_OR_RUN_GIVEN, help=MODEL_OR_RUN_HELP),
    adapter: list[str] = typer.Option([], "--adapter", help=ADAPTER_HELP),
    host: str | None = typer.Option(None, "--host", help="Bind address [default: 127.0.0.1, loopback]."),
    port: int | None = typer.Option(None, "--port", help="Port [default: 8000]."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="DSFT_API_KEY",
                                       help="Require `Authorization: Bearer KEY` on every endpoint but /health."),
    served_model_name: str | None = typer.Option(None, "--served-model-name",
                                                 help="Name clients use as `model` (default: the directory name)."),
    engine: str | None = typer.Option(None, "--engine", help="transformers (in-process, default) or vllm (GPU)."),
    tensor_parallel_size: int | None = typer.Option(None, "--tensor-parallel-size", min=1,
                                                    help="GPUs per model (vllm engine) [default: serve.tensor_parallel_size]."),
    pipeline_parallel_size: int | None = typer.Option(
        None, "--pipeline-parallel-size", min=1, help="Pipeline stages over a Ray cluster (vllm engine) "
        "[default: serve.pipeline_parallel_size]."),
    engine_args: str | None = typer.Option(
        None, "--engine-args", help='Extra `vllm serve` arguments, one shell-quoted string, e.g. '
        '"--enable-expert-parallel --max-num-seqs 64" [default: serve.engine_args].'),
    max_model_len: int | None = typer.Option(None, "--max-model-len", help="Context length cap (tokens)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Largest max_tokens a request may ask for."),
    max_queue: int | None = typer.Option(None, "--max-queue", help="Queued requests before answering 503."),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Requests generated together in one batch."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: dynamic int8 weights for CPU serving."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16 (or fp32, bf16, fp16)."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="vllm engine: print the command instead of running it."),
    base_model: str | None = typer.Option(None, "--base-model", parser=base_model_flag.GIVEN,
                                          help=base_model_flag.HELP),
    allow_unauthenticated: bool = typer.Option(
        False, "--allow-unauthenticated", help="Serve off loopback without an API key, on purpose (e.g. behind a "
        "gateway that authenticates); otherwise a --host other than loopback needs --api-key."),
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /generate, /health)."""
    stopping.restore()  # SIGTERM: uvicorn shuts the server down
    from dsft.errors import DsftError
    from dsft.export.source import check_source
    from dsft.models.loading import DTYPES
    from dsft.serve.load_options import QUANTIZE_CHOICES
    from dsft.serve.settings import ENGINES, ServeSettings, check_open_bind, serve_defaults

    engine, quantize, dtype = keyword(engine, ENGINES), keyword(quantize, QUANTIZE_CHOICES), keyword(dtype_name(dtype), DTYPES)
    serve_cfg = serve_defaults(model_or_run, config)
    engine_from_flag = engine is not None
    engine = engine or serve_cfg.engine
    if engine not in ENGINES:
        raise DsftError(f"--engine {engine}: choose {' or '.join(ENGINES)}")
    if served_model_name is not None and (not served_model_name or served_model_name != served_model_name.strip()):
        # "" fell back to the directory's name without a word: clients asking for "" would get a 404.
        raise DsftError(f"--served-model-name {served_model_name!r}: must be a non-empty name without surrounding "
                        "spaces; omit it to use the directory's name")
    settings = ServeSettings.from_config(
        serve_cfg, host=host, port=port, api_key=api_key, max_queue=max_queue, max_batch=max_batch,
        max_tokens=max_tokens, max_model_len=max_model_len,
        served_model_name=served_model_name or serve_cfg.served_model_name or _default_served_name(model_or_run),
    )
    parallel = (tensor_parallel_size or serve_cfg.tensor_parallel_size,
                pipeline_parallel_size or serve_cfg.pipeline_parallel_size)
    extra = _engine_args(engine_args) if engine_args is not None else list(serve_cfg.engine_args)
    # A dry run binds nothing, but the command it prints must be one a real start accepts: refused the same way.
    if not allow_unauthenticated:
        check_open_bind(settings.host, settings.api_key, exposes="anyone who reaches it can use the model",
                        key_from="DSFT_API_KEY, serve.api_key", source="" if host else "serve.host",
                        opt_out="--allow-unauthenticated")
    if engine == "vllm":
        _refuse_transformers_only(max_tokens=max_tokens, max_queue=max_queue, max_batch=max_batch, quantize=quantize,
                                  dtype=None if dtype == "auto" else dtype)
        _serve_vllm(model_or_run, adapter, settings, parallel, extra, dry_run, base_model)
        return
    if dry_run:
        raise DsftError("--dry-run applies to --engine vllm only")
    if tensor_parallel_size or pipeline_parallel_size or engine_args is not None:
        raise DsftError("--tensor-parallel-size/--pipeline-parallel-size/--engine-args apply to --engine vllm only")
    # The config's vLLM deployment settings are not this server's: --engine transformers on the command line
    # serves the same config's model here (a local check of guide 003's cluster config); asked for by the config
    # itself (serve.engine: transformers), they are a contradiction within it.
    if (parallel != (1, 1) or extra) and not engine_from_flag:
        raise DsftError("serve.tensor_parallel_size/pipeline_parallel_size/engine_args apply to serve.engine: vllm "
                        "only")
    from dsft.serve.load_options import check_load_options, parse_adapter_args

    check_load_options(quantize, dtype)  # before the server's imports (torch): a bad flag answers at once
    parse_adapter_args(adapter)
    check_source(model_or_run, base_model)  # the flags first, then the model they apply to
    from dsft.serve.server import build_engine, run_server

    run_server(build_engine(model_or_run, adapter, settings, quantize=quantize, dtype=dtype,
                            base_model=base_model), settings)


def _refuse_transformers_only(**given: object) -> None:
    """--engine vllm: the flags only dsft's own server applies are refused, naming them (they were ignored without a
    word). vLLM's server answers the requests itself (docs/serve.md, "What dsft does not check under vLLM"), so dsft's
    request limits never see a request, and vLLM loads the model its own way."""
    from dsft.errors import DsftError

    flags = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is not None]
    if flags:
        raise DsftError(f"{'/'.join(flags)}: apply to --engine transformers only; with --engine vllm, vLLM's own "
                        "server answers the requests and loads the model: give vLLM's options through --engine-args, "
                        'e.g. "--max-num-seqs 64 --dtype bfloat16 --quantization fp8" (--max-model-len caps prompt '
                        "plus completion)")


def _engine_args(text: str) -> list[str]:
    """``--engine-args`` split as a shell would; an unclosed quote is refused naming the flag (it was a
    ValueError traceback)."""
    from dsft.errors import DsftError

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise DsftError(f"--engine-args {text!r}: cannot split it as a shell would ({exc}); quote it as one "
                        "shell-quoted string, e.g. --engine-args \"--max-num-seqs 64\"") from None


def _serve_vllm(model_or_run: str, adapter: list[str], settings: "ServeSettings", parallel: tuple[int, int],
                engine_args: list[str], dry_run: bool, base_model: str | None = None) -> None:
    """Build the equivalent ``vllm serve`` command; print it (--dry-run) or run it."""
    from dsft.export.source import resolve_source
    from dsft.models.resolve import default_cache_dir
    from dsft.serve.load_options import parse_adapter_args
    from dsft.serve.vllm import build_vllm_command, chat_template_path, printable, run_vllm

    source = resolve_source(model_or_run, base_model)
    command = build_vllm_command(source, parse_adapter_args(adapter), settings,
                                 chat_template_path(source, default_cache_dir()), *parallel, engine_args)
    if dry_run:
        typer.echo(printable(command))
        return
    typer.echo(f"running: {printable(command)}", err=True)
    raise typer.Exit(run_vllm(command))


@base_model_flag.names_the_flag
def chat(
    model_or_run: str = typer.Argument(..., parser=MODEL_OR_RUN_GIVEN, help=MODEL_OR_RUN_HELP),
    system: str | None = typer.Option(None, "--system", help="System prompt."),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", "--max-new-tokens", min=1, help=f"Most tokens per reply, up to serve.max_tokens (the cap "
        f"`dsft serve` puts on a request) [default: {CHAT_REPLY_TOKENS}, or serve.max_tokens if lower]."),
    temperature: float | None = typer.Option(None, "--temperature",
                                             help="0 (greedy) to 2. Default: the model's recommended."),
    thinking: bool | None = typer.Option(None, "--thinking/--no-thinking", help="Hybrid-thinking families only "
                                         "(another template: a notice says it changes nothing)."),
    seed: int | None = typer.Option(None, "--seed", help="Repeatable sampling."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: dynamic int8 weights on CPU."),
    base_model: str | None = typer.Option(None, "--base-model", parser=base_model_flag.GIVEN,
                                          help=base_model_flag.HELP),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Chat in the terminal (streamed; reasoning dimmed). /reset, /system TEXT, /help, /exit. Reads piped stdin too."""
    from rich.console import Console

    from dsft.export.source import check_source
    from dsft.serve.load_options import QUANTIZE_CHOICES, check_load_options, check_temperature
    from dsft.serve.settings import check_reply_tokens, serve_defaults_and_source

    quantize = keyword(quantize, QUANTIZE_CHOICES)
    check_load_options(quantize, "auto")
    check_temperature(temperature)
    max_tokens = check_reply_tokens(max_tokens, *serve_defaults_and_source(model_or_run, config),
                                    flag="--max-new-tokens", default=CHAT_REPLY_TOKENS)
    check_source(model_or_run, base_model)
    # torch and transformers load only once the flags and the model path are known good.
    from dsft.export.source import resolve_source
    from dsft.serve.chat import ChatSession, run_chat
    from dsft.serve.serving_model import load_serving_model

    console = Console(highlight=False)
    serving = load_serving_model(resolve_source(model_or_run, base_model), quantize=quantize)
    say_unused_thinking(serving.template_name, thinking)  # the family is known once the model is open
    session = ChatSession(serving, max_tokens=max_tokens, temperature=temperature, thinking=thinking, seed=seed,
                          system=system)
    if isinstance(sys.stdin, io.TextIOWrapper):  # undecodable bytes reach run_chat, which names them, not a traceback
        sys.stdin.reconfigure(errors="surrogateescape")
    run_chat(session, sys.stdin, console, interactive=sys.stdin.isatty())


def deploy_k8s(
    model_or_run: str = typer.Argument(..., parser=MODEL_OR_RUN_GIVEN,
                                      help="Model directory, tiny preset or hub id (merge LoRA runs first)."),
    out: Path = typer.Option(..., "--out",
                          help="Directory for deployment.yaml, service.yaml and Dockerfile (new or empty; "
                          "see --overwrite)."),
    image: str = typer.Option("dsft-serve:latest", "--image", help="Image the Deployment runs (build it from the Dockerfile)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs per pod (0 = CPU)."),
    replicas: int = typer.Option(1, "--replicas", help="Pods."),
    name: str = typer.Option("dsft", "--name", help="Deployment and Service name."),
    served_model_name: str = typer.Option("dsft", "--served-model-name", help="Name clients use as `model`."),
    api_key_secret: str | None = typer.Option(None, "--api-key-secret",
                                              help="Secret (key `api-key`) whose value becomes the server's API key."),
    memory_request: str = typer.Option("8Gi", "--memory-request",
                                       help="Memory the scheduler reserves for each pod (a Kubernetes quantity)."),
    memory_limit: str = typer.Option("32Gi", "--memory-limit",
                                     help="Memory above which a pod is killed; room for the model's weights."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Allow a non-empty --out: dsft's own files there (the manifests, Dockerfile and "
        "dsft-source/) are replaced, other files are left alone."),
) -> None:
    """Write a Kubernetes Deployment + Service (GPU limits, /health probes) and a Dockerfile."""
    from dsft.disk import check_fresh_output_dir, output_dir, partial_output_removed
    from dsft.serve.k8s import deploy_spec_for, k8s_files, write_k8s

    # --out (empty, or --overwrite), the model and every file's text come before the directory is created.
    check_fresh_output_dir(out, overwrite)
    spec = deploy_spec_for(model_or_run, name=name, image=image, gpus=gpus, replicas=replicas,
                           served_model_name=served_model_name, api_key_secret=api_key_secret,
                           memory_request=memory_request, memory_limit=memory_limit)
    files = k8s_files(spec)
    created = not out.exists()
    output_dir(out)
    with partial_output_removed(out, what="the deployment files", created=created):  # a full disk leaves none
        written = write_k8s(files, out)
    for path in written:
        typer.echo(f"wrote {path}")
    quoted_out = shlex.quote(str(out))  # a directory with a space is one argument of the printed commands
    build = f"docker build -t {image} {quoted_out} && docker push {image} && kubectl apply -f {quoted_out}"
    model_copy = out / "model"
    if spec.model_is_local and model_copy.exists():  # an earlier deploy's copy: `cp -r` would nest a second one in it
        typer.echo(f"next: {build} ({model_copy} is already there and goes into the image as it is; replace it if "
                   f"{spec.model_ref} changed)")
    elif spec.model_is_local:
        typer.echo(f"next: cp -r {shlex.quote(spec.model_ref)} {shlex.quote(str(model_copy))} && {build}")
    else:
        typer.echo(f"next: {build}")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``chat`` and the ``deploy`` group to the root app."""
    app.command("serve")(serve)
    app.command("chat")(chat)
    deploy = typer.Typer(help="Deployment files for a served model.", no_args_is_help=True)
    deploy.command("k8s")(deploy_k8s)
    app.add_typer(deploy, name="deploy")
