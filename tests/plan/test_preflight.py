"""Preflight: every config refusal that used to wait for the data or the model comes from `dsft config show`
(and `dsft train`, `dsft launch`) at once, exit 2, naming the keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.plan import preflight as preflight_module
from dsft.plan.preflight import preflight_problems
from dsft.training import distributed
from dsft.training.environment import Environment

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = pytest.mark.skipif(Environment().has_cuda(), reason="checks the refusal a CPU-only machine gives")
# One SP setting that passes every SP check but the one under test.
SP_OK = ["train.distributed=deepspeed", "train.packing=false", "data.val_ratio=0",
         "model.name_or_path=tiny-r1-distill-qwen"]

REFUSALS = [
    pytest.param(["train.precision=fp16"], "train.precision=fp16: fp16 mixed precision (loss scaling) needs a CUDA GPU", marks=CPU_ONLY,
                 id="fp16-cpu"),
    pytest.param(["train.optimizer=adamw_8bit"], "train.optimizer: adamw_8bit needs a CUDA GPU", marks=CPU_ONLY,
                 id="adamw8bit-cpu"),
    pytest.param(["train.method=qlora"], "train.method=qlora needs a CUDA GPU", marks=CPU_ONLY, id="qlora-cpu"),
    pytest.param(["train.distributed=fsdp"], "train.distributed=fsdp needs CUDA GPUs", marks=CPU_ONLY, id="fsdp-cpu"),
    pytest.param(["train.distributed=deepspeed", "train.zero_stage=2", "train.offload=optimizer+param"],
                 "train.offload=optimizer+param: parameter offload needs train.zero_stage=3", id="offload-stage"),
    pytest.param(["train.distributed=deepspeed", "train.zero_stage=0", "train.offload=optimizer"],
                 "train.offload: offload needs train.zero_stage >= 1", id="offload-zero0"),
    pytest.param(["train.distributed=ddp", "train.offload=optimizer"],
                 "train.offload=optimizer: offload needs train.distributed=deepspeed or fsdp", id="offload-ddp"),
    pytest.param(["train.sequence_parallel=8", *SP_OK[:-1], "model.name_or_path=tiny-deepseek-v3"],
                 "train.sequence_parallel=8: must divide the model's attention heads (4)", id="sp-heads"),
    pytest.param(["train.sequence_parallel=2", *SP_OK[:-2]], "evaluation during training is not supported",
                 id="sp-eval"),
    pytest.param(["train.sequence_parallel=2", "train.distributed=ddp", *SP_OK[1:]],
                 "train.sequence_parallel=2: needs train.distributed=deepspeed", id="sp-strategy"),
    pytest.param(["train.sequence_parallel=3", *SP_OK], "must divide train.max_seq_len", id="sp-seq-len"),
    pytest.param(["train.sequence_parallel=2", "train.distributed=deepspeed", "data.val_ratio=0",
                  "model.name_or_path=tiny-r1-distill-qwen", "model.attn_implementation=sdpa"],
                 "cannot keep packed examples apart", id="sp-packing-sdpa"),
    pytest.param(["eval.metric=accuracy"], "eval.metric: unknown metric 'accuracy'; choose one of loss, perplexity",
                 id="metric-unknown"),
    pytest.param(["eval.metric=numeric_accuracy"], "a generation-eval metric; set eval.generation_steps > 0",
                 id="metric-needs-generation"),
    pytest.param(["eval.metric=bleu", "eval.generation_steps=5", "eval.metrics=[f1]"],
                 "eval.metric=bleu: not computed; add it to eval.metrics", id="metric-not-computed"),
    pytest.param(["eval.metrics=[f1, accuracy]"], "eval.metrics: unknown metric(s) 'accuracy'", id="metrics-unknown"),
    pytest.param(["eval.steps=4", "train.save_steps=10"], "train.save_steps (10) must be a multiple of eval.steps (4)",
                 id="best-needs-save"),
    pytest.param(["eval.early_stopping_patience=2", "eval.steps=5", "data.val_ratio=0", "train.save_steps=5"],
                 "eval.early_stopping_patience needs validation data", id="patience-needs-val"),
    # Died in transformers' evaluation loop allocating 400 GB, after the model loaded.
    pytest.param(["train.micro_batch_size=99999999999", "train.max_seq_len=512"],
                 "train.micro_batch_size=99999999999: with train.max_seq_len=512, a forward of 51,199,999,999,488 "
                 "tokens; attention kernels index a forward's tokens with int32 (at most 2,147,483,647): lower "
                 "train.micro_batch_size to at most 4194303", id="tokens-per-forward"),
    pytest.param(["lora.r=65"], "lora.r=65: above the hidden size of tiny-deepseek-v3 (64", id="lora-rank"),
    # The DataLoader would start processes until the machine ran out of them, after the model loaded.
    pytest.param(["train.num_workers=99999999999"], "train.num_workers=99999999999: DataLoader worker processes, more "
                 "than 4 for each of this machine's", id="data-workers"),
]


def test_data_workers_are_bounded_by_this_machines_cpus_not_a_clusters(monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = load_config(None, ["train.num_workers=9"])
    assert [p for p in preflight_problems(cfg, Environment(world_size=1)) if "num_workers" in p] == [
        "train.num_workers=9: DataLoader worker processes, more than 4 for each of this machine's 2 CPUs; set at most 8 "
        "(0, the default, loads in the training process: dsft's rows are tokenized before training starts)"]
    assert not [p for p in preflight_problems(load_config(None, ["train.num_workers=8"]), Environment(world_size=1))
                if "num_workers" in p]
    assert not [p for p in preflight_problems(cfg, Environment.gpu_cluster(1)) if "num_workers" in p]
    problems = preflight_problems(load_config(None, ["data.num_proc=99999999999"]), Environment(world_size=1))
    assert "data.num_proc=99999999999: tokenizing processes, more than 4 for each of this machine's 2 CPUs; set at " \
           "most 8 (or leave it unset: see its description)" in problems, problems


@pytest.mark.parametrize(("overrides", "message"), REFUSALS)
def test_config_show_refuses(overrides: list[str], message: str, run_cli) -> None:
    code, out, err = run_cli(["config", "show", *[a for o in overrides for a in ("--set", o)]])
    assert code == 2, out + err
    assert message in err and "Traceback" not in err
    assert out == ""  # nothing printed as if the config were fine


@pytest.mark.parametrize("overrides", [
    pytest.param([*SP_OK[:-1], "model.name_or_path=tiny-deepseek-v3"], id="mla"),
    pytest.param([SP_OK[0], *SP_OK[2:]], id="packing-auto-attention"),
    pytest.param([SP_OK[0], SP_OK[2], "model.name_or_path=tiny-deepseek-v3"], id="mla-packing"),
])
def test_config_show_accepts_sequence_parallel(overrides: list[str], run_cli) -> None:
    """Multi-head latent attention (its values padded around Ulysses) and packed rows on dsft's segment attention
    (``model.attn_implementation: auto`` without flash-attn) train under sequence parallelism; the two-process
    runs are in tests/distributed/test_sequence_parallel.py."""
    code, out, err = run_cli(["config", "show", "--set", "train.sequence_parallel=2",
                              *[a for o in overrides for a in ("--set", o)]])
    assert code == 0, err
    assert "sequence_parallel: 2" in out


@pytest.mark.skipif(Environment().has_cuda(), reason="checks the refusal a CPU-only machine gives")
def test_fsdp_on_cpu_names_the_fix_that_runs_here(run_cli) -> None:
    code, out, err = run_cli(["config", "show", "--set", "train.distributed=fsdp"])
    assert code == 2 and out == ""
    line = next(line for line in err.splitlines() if line.startswith("  - train.distributed=fsdp"))  # the problem
    assert "train.distributed=auto" in line  # what runs on this machine (ddp/deepspeed need a launcher here)
    assert "deepspeed" not in line.split(";", 1)[1]


def test_world_size_refusals_come_from_the_launcher_or_the_job(run_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun sets it: sp 2 cannot divide 3 processes
    code, _, err = run_cli(["config", "show", "--set", "train.sequence_parallel=2", *sum((["--set", o] for o in SP_OK), [])])
    assert code == 2 and "must divide the number of processes (3)" in err
    monkeypatch.delenv("WORLD_SIZE")
    config = tmp_path / "sp.yaml"
    config.write_text(json.dumps({"train": {"sequence_parallel": 4, "distributed": "deepspeed", "packing": False},
                                  "data": {"val_ratio": 0}, "model": {"name_or_path": "tiny-r1-distill-qwen"}}))
    code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(tmp_path / "o")])
    assert code == 2 and "needs at least 4 processes" in err
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "8", "--out", str(tmp_path / "o")])
    assert code == 0, err


def test_every_problem_is_listed_at_once(run_cli) -> None:
    code, _, err = run_cli(["config", "show", "--set", "eval.metric=nope", "--set", "eval.early_stopping_patience=1",
                            "--set", "data.val_ratio=0", "--set", "train.distributed=ddp",
                            "--set", "train.offload=optimizer"])
    assert code == 2 and "3 problem(s)" in err
    assert all(key in err for key in ("eval.metric", "eval.early_stopping_patience", "train.offload"))


def test_gguf_export_without_its_verifier_is_refused(run_cli, monkeypatch) -> None:
    real = preflight_module.importlib.util.find_spec
    monkeypatch.setattr(preflight_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    code, _, err = run_cli(["config", "show", "--set", "export.format=gguf"])
    assert code == 2 and "export.format=gguf with export.verify: true needs llama-cpp-python" in err
    code, _, err = run_cli(["config", "show", "--set", "export.format=gguf", "--set", "export.verify=false"])
    assert code == 0, err


@pytest.mark.parametrize("metric", ["eval_loss", "loss", "eval_perplexity", "perplexity", "rougeL",
                                    "eval_numeric_accuracy", "numeric_accuracy", "macro_f1"])
def test_every_metric_a_run_logs_is_accepted(metric: str) -> None:
    cfg = load_config(None, [f"eval.metric={metric}", "eval.generation_steps=2"])
    assert preflight_problems(cfg, Environment(world_size=1, cuda=False)) == []


def test_defaults_and_shipped_examples_pass() -> None:
    assert preflight_problems(load_config(None), Environment(world_size=1, cuda=False)) == []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        assert preflight_problems(load_config(path), Environment.gpu_cluster(8)) == [], path


def test_a_refusal_loads_no_torch_and_no_transformers(tmp_path) -> None:
    """The refusal comes before anything heavy is imported (measured: well under 2 s of CPU)."""
    script = ("import sys\nfrom dsft.cli.app import main\ntry:\n    main(['config', 'show', '--set', 'eval.metric=x'])\n"
              "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.stdout.split() == ["2", "False", "False"], result.stdout + result.stderr


def test_train_refuses_before_reading_data(tmp_path, run_cli) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"data": {"train": [str(tmp_path / "absent.jsonl")]}, "eval": {"metric": "acc"}}))
    code, _, err = run_cli(["train", str(config), "--out", str(tmp_path / "run")])
    assert code == 2 and "eval.metric: unknown metric 'acc'" in err
    assert not (tmp_path / "run").exists()


def test_plan_takes_a_training_config_after_the_same_checks(run_cli, tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"model": {"name_or_path": "deepseek-ai/DeepSeek-V3"},
                                  "data": {"val_ratio": 0},
                                  "train": {"sequence_parallel": 3, "distributed": "deepspeed", "packing": False,
                                            "max_seq_len": 3072}}))
    code, _, err = run_cli(["plan", "--config", str(config), "--gpus-per-node", "6"])
    # what `dsft train` would say
    assert code == 2 and "train.sequence_parallel=3: must divide the model's attention heads (128)" in err
    config.write_text(json.dumps({"model": {"name_or_path": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
                                  "train": {"max_seq_len": 4096, "gradient_checkpointing": True, "grad_accum": 8},
                                  "lora": {"r": 32}}))
    code, out, err = run_cli(["plan", "--config", str(config), "--json", "--micro-batch", "2"])
    assert code == 0, err
    request = json.loads(out)["request"]
    assert (request["seq_len"], request["grad_checkpointing"], request["grad_accum"], request["lora_rank"]) == \
        (4096, True, 8, 32)
    assert request["micro_batch"] == 2  # a flag wins over the config
    assert json.loads(out)["model"] == "deepseek-r1-distill-qwen-7b"


def test_a_launch_resolves_auto_for_the_gpu_cluster_not_this_machine(run_cli, tmp_path, monkeypatch) -> None:
    """Written on a machine without CUDA, a launch for GPUs resolves train.distributed=auto to DeepSpeed there,
    so ZeRO offload (which DDP cannot do) is accepted, not refused as if the run were on this CPU."""
    monkeypatch.setattr(distributed, "_cuda_available", lambda: False)  # this machine: no GPU
    monkeypatch.chdir(tmp_path)  # the data the config names is checked, from here
    (tmp_path / "x.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    config = tmp_path / "offload.yaml"
    config.write_text(json.dumps({"train": {"distributed": "auto", "offload": "optimizer"},
                                  "model": {"name_or_path": "tiny-deepseek-v3"}, "data": {"train": ["x.jsonl"]}}))
    code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert "offload needs" not in " ".join(preflight_problems(load_config(config), Environment.gpu_cluster(2)))
    # On this machine itself (two CPU processes) the same config is refused: auto means DDP here.
    local = Environment(world_size=2, cuda=False)
    assert any("offload needs" in p for p in preflight_problems(load_config(config), local))


def test_grpo_rewards_are_built_once_per_preflight(tmp_path, monkeypatch) -> None:
    """A custom reward module's reward is looked up (here: constructed on access) once per preflight, not once
    for the reward check and again for the metrics ``eval.metric`` may name; preflight hands it on to training."""
    (tmp_path / "counted_rewards.py").write_text(
        "BUILT = 0\n\n\n"
        "def __getattr__(name):\n"
        "    global BUILT\n"
        "    if name != 'brevity':\n"
        "        raise AttributeError(name)\n"
        "    BUILT += 1\n\n"
        "    def brevity(prompts, completions, **kwargs):\n"
        "        return [-len(c) for c in completions]\n"
        "    return brevity\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(None, ["train.objective=grpo", "grpo.rewards=[{name: 'counted_rewards:brevity'}]",
                             "eval.metric=eval_rewards/brevity/mean", "grpo.num_generations=2",
                             "train.micro_batch_size=2", "grpo.max_completion_len=64"])
    counted = pytest.importorskip("counted_rewards")
    assert counted.BUILT == 0
    assert preflight_problems(cfg, Environment()) == []
    assert counted.BUILT == 1
    # `dsft train` trains with the functions preflight built: none is built again.
    rewards = preflight_module.preflight(cfg, Environment())
    assert counted.BUILT == 2 and [function.__name__ for function in rewards.functions] == ["brevity"]


@pytest.mark.skipif(Environment().has_cuda(), reason="checks the refusal a CPU-only machine gives")
def test_train_with_deepspeed_as_a_plain_command_on_cpu_is_refused_before_the_data(tmp_path, run_cli,
                                                                                   monkeypatch) -> None:
    """Guide 003's config as written (ZeRO-3) run by `dsft train` on a CPU: DeepSpeed, started by no launcher,
    failed in MPI discovery after the data and the model had loaded."""
    from dsft.training.preflight import unlaunched_problems

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run = tmp_path / "run"
    code, out, err = run_cli(["train", str(ROOT / "examples/guides/003-671b-full-sft/config.yaml"), "--out", str(run)])
    assert code == 2 and "Traceback" not in err, err
    assert "train.distributed=deepspeed: DeepSpeed runs in a launcher's processes" in err
    assert "set train.distributed=auto" in err
    assert not run.exists()
    cfg = load_config(None, ["train.distributed=deepspeed"])
    assert unlaunched_problems(cfg, Environment(world_size=2, cuda=False)) == []  # under torchrun / deepspeed
    assert unlaunched_problems(load_config(None), Environment(cuda=False)) == []


@pytest.mark.skipif(Environment().has_cuda(), reason="checks the refusal a CPU-only machine gives")
def test_train_lists_the_launcher_problem_with_the_others_at_once(tmp_path, run_cli, monkeypatch) -> None:
    """Guide 000's settings as its user writes them (ZeRO-3, 24 data workers, selection by numeric accuracy) on a
    CPU: `dsft train` said two problems, and once they were fixed a third, that DeepSpeed needs a launcher here.
    Every problem is in the one refusal, for `dsft train`, `dsft sweep` (local trials) and `dsft demo`."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = tmp_path / "guide.yaml"
    data = tmp_path / "train.jsonl"
    data.write_text('{"conversations": [{"role": "user", "content": "紫家峪水库的建成月？"}, '
                    '{"role": "assistant", "content": "1970年5月。"}]}\n', encoding="utf-8")
    config.write_text(f"data:\n  train: {data}\ntrain:\n  distributed: deepspeed\n  zero_stage: 3\n  num_workers: 24\n"
                      "eval:\n  metric: numeric_accuracy\n")
    sets = ["--set", "eval.metric=numeric_accuracy", "--set", "train.distributed=deepspeed",
            "--set", "train.num_workers=24"]
    for command in (["train", str(config), "--out", str(tmp_path / "run")],
                    ["sweep", str(config), "--grid", "train.lr=1e-5,3e-5", "--out", str(tmp_path / "sweep")],
                    ["demo", "--out", str(tmp_path / "demo"), *sets]):
        code, _, err = run_cli(command)
        assert code == 2 and "Traceback" not in err, err
        assert "3 problem(s)" in err, err
        for key in ("train.num_workers=24", "eval.metric=numeric_accuracy", "train.distributed=deepspeed"):
            assert f"  - {key}" in err, (command[0], key, err)
    assert not any(tmp_path.joinpath(name).exists() for name in ("run", "sweep"))


def test_export_tolerance_is_read_as_a_bound_before_anything_loads(run_cli) -> None:
    code, _, err = run_cli(["config", "show", "--set", "export.tolerance=top1=120%"])
    assert code == 2 and "export.tolerance 'top1=120%': top1= must be a percentage in (0%, 100%]" in err
    code, _, err = run_cli(["config", "show", "--set", "export.tolerance=diff=10%,outliers=10%"])
    assert code == 0, err


def test_grpo_group_size_is_checked_against_the_processes_the_run_will_have(run_cli, tmp_path, monkeypatch) -> None:
    """A GRPO config for two processes (2 completions per process and step, groups of 4) was refused by `dsft config
    show` as if it ran on one; it is checked where the number of processes is known: a launcher's WORLD_SIZE, a
    launch script's job, or the one process of a plain `dsft train`."""
    config = tmp_path / "grpo.yaml"
    config.write_text(json.dumps({"train": {"objective": "grpo", "micro_batch_size": 2, "grad_accum": 1},
                                  "grpo": {"num_generations": 4, "max_completion_len": 64}}))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, out, err = run_cli(["config", "show", str(config)])
    assert code == 0, err
    assert "num_generations: 4" in out
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run_cli(["config", "show", str(config)])[0] == 0
    monkeypatch.setenv("WORLD_SIZE", "3")  # 2 x 1 x 3 = 6 completions per step: not whole groups of 4
    code, _, err = run_cli(["config", "show", str(config)])
    assert code == 2 and "must divide the completions per optimizer step" in err and "processes = 6" in err
    monkeypatch.delenv("WORLD_SIZE")
    for gpus, expected in (("2", 0), ("3", 2)):
        out_dir = tmp_path / f"launch{gpus}"
        code, _, err = run_cli(["launch", str(config), "--nodes", "1", "--gpus-per-node", gpus, "--out", str(out_dir)])
        assert code == expected, err
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(config), "--out", str(run)])  # no launcher: one process, 2 completions
    assert code == 2 and "Traceback" not in err
    assert "processes = 2); each prompt's group" in err and "this `dsft train` is one process" in err
    assert not run.exists()


@pytest.mark.parametrize("objective", ["dpo", "grpo"])
def test_sequence_parallel_with_a_preference_objective_names_no_packing_problem(objective: str, run_cli) -> None:
    """Packing applies to SFT only (TRL's trainers pad each batch): refusing sequence parallelism for DPO/GRPO
    named two packing problems (sdpa, micro-batch of 2) the objective never has."""
    sets = ["train.sequence_parallel=2", *SP_OK, "train.packing=true", "model.attn_implementation=sdpa",
            "train.micro_batch_size=2", "grpo.num_generations=2", "grpo.max_completion_len=64"]
    code, _, err = run_cli(["config", "show", *[a for s in [f"train.objective={objective}", *sets]
                                                  for a in ("--set", s)]])
    assert code == 2 and f"train.sequence_parallel: not supported with train.objective={objective}" in err
    assert "1 problem(s)" in err and "pack" not in err
    code, _, err = run_cli(["config", "show", *[a for s in sets for a in ("--set", s)]])  # SFT packs: told
    assert code == 2 and "cannot keep packed examples apart" in err


@pytest.mark.parametrize("objective", ["dpo", "kto", "orpo", "grpo"])
def test_sequence_parallel_with_a_preference_objective_names_only_that_refusal(objective: str, run_cli) -> None:
    """A preference objective refuses sequence parallelism outright: the SP checks that hold only for a run that
    splits its rows (evaluation, the strategy, dividing max_seq_len) are beside the point and not listed. Before,
    DPO with validation data also listed 'evaluation during training is not supported with sequence parallelism'."""
    sets = ["train.sequence_parallel=3", "train.distributed=ddp", "data.val_ratio=0.1",
            "model.name_or_path=tiny-r1-distill-qwen", "train.micro_batch_size=2", "grpo.num_generations=2",
            "grpo.max_completion_len=64"]
    code, _, err = run_cli(["config", "show", *[a for s in [f"train.objective={objective}", *sets]
                                                  for a in ("--set", s)]])
    assert code == 2 and f"train.sequence_parallel: not supported with train.objective={objective}" in err
    assert "1 problem(s)" in err, err
    code, _, err = run_cli(["config", "show", *[a for s in sets for a in ("--set", s)]])  # SFT splits its rows: told
    assert code == 2 and "evaluation during training is not supported" in err
    assert "needs train.distributed=deepspeed" in err and "must divide train.max_seq_len" in err


def test_a_full_fine_tune_of_float16_weights_is_refused_before_anything_loads(run_cli, tmp_path) -> None:
    """Guide 004 loads its model with torch_dtype=torch.float16 and fine-tunes every weight. As `model.dtype:
    float16` with `train.method: full`, `dsft config show` accepted it and `dsft train` trained the float16
    weights in place (no fp32 master copy): the loss was NaN at step 2 and the run stopped with nothing kept.
    A LoRA adapter over a float16 base and full fine-tuning in the default fp32 stay accepted."""
    config = tmp_path / "local.yaml"
    config.write_text("model:\n  name_or_path: tiny-deepseek-llm\n  dtype: float16\ntrain:\n  method: full\n")
    code, _, err = run_cli(["config", "show", str(config)])
    assert code == 2 and "Traceback" not in err
    assert f"{config}: 1 problem(s)" in err and "model.dtype=float16 with train.method: full" in err
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(config), "--out", str(run)])
    assert code == 2 and "model.dtype=float16 with train.method: full" in err and not run.exists()
    for sets in (["--set", "train.method=lora"], ["--set", "model.dtype=auto"], ["--set", "model.dtype=bfloat16"]):
        code, _, err = run_cli(["config", "show", str(config), *sets])
        assert code == 0, err
