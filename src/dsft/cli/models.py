"""``dsft models``: list presets, write a tiny model, import a GGUF/Ollama model, show a model's LoRA targets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dsft.cli.empty_paths import empty_refused
from dsft.cli.keywords import keyword
from dsft.dtype_names import dtype_name

models_app = typer.Typer(help="Model presets: tiny test models and real-model configs.", no_args_is_help=True)


@models_app.command("list")
def list_presets(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """List the tiny presets (written on demand) and the real-model config presets (for planning)."""
    from dsft.models.presets import REAL_MODEL_FACTS, REAL_MODEL_PRESETS
    from dsft.models.tiny import TINY_PRESETS
    from dsft.plan.model_source import RELEASE_ALIASES

    tiny = [{"name": p.name, "architecture": p.architecture, "mimics": p.mimics, "tokenizer": p.tokenizer}
            for p in TINY_PRESETS.values()]
    real = [{"name": name, "architecture": config["architectures"][0], "hub_id": REAL_MODEL_FACTS[name].hub_id,
             "params_b": REAL_MODEL_FACTS[name].params_b, "active_params_b": REAL_MODEL_FACTS[name].active_params_b}
            for name, config in REAL_MODEL_PRESETS.items()]
    if as_json:
        typer.echo(json.dumps({"tiny": tiny, "real": real, "plan_aliases": RELEASE_ALIASES}, ensure_ascii=False,
                              indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table

    console = Console()
    # The names are what a user types (model.name_or_path, `dsft plan --model`): never cut, at 80 columns too.
    table = Table(Column("tiny preset", no_wrap=True), *(Column(head, overflow="fold") for head in
                  ("architecture", "mimics", "tokenizer")), title="Tiny presets (model.name_or_path)")
    for row in tiny:
        table.add_row(row["name"], row["architecture"], row["mimics"], row["tokenizer"])
    console.print(table)
    table = Table(Column("real preset", no_wrap=True), Column("hub id", no_wrap=True),
                  Column("total", justify="right", no_wrap=True), Column("active", justify="right", no_wrap=True),
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  title="Real-model configs (numbers only, for `dsft plan`; parameters in billions; architectures: "
                        "--json)")
    for row in real:
        table.add_row(row["name"], row["hub_id"], f"{row['params_b']:g}", f"{row['active_params_b']:g}")
    console.print(table)
    # `dsft plan` also takes later releases of these architectures, and its refusal points here for its presets.
    console.print("dsft plan also takes " + ", ".join(f"{alias} (as {name})" for alias, name in RELEASE_ALIASES.items())
                  + ", and each preset as deepseek-NAME", soft_wrap=True)


@models_app.command("tiny")
def write_tiny_model(
    name: str = typer.Argument(..., help="Tiny preset: tiny-deepseek-v3, tiny-r1-distill-qwen or tiny-deepseek-llm."),
    out: Path = typer.Option(..., "--out", help="Directory to write (must be empty or absent)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random weights."),
) -> None:
    """Write a tiny preset as an ordinary Hugging Face checkpoint directory."""
    from dsft.disk import removed_when_stopped
    from dsft.errors import DsftError
    from dsft.models.presets import REAL_MODEL_PRESETS
    from dsft.models.tiny import write_tiny

    if name in REAL_MODEL_PRESETS:
        raise DsftError(f"{name!r} is a real-model preset, not a tiny one: `dsft models random {name} --out DIR` "
                        "writes it full-size with random weights")
    with removed_when_stopped(out):  # stopped: the directory is empty or absent again, as the rerun needs
        path = write_tiny(name, out, seed=seed)
    typer.echo(f"wrote {name} to {path}")


@models_app.command("random")
def write_random(
    preset: str = typer.Argument(..., help="Real-model preset (see `dsft models list`), e.g. r1-distill-qwen-7b."),
    out: Path = typer.Option(..., "--out", help="Directory to write (must be empty or absent)."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="float32, bfloat16 or float16 (or fp32, bf16, fp16)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random weights."),
    overrides: list[str] = typer.Option([], "--set", help="Change a config field, KEY=VALUE (repeatable)."),
) -> None:
    """Write a full-size model with random weights from a real-model config preset (benchmarks, no hub)."""
    import yaml

    from dsft.disk import removed_when_stopped
    from dsft.errors import DsftError
    from dsft.models.random_init import DTYPES, write_random_model
    from dsft.models.tiny import TINY_PRESETS

    if preset in TINY_PRESETS:
        raise DsftError(f"{preset!r} is a tiny preset, not a real-model one: write it with `dsft models tiny {preset} "
                        "--out DIR`")
    fields = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DsftError(f"--set {item!r}: expected KEY=VALUE")
        fields[key] = yaml.safe_load(value)
    with removed_when_stopped(out):  # stopped: the directory is empty or absent again, as the rerun needs
        path = write_random_model(preset, out, dtype=keyword(dtype_name(dtype), DTYPES), seed=seed, overrides=fields)
    typer.echo(f"wrote a random-weight {preset} to {path}")


@models_app.command("import")
def import_gguf(
    source: str = typer.Argument(..., parser=empty_refused("SOURCE", "a .gguf file or ollama:NAME[:TAG]"),
                                 help="A .gguf file or ollama:NAME[:TAG] (from the local Ollama store)."),
    out: Path = typer.Option(..., "--out", help="Directory to write (must be empty or absent)."),
) -> None:
    """Convert a GGUF file or an Ollama model into a float32 Hugging Face checkpoint (dequantised)."""
    from dsft.errors import DsftError
    from dsft.models.gguf_source import OLLAMA_PREFIX, convert_gguf, dequantisation_note, gguf_file_of, is_gguf_source
    from dsft.models.ollama_tags import is_ollama_tag

    if is_ollama_tag(source):  # deepseek-r1:32b, as `ollama pull` takes it
        raise DsftError(f"{source}: an Ollama tag; write it {OLLAMA_PREFIX}{source} to import it from the local "
                        "Ollama store")
    if not is_gguf_source(source):
        raise DsftError(f"{source}: not a .gguf file or an ollama:NAME[:TAG] name")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DsftError(f"--out {out}: exists and is not an empty directory; choose a new one")
    imported = convert_gguf(gguf_file_of(source), out, source=source)
    typer.echo(f"wrote {imported.model_dir}")
    typer.echo(dequantisation_note(imported.source))


@models_app.command("targets")
def show_targets(
    name: str = typer.Argument(..., parser=empty_refused("NAME", "a preset, a model directory or a hub id"),
                              help="Real-model preset, tiny preset, local model directory or hub id."),
    include_experts: bool = typer.Option(True, "--experts/--no-experts", help="Include fused routed experts."),
) -> None:
    """Show the LoRA targets `all-linear` discovers for a model (built from its config; no weights loaded)."""
    from dsft.errors import DsftError
    from dsft.models.lora import discover_lora_targets
    from dsft.models.presets import REAL_MODEL_PRESETS, build_on_meta
    from dsft.models.loading import read_config_json
    from dsft.models.resolve import check_model_name, hub_config_cached, is_hub_id, resolve_model
    from dsft.models.skeleton import model_skeleton

    if name in REAL_MODEL_PRESETS:  # numbers only: remote-code DeepSeek-MoE is shown as its Qwen2-MoE look-alike
        model = build_on_meta(REAL_MODEL_PRESETS[name])
    else:
        check_model_name(name)
        local, source = Path(name).expanduser(), name
        if (local / "config.json").is_file():  # a broken one is named before torch is imported
            read_config_json(local / "config.json")
        elif not local.is_dir() and is_hub_id(name) and not hub_config_cached(name):
            # A hub id not downloaded yet: its files fetched first, so an id the hub (or an offline machine)
            # cannot give is named before torch is imported.
            source = str(resolve_model(name))
        # The model `dsft train` builds (never a look-alike): what lora.targets is checked against.
        model = model_skeleton(source)
        if model is None and source == name:  # remote code needing the checkpoint's files: fetched, then tried
            model = model_skeleton(resolve_model(name))
        if model is None:
            raise DsftError(f"{name}: its architecture has no native transformers class (remote code), so its "
                            "modules are known only once `dsft train` loads it (model.trust_remote_code: true)")
    targets = discover_lora_targets(model, include_experts=include_experts)
    typer.echo(json.dumps({"target_modules": targets.modules, "target_parameters": targets.parameters}, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``dsft models`` to the root app."""
    app.add_typer(models_app, name="models")
