"""``dsft plan`` (memory planner), ``dsft launch`` (multi-node scripts), ``dsft convert fp8-to-bf16``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import typer

from dsft.cli.empty_paths import empty_refused
from dsft.cli.keywords import keyword

convert_app = typer.Typer(help="Checkpoint format conversions.", no_args_is_help=True)


def _gib(value: int) -> str:
    return f"{value / 1024**3:,.2f} GiB"


def _targets_text(targets: str | list[str]) -> str:
    return targets if isinstance(targets, str) else ", ".join(targets)


def _print_plan(name: str, req: Any, estimate: Any, recommendation: Any, lora_targets: str | list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    method = req.method if req.method == "full" else f"{req.method} (rank {req.lora_rank} on {_targets_text(lora_targets)})"
    table = Table(title=f"{name}: {method}, {req.nodes} x {req.gpus_per_node} GPU(s), seq {req.seq_len}, "
                        f"micro-batch {req.micro_batch}, ZeRO {req.zero}, offload {req.offload}, sp {req.sp}, "
                        f"checkpointing {'on' if req.grad_checkpointing else 'off'}")
    table.add_column("per GPU")
    table.add_column("bytes", justify="right")
    for key, value in estimate.breakdown.items():
        table.add_row(key.replace("_", " "), _gib(value))
    for key, value in estimate.phases.items():
        table.add_row(f"[dim]peak during {key.replace('_', ' ')}[/]", f"[dim]{_gib(value)}[/]")
    table.add_row("[bold]peak per GPU[/]", f"[bold]{_gib(estimate.per_gpu_bytes)}[/]")
    console.print(table)
    console.print(f"host RAM per node: {_gib(estimate.host_ram_bytes)}  "
                  + ", ".join(f"{k.replace('_', ' ')} {_gib(v)}" for k, v in estimate.host_breakdown.items()))
    console.print(f"disk per checkpoint: {_gib(estimate.checkpoint_bytes)}")
    for note in estimate.notes:
        console.print(f"[yellow]note:[/] {note}")
    over_host = req.host_mem_gib is not None and estimate.host_ram_bytes > req.host_mem_gib * 1024**3
    if over_host:
        console.print(f"[bold red]host RAM[/] {_gib(estimate.host_ram_bytes)} exceeds --host-mem {req.host_mem_gib:g} GiB")
    host = f" and {req.host_mem_gib:g} GiB of host RAM per node" if req.host_mem_gib is not None else ""
    if estimate.fits:
        console.print(f"[bold green]fits[/] in {req.gpu_mem_gib:g} GiB per GPU{host}")
        return
    # Name what does not fit: a run whose GPUs hold it but whose host RAM does not is no GPU problem.
    if estimate.per_gpu_bytes > estimate.gpu_mem_bytes:
        verdict = f"[bold red]does not fit[/] in {req.gpu_mem_gib:g} GiB per GPU"
    else:
        verdict = (f"[bold red]does not fit[/] in {req.host_mem_gib:g} GiB of host RAM per node (the GPU peak, "
                   f"{_gib(estimate.per_gpu_bytes)}, fits in {req.gpu_mem_gib:g} GiB)")
    if recommendation is None:
        console.print(f"{verdict}, and no change tried fits")
    else:
        after = recommendation.estimate
        console.print(f"{verdict}; cheapest change that fits: {' '.join(recommendation.changes)} -> "
                      f"{_gib(after.per_gpu_bytes)} per GPU"
                      + (f", {_gib(after.host_ram_bytes)} host RAM per node" if over_host else ""))

# The planner's defaults for what neither a flag nor --config gives.
PLAN_DEFAULTS: dict[str, Any] = {"method": "lora", "seq_len": 2048, "micro_batch": 1, "grad_accum": 1, "zero": 0,
                                 "offload": "none", "sp": 1, "grad_checkpointing": False, "lora_rank": 16,
                                 "lora_targets": "all-linear", "lora_experts": True}


def _plan_options(config: Path | None, world_size: int, given: dict[str, Any]) -> dict[str, Any]:
    """The flags given, else the training config's settings (checked by the preflight for ``world_size`` GPU
    processes first), else :data:`PLAN_DEFAULTS`."""
    from_config: dict[str, Any] = {}
    if config is not None:
        from dsft.config import load_config
        from dsft.plan.preflight import preflight, preflight_notices
        from dsft.training.environment import Environment

        cfg, cluster = load_config(config), Environment.gpu_cluster(world_size)
        preflight(cfg, cluster, str(config))
        for notice in preflight_notices(cfg, cluster):  # on stderr: stdout stays the plan (or its JSON)
            typer.echo(notice, err=True)
        t = cfg.train
        from_config = {"model": cfg.model.name_or_path, "method": t.method, "seq_len": t.max_seq_len,
                       "micro_batch": t.micro_batch_size, "grad_accum": t.grad_accum,
                       "zero": t.zero_stage if t.distributed == "deepspeed" else 0, "offload": t.offload,
                       "sp": t.sequence_parallel, "grad_checkpointing": t.gradient_checkpointing,
                       "lora_rank": cfg.lora.r, "lora_targets": cfg.lora.targets, "lora_experts": cfg.lora.target_experts,
                       "loss_chunk": t.loss_chunk_size if isinstance(t.loss_chunk_size, int) else None}
    return {key: value if value is not None else from_config.get(key, PLAN_DEFAULTS.get(key))
            for key, value in given.items()}


def plan(
    model: str | None = typer.Option(None, "--model",
                                     parser=empty_refused("--model", "a preset, a model directory, a config.json "
                                                          "or a hub id"),
                                     help="Preset (e.g. deepseek-r1-distill-qwen-7b, deepseek-v3; "
                                     "`dsft models list`), tiny preset, model directory, config.json path, or a hub "
                                     "id whose last part is a preset (nothing is downloaded) [default: --config's "
                                     "model.name_or_path]."),
    config: Path | None = typer.Option(None, "--config", help="Training config: its model, method, batch, sequence "
                                       "length, ZeRO/offload/SP, checkpointing, LoRA rank and targets fill the options not "
                                       "given, after the same checks as `dsft launch`."),
    method: str | None = typer.Option(None, "--method", help="full | lora | qlora [default: lora]."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", min=1, help="GPUs per node."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Nodes."),
    gpu_mem: str = typer.Option("80", "--gpu-mem", metavar="SIZE",
                                help="Memory per GPU: GiB (24), or with a unit in any case: 24GiB, 24GB, 24G, 24576MiB, "
                                "24576MB. GB, G, MB and TB are read as memory is sold, in powers of two (a GPU sold "
                                "as 24 GB holds 24 GiB): 24GB = 24GiB."),
    host_mem: str | None = typer.Option(None, "--host-mem", metavar="SIZE",
                                        help="Host RAM per node, written as --gpu-mem (checked, and respected by the "
                                        "recommendation, when given)."),
    seq_len: int | None = typer.Option(None, "--seq-len", min=1, help="Tokens per (packed) row [default: 2048]."),
    micro_batch: int | None = typer.Option(None, "--micro-batch", min=1, help="Rows per GPU per forward [default: 1]."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", min=1, help="Micro-batches per optimizer step "
                                          "[default: 1]."),
    zero: int | None = typer.Option(None, "--zero", help="DeepSpeed ZeRO stage 0-3 (0 = no DeepSpeed) [default: 0]."),
    offload: str | None = typer.Option(None, "--offload", help="none | optimizer | optimizer+param (DeepSpeed CPU "
                                       "offload) [default: none]."),
    sp: int | None = typer.Option(None, "--sp", min=1, help="Sequence-parallel (Ulysses) degree [default: 1]."),
    grad_checkpointing: bool | None = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing",
                                                   help="Recompute activations in backward [default: off]."),
    lora_rank: int | None = typer.Option(None, "--lora-rank", min=1, help="LoRA rank [default: 16]."),
    lora_targets: str | None = typer.Option(None, "--lora-targets", help="Modules LoRA adapts, as lora.targets: "
                                            "all-linear, or names such as q_proj,v_proj [default: all-linear]."),
    full_logits: bool = typer.Option(False, "--full-logits", help="Size the stock full-logits loss instead of dsft's chunked loss."),
    per_expert_modules: bool = typer.Option(False, "--per-expert-modules", help="Routed experts as separate modules (remote-code DeepSeek) rather than transformers' fused experts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Will it fit? Per-GPU memory by category, host RAM, checkpoint size, and the cheapest fix."""
    from dsft.config import LoraConfig
    from dsft.errors import DsftError
    from dsft.plan.memory import METHODS, OFFLOADS, PlanRequest, request_dict
    from dsft.plan.memory_size import memory_gib
    from dsft.plan.planner import estimate_memory, load_profile
    from dsft.plan.recommend import recommend
    from dsft.training.environment import job_size_problem

    job_problem = job_size_problem(nodes, gpus_per_node)
    if job_problem:  # before torch loads
        raise DsftError(job_problem)
    lora_rank_flag = lora_rank  # a rank from --config was checked by its preflight, naming lora.r
    # Where the model came from, for its errors: the flag, else the config file's key (no --model was given).
    model_given_as = "--model" if model is not None or config is None else f"{config}: model.name_or_path"
    method, offload = keyword(method, METHODS), keyword(offload, OFFLOADS)
    options = _plan_options(config, nodes * gpus_per_node, {
        "model": model, "method": method, "seq_len": seq_len, "micro_batch": micro_batch, "grad_accum": grad_accum,
        "zero": zero, "offload": offload, "sp": sp, "grad_checkpointing": grad_checkpointing, "lora_rank": lora_rank,
        "loss_chunk": None, "lora_experts": None,
        # read as lora.targets reads it (q_proj,v_proj is a list)
        "lora_targets": None if lora_targets is None else LoraConfig(targets=lora_targets).targets})
    model, method, seq_len, micro_batch, grad_accum, zero, offload, sp, grad_checkpointing, lora_rank, chunk = (
        options[key] for key in ("model", "method", "seq_len", "micro_batch", "grad_accum", "zero", "offload", "sp",
                                 "grad_checkpointing", "lora_rank", "loss_chunk"))
    if model is None:
        raise DsftError("--model: name the model to plan (or give --config with model.name_or_path)")
    if method not in METHODS:
        raise DsftError(f"--method {method}: choose full, lora or qlora")
    if offload not in OFFLOADS:
        raise DsftError(f"--offload {offload}: choose none, optimizer or optimizer+param")
    if zero not in (0, 1, 2, 3):
        raise DsftError(f"--zero {zero}: choose 0, 1, 2 or 3")
    gpu_mem_gib = memory_gib("--gpu-mem", gpu_mem)
    host_mem_gib = None if host_mem is None else memory_gib("--host-mem", host_mem)
    targets, experts = options["lora_targets"], options["lora_experts"]
    if method == "full" and lora_targets is None:
        # A full fine-tune reads no lora key (dsft train does not check them): the LoRA moves the recommender
        # may try are sized for the defaults.
        targets, experts = PLAN_DEFAULTS["lora_targets"], PLAN_DEFAULTS["lora_experts"]
    # The model first: a missing directory or a broken config.json is named before torch is imported (below).
    # Libraries imported on the way (DeepSpeed's accelerator probe) log to stdout; keep stdout for the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        profile = load_profile(model, targets, experts, given_as=model_given_as)
    from dsft.training.loss import GPU_CHUNK_ROWS  # torch: only once the flags and the model are known good

    req = PlanRequest(method=method, gpus_per_node=gpus_per_node, nodes=nodes, gpu_mem_gib=gpu_mem_gib,  # type: ignore[arg-type]
                      host_mem_gib=host_mem_gib,
                      seq_len=seq_len, micro_batch=micro_batch, grad_accum=grad_accum, zero=zero,
                      offload=offload, sp=sp, grad_checkpointing=grad_checkpointing,  # type: ignore[arg-type]
                      lora_rank=lora_rank,
                      # train.loss_chunk_size: auto trains with GPU_CHUNK_ROWS rows per chunk on a GPU
                      loss_chunk=None if full_logits else (chunk or GPU_CHUNK_ROWS),
                      per_expert_modules=per_expert_modules)
    with contextlib.redirect_stdout(sys.stderr):
        widest = profile.shapes.largest_useful_rank()
        if lora_rank_flag is not None and method != "full" and widest is not None and lora_rank > widest:
            raise DsftError(f"--lora-rank {lora_rank}: above {widest}, the widest smaller side of the matrices LoRA "
                            f"adapts in {profile.name} ({_targets_text(targets)}); a higher rank adds parameters and "
                            f"no capacity: set --lora-rank to at most {widest}")
        estimate = estimate_memory(profile, req)
        recommendation = None if estimate.fits else recommend(profile, req)
    if as_json:
        payload = {"model": profile.name, "request": request_dict(req), **estimate.to_dict(),
                   "recommendation": recommendation.to_dict() if recommendation else None,
                   "params": {"total": profile.shapes.total_params, "active": profile.shapes.active_params,
                              "lora": profile.shapes.lora_params(lora_rank), "lora_targets": targets}}
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_plan(profile.name, req, estimate, recommendation, targets)


def launch(
    config: Path = typer.Argument(..., help="The training config every process runs."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Nodes."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", min=1, help="GPUs (processes) per node."),
    launcher: str = typer.Option("torchrun", "--launcher", help="torchrun | deepspeed | accelerate | slurm."),
    out: Path = typer.Option(..., "--out", help="Directory for the launch files (new or empty; see --overwrite)."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory the job trains into (default OUT/run)."),
    master_addr: str | None = typer.Option(
        None, "--master-addr", help="Host of node 0, overridable by MASTER_ADDR [default: 127.0.0.1 on one node; "
        "several nodes need it here or in MASTER_ADDR]."),
    master_port: int = typer.Option(29500, "--master-port", min=1, max=65535, help="Rendezvous port."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow a non-empty --out (an earlier launch's too): the "
                                   "launch files are replaced, other files are left alone."),
    set_: list[str] = typer.Option([], "--set", help="Override a key for every process: --set train.max_seq_len=32768 "
                                   "(repeatable; checked now, written into the scripts' dsft train command)."),
) -> None:
    """Write runnable per-node launch scripts (with documented NCCL settings) for a training config."""
    from dsft.config import load_config
    from dsft.data.input_checks import check_inputs, names_data
    from dsft.disk import check_output_dir
    from dsft.plan.launch import LAUNCHERS, LaunchPlan, check_master_addr, write_launch_files
    from dsft.plan.preflight import preflight, preflight_notices
    from dsft.errors import DsftError
    from dsft.training.environment import Environment, job_size_problem

    check_master_addr(master_addr)
    job_problem = job_size_problem(nodes, gpus_per_node)
    if job_problem:
        raise DsftError(job_problem)
    notices: list[str] = []
    data_checked = False
    if config.is_file():  # a missing file is reported by write_launch_files, as before
        # The job's GPUs, not this machine's: the scripts run there with nodes x gpus_per_node processes.
        cfg = load_config(config, set_, set_flags=set_)
        cluster = Environment.gpu_cluster(max(nodes, 1) * max(gpus_per_node, 1))
        preflight(cfg, cluster, str(config), set_)
        notices = preflight_notices(cfg, cluster)
        data_checked = names_data(cfg)
        if data_checked:  # dsft train's early check, from here, where the scripts run it: a typo costs no queued job
            check_inputs(cfg)
        else:
            notices.append("data: the config names none (data.train or data.prepared_dir), so no data was checked; "
                           "the job's `dsft train` refuses it until one is set (in the config or with --set)")

    check_output_dir(out)  # created by write_launch_files once the config and launcher are checked
    plan_ = LaunchPlan(config=config.resolve(), run_dir=(run_dir or out / "run").resolve(), nodes=nodes,
                       gpus_per_node=gpus_per_node, master_addr=master_addr, master_port=master_port,
                       overrides=tuple(set_), data_checked=data_checked)
    for path in write_launch_files(plan_, keyword(launcher, LAUNCHERS), out, overwrite=overwrite):
        typer.echo(str(path))
    for notice in notices:  # what the job's runs will say first, said now (stdout stays the files written)
        typer.echo(notice, err=True)


def fp8_to_bf16(
    src: Path = typer.Argument(..., help="FP8 checkpoint directory (DeepSeek V3/R1 release layout)."),
    dst: Path | None = typer.Argument(None, help="Output directory for the BF16 checkpoint (new or empty)."),
    out: Path | None = typer.Option(None, "--out", help="The output directory, as every other command names "
                                       "it (instead of DST)."),
) -> None:
    """Dequantise FP8 block-scaled weights to BF16 shard by shard, dropping the MTP layer and scales."""
    from dsft.errors import ConfigError

    if dst is None and out is None:
        raise ConfigError("dsft convert fp8-to-bf16: give the output directory, as DST or --out DIR")
    if dst is not None and out is not None:
        raise ConfigError(f"dsft convert fp8-to-bf16: the output directory is given twice (DST {dst}, --out {out}); "
                          "give one")
    dst = dst if dst is not None else out
    assert dst is not None
    from dsft.models.convert_fp8 import convert_fp8_to_bf16

    report = convert_fp8_to_bf16(src, dst)
    typer.echo(f"{len(report.shards_written)} shards, {report.dequantized} tensors dequantised, "
               f"{report.copied} copied, {report.skipped_mtp} MTP tensors and {report.dropped_scales} scales dropped, "
               f"{report.total_bytes / 1e9:.2f} GB written to {dst}")


def register(app: typer.Typer) -> None:
    """Add ``plan``, ``launch`` and the ``convert`` group to the root app."""
    app.command("plan")(plan)
    app.command("launch")(launch)
    convert_app.command("fp8-to-bf16")(fp8_to_bf16)
    app.add_typer(convert_app, name="convert")
