"""``dsft demo``: the whole pipeline on the embedded default, on any machine, in a few minutes.

Writes the tiny DeepSeek-V3 preset (MLA + MoE, the real 129k DeepSeek tokenizer), fine-tunes it on the
shipped reservoir question-answer sample (Chinese and English), reports validation loss before and
after, and compares base and tuned answers on the validation prompts.

The demo trains every weight (``train.method=full``): the tiny model is randomly initialised, so a
low-rank adapter on a frozen random network has little to adapt (measured: LoRA r=16, 120 steps, lr 1e-2
moved validation loss only from 11.79 to 10.96), while full fine-tuning of its 17M parameters learns the
task within a minute on two CPU cores. ``--set train.method=lora`` runs the LoRA path instead.
"""

from __future__ import annotations

from pathlib import Path

import typer

# The embedded default. Tuned so a 2-core CPU finishes in a few minutes and validation loss falls clearly.
DEMO_OVERRIDES = [
    "model.name_or_path=tiny-deepseek-v3",
    "data.val_ratio=0.1",
    "train.method=full",
    "train.max_steps=100",
    "train.micro_batch_size=4",
    "train.max_seq_len=512",
    "train.lr=3e-3",
    "train.weight_decay=0.0",
    "train.warmup_ratio=0.05",
    "train.save_steps=20",
    "train.logging_steps=2",
    "eval.steps=10",
    "eval.load_best=true",
    "eval.max_new_tokens=48",
]


def demo(
    out: Path = typer.Option(Path("dsft-demo"), "--out", help="Where the demo writes its run, model and report."),
    set_: list[str] = typer.Option([], "--set", help="Override a demo setting: --set train.max_steps=20."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Compare base and tuned answers at the end."),
) -> None:
    """Fine-tune a tiny DeepSeek-V3 on the shipped sample data, then compare it with the base model."""
    from rich.console import Console

    from dsft.config import load_config
    from dsft.data.samples import sample_path
    from dsft.disk import output_dir
    from dsft.training.run import run_training

    console = Console()
    out = output_dir(out.resolve())
    run_dir = out / "run"
    if run_dir.exists():
        raise _error(f"--out {out}: already holds a demo run; remove it or pass another --out")
    overrides = [*DEMO_OVERRIDES, f"data.train=[{sample_path('reservoirs')}]", f"model.cache_dir={out / 'models'}",
                 *set_]
    cfg = load_config(None, overrides)
    console.rule(f"[bold]dsft demo: {cfg.train.method} fine-tune of tiny-deepseek-v3 on the reservoir sample (CPU)")
    result = run_training(cfg, run_dir)
    console.print(f"[bold green]trained[/] {result.global_step} steps in {result.elapsed_s:.1f}s")
    if result.first_eval_loss is not None:
        console.print(f"validation loss: {result.first_eval_loss:.4f} (before) -> {result.last_eval_loss:.4f} "
                      f"(last), best {result.best_eval_loss:.4f}")
    report = None
    if compare:
        from dsft.eval.compare import compare_models

        val = run_dir / "data" / "val.jsonl"
        report = compare_models(base=cfg.model.name_or_path, tuned_run=run_dir, data=val, out_dir=out / "compare",
                                max_new_tokens=cfg.eval.max_new_tokens, cache_dir=cfg.model.cache_dir)
        from dsft.eval.report import comparison_table

        console.print(comparison_table(report))
    console.rule("[bold]where everything is")
    rows = [
        ("run directory", run_dir),
        ("resolved config", run_dir / "config.yaml"),
        ("metrics (one line per step)", run_dir / "metrics.jsonl"),
        ("loss curve", run_dir / "loss.png"),
        ("TensorBoard", f"tensorboard --logdir {run_dir / 'tb'}"),
        ("data report", run_dir / "data" / "data_report.md"),
        ("weights + tokenizer" if cfg.train.method == "full" else "LoRA adapter + tokenizer", result.final_dir),
    ]
    if report is not None:
        rows.append(("before/after report", out / "compare" / "report.html"))
    for name, where in rows:
        console.print(f"  {name:<28} {where}")


def _error(message: str) -> Exception:
    from dsft.errors import DsftError

    return DsftError(message)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
