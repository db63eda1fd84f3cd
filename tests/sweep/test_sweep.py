"""``dsft sweep``: trials are normal runs, data is prepared and tokenized once, the best is chosen on validation."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml

from dsft.errors import ConfigError
from dsft.models import skeleton
from dsft.sweep import runner
from dsft.sweep.report import Sweep, Trial, choose_best
from dsft.sweep.request import SweepRequest, check_request
from dsft.sweep.runner import OptunaPruning
from dsft.sweep.space import MAX_CORNERS, build_space, parse_grid
from dsft.training import distributed, setup
from dsft.training.environment import Environment

from grpo_toy_task import write_toy_grpo_config
from jsonl_files import read_jsonl
from tiny_sweep_config import write_config


def own_best(run_dir: Path, key: str = "eval_loss") -> float:
    """A trial's best validation value, read directly from its metrics.jsonl (steps after the start)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return min(r[key] for r in rows if key in r and r["step"] > 0)


@pytest.mark.slow
def test_grid_sweep_of_four_trials_picks_the_best_validation_loss(tmp_path: Path, tiny_model_dir, run_cli,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    calls: list[int] = []
    tokenize = setup.tokenize_conversations
    monkeypatch.setattr(setup, "tokenize_conversations", lambda *a, **k: calls.append(1) or tokenize(*a, **k))
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--grid", "train.lr=1e-4,3e-2",
                                    "--grid", "lora.r=4,8", "--out", str(out)])
    assert code == 0, stdout + stderr
    report = json.loads((out / "sweep.json").read_text())
    trials = report["trials"]
    assert [t["params"] for t in trials] == [{"train.lr": 1e-4, "lora.r": 4}, {"train.lr": 1e-4, "lora.r": 8},
                                             {"train.lr": 3e-2, "lora.r": 4}, {"train.lr": 3e-2, "lora.r": 8}]
    values = {}
    for trial in trials:
        run = Path(trial["run_dir"])
        assert run.parent == out and json.loads((run / "run.json").read_text())["status"] == "finished"
        assert (run / "final" / "adapter_model.safetensors").is_file()
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["train"]["lr"] == trial["params"]["train.lr"] and saved["lora"]["r"] == trial["params"]["lora.r"]
        assert saved["data"]["prepared_dir"] == str((out / "data").resolve())
        values[trial["number"]] = own_best(run)
        assert math.isclose(trial["value"], values[trial["number"]])
    assert len(set(values.values())) == 4, "the trials differ"
    assert report["best"] == min(values, key=values.get)
    assert calls == [1, 1], "train and val were tokenized once for all four trials"
    assert (out / "sweep.png").stat().st_size > 1000
    table = (out / "report.md").read_text()
    assert f"trial-{report['best']:03d} **best**" in table and table.count("| trial-") == 4


@pytest.mark.slow
def test_optuna_random_sweep_with_a_budget(tmp_path: Path, tiny_model_dir, run_cli) -> None:
    pytest.importorskip("optuna")
    tiny_model_dir("tiny-deepseek-llm")
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--sampler", "random", "--trials", "2",
                                    "--range", "train.lr=log:1e-4:1e-1", "--grid", "lora.r=4,8", "--out", str(out)])
    assert code == 0, stdout + stderr
    report = json.loads((out / "sweep.json").read_text())
    assert report["sampler"] == "random" and len(report["trials"]) == 2
    values = {t["number"]: own_best(Path(t["run_dir"])) for t in report["trials"]}
    assert all(1e-4 <= t["params"]["train.lr"] <= 1e-1 for t in report["trials"])
    assert report["best"] == min(values, key=values.get)


@pytest.mark.slow
def test_separate_launches_write_configs_and_collect_reads_finished_trials(tmp_path: Path, tiny_model_dir,
                                                                           run_cli) -> None:
    tiny_model_dir("tiny-deepseek-llm")
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--grid", "train.lr=1e-4,3e-2",
                                    "--launch", "slurm", "--out", str(out)])
    assert code == 0, stdout + stderr
    sbatch = (out / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-1" in sbatch and "trial-$ID.yaml" in sbatch
    lines = [line for line in (out / "launch.sh").read_text().splitlines() if line.startswith("dsft train")]
    assert len(lines) == 2 and not list(out.glob("trial-*")), "nothing trains until launched"
    # Run the first trial as its launch line says, then collect.
    _, _, config, _, run_dir = lines[0].split()
    assert run_cli(["train", config, "--out", run_dir])[0] == 0
    code, stdout, _ = run_cli(["sweep", "--collect", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in report["trials"]] == ["finished", "pending"]
    assert report["best"] == 0 and math.isclose(report["trials"][0]["value"], own_best(Path(run_dir)))


def test_collect_says_a_stopped_or_killed_trial_is_not_running(tmp_path: Path) -> None:
    """--collect read every trial status other than finished or failed as 'running': a stopped sweep's stopped
    trial (its report said 'stopped' until collected), a SLURM task killed at its time limit (recorded running,
    its process gone) and a stalled run all read 'running' for ever."""
    import socket

    out = tmp_path / "sweep"
    recorded = {"trial-000": {"status": "stopped"}, "trial-001": {"status": "stalled"},
                "trial-002": {"status": "running", "process": {"pid": 2**22 + 1, "host": socket.gethostname()}},
                "trial-003": {"status": "finished"}}
    trials = [Trial(n, {"train.lr": 10.0 ** -n}, str(out / name)) for n, name in enumerate([*recorded, "trial-004"])]
    for trial, (name, info) in zip(trials, recorded.items()):
        (out / name).mkdir(parents=True)
        (out / name / "run.json").write_text(json.dumps(info))
        (out / name / "metrics.jsonl").write_text(json.dumps({"step": 2, "eval_loss": 1.0 + trial.number}) + "\n")
    (out / "sweep.json").write_text(json.dumps(Sweep("eval_loss", False, "grid", trials).to_json()))
    collected = runner.collect_sweep(out)
    assert [t.status for t in collected.trials] == ["stopped", "finished", "interrupted", "finished", "pending"]
    assert collected.best == 0  # a stopped trial keeps the value it reached, as in the sweep that stopped


def _recorded_sweep(tmp_path: Path, status: str) -> tuple[Path, str]:
    """A sweep directory as a launched grid sweep leaves it: one trial whose run has ``status``, and sweep.json (its
    text returned, to show a refusal left it as it was)."""
    out = tmp_path / "sweep"
    (out / "trial-000").mkdir(parents=True)
    (out / "trial-000" / "run.json").write_text(json.dumps({"status": status}))
    recorded = json.dumps(Sweep("eval_loss", False, "grid", [Trial(0, {"train.lr": 1e-4}, str(out / "trial-000"))])
                          .to_json())
    (out / "sweep.json").write_text(recorded)
    return out, recorded


def test_collect_with_resume_is_refused_not_half_done(tmp_path: Path, run_cli) -> None:
    """--collect --resume read the sweep back and ignored --resume, silently (exit 0, the report rewritten, nothing
    continued): the pair is refused, one message, exit 2, before the sweep is read."""
    out, recorded = _recorded_sweep(tmp_path, "stopped")
    code, stdout, err = run_cli(["sweep", "--collect", "--resume", "--out", str(out)])
    assert code == 2 and "Traceback" not in err and not stdout, (stdout, err)
    assert " ".join(err.split()) == ("error: dsft sweep: --collect reads a launched sweep's trials back and --resume "
                                     "continues a stopped sweep here; give one of them"), err
    assert (out / "sweep.json").read_text() == recorded and not (out / "report.md").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["CONFIG"], "CONFIG"),
    (["--grid", "train.lr=1e-5,3e-5", "--seed", "0"], "--grid, --seed"),
    (["--sampler", "grid", "--prune", "--trials", "3"], "--sampler, --trials, --prune"),
    (["--range", "train.lr=log:1e-5:1e-3", "--set", "train.max_steps=2", "--preset", "qlora-24gb", "--launch", "slurm"],
     "--range, --set, --preset, --launch"),
])
def test_collect_with_what_only_a_new_sweep_reads_is_refused(tmp_path: Path, run_cli, args: list[str],
                                                              named: str) -> None:
    """--collect read the sweep in --out back and ignored a CONFIG, --grid, --range, --set, --preset, --sampler,
    --trials, --prune, --seed or --launch beside it, silently (exit 0, the report rewritten from what the sweep
    recorded): those given are named, exit 2, before the sweep is read (--sampler grid too: given, not read)."""
    out, recorded = _recorded_sweep(tmp_path, "finished")
    config = tmp_path / "other.yaml"
    config.write_text("train: {lr: 1.0e-5}\n")
    args = [str(config) if arg == "CONFIG" else arg for arg in args]
    code, stdout, err = run_cli(["sweep", "--collect", *args, "--out", str(out)])
    assert code == 2 and "Traceback" not in err and not stdout, (stdout, err)
    assert " ".join(err.split()) == (f"error: dsft sweep: {named}: not read by --collect, which reads the sweep in "
                                     "--out back as it was recorded (sweep.json, each trial's run); give them to "
                                     "start a new sweep, without --collect"), err
    assert (out / "sweep.json").read_text() == recorded and not (out / "report.md").exists()
    assert run_cli(["sweep", "--collect", "--out", str(out)])[0] == 0  # alone, it reads the sweep back


def test_a_settings_not_applied_notice_is_logged_once_per_sweep(tmp_path: Path, tiny_model_dir, run_cli,
                                                               monkeypatch, caplog) -> None:
    """train.zero_stage in one process without CUDA, preference.beta under SFT: the notices that they are not
    applied came once per trial."""
    tiny_model_dir("tiny-deepseek-llm")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed, "_cuda_available", lambda: False)
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("max_steps: 2", "max_steps: 1"))
    with caplog.at_level(logging.WARNING, logger="dsft"):
        code, stdout, stderr = run_cli(["sweep", str(config), "--set", "train.zero_stage=3",
                                        "--set", "preference.beta=0.2", "--grid", "train.lr=1e-4,2e-4,3e-4",
                                        "--out", str(tmp_path / "s")])
    assert code == 0, stdout + stderr
    assert [t["status"] for t in json.loads((tmp_path / "s" / "sweep.json").read_text())["trials"]] == ["finished"] * 3
    notices = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(notices) == 2 and notices[0].startswith("train.zero_stage=3: not applied"), notices
    assert notices[1].startswith("preference.beta=0.2 (read by dpo, kto, orpo): not applied"), notices


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "train.lr"], "--grid 'train.lr': expected KEY=..."),
    (["--grid", "lr=1e-5,2e-5"], "--grid 'lr=1e-5,2e-5': the key must name a section and a field; did you mean "
                                 "'train.lr'?"),  # the key, as the config file names a key put outside its section
    (["--range", "learning_rate=log:1e-5:1e-3"], "the key must name a section and a field; use train.lr"),
    (["--grid", "r=8,16"], "the key must name a section and a field; did you mean 'lora.r'?"),
    (["--grid", "data.val_ratio=0.1,0.2"], "data and model keys cannot be swept"),
    (["--grid", "train.lr=1e-5", "--sampler", "tpe"], "give the trial budget with --trials N"),
    (["--range", "train.lr=log:1e-5:1e-3"], "--range axes need a sampler"),
    (["--grid", "train.lr=1e-5", "--prune"], "--prune needs a sampler"),
    (["--grid", "train.lr=1e-5,-1"], "train.lr: Input should be greater than 0"),
    (["--grid", "train.lr=1e-5", "--sampler", "random", "--trials", "2", "--launch", "slurm"],
     "separate launches run a --grid sweep"),
    (["--grid", "train.lr=1e-5", "--set", "train.report_to=[wandb]"], "train.report_to: wandb is not installed"),
    (["--grid", "eval.metric=loss,nope"], "eval.metric: unknown metric 'nope'"),
    # A grid runs every combination: a trial budget beside it was ignored (3 asked, 2 ran).
    (["--grid", "train.lr=1e-5,2e-5", "--trials", "3"],
     "--trials 3: a grid sweep runs every combination of its --grid values (2 here)"),
    # Non-whole bounds of an int axis were truncated (int:4:16.5 drew from 4-16) without a word.
    (["--sampler", "random", "--trials", "2", "--range", "lora.r=int:4:16.5"],
     "--range 'lora.r=int:4:16.5': an int range needs whole-number bounds"),
])
def test_bad_sweep_requests_are_one_message(tmp_path: Path, run_cli, args: list[str], message: str) -> None:
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"), *args])
    assert code == 2 and message in stdout + stderr, stdout + stderr
    assert not (tmp_path / "s").exists(), "refused before anything was written"


@pytest.mark.parametrize(("args", "label", "problem"), [
    (["--sampler", "random", "--range", "train.lr=float:-1:0.001"],
     "--range train.lr=float:-1:0.001 (at train.lr=-1.0)", "train.lr: Input should be greater than 0"),
    (["--sampler", "tpe", "--range", "train.warmup_ratio=float:0:1.5"],
     "--range train.warmup_ratio=float:0:1.5 (at train.warmup_ratio=1.5)",
     "train.warmup_ratio: Input should be less than 1"),
    (["--sampler", "random", "--grid", "lora.r=4,8", "--range", "lora.alpha=int:0:16"],
     "--range lora.alpha=int:0:16 (at lora.alpha=0)", "lora.alpha: Input should be greater than or equal to 1"),
    # Whole-number bounds pass on an integer key; nearly every value drawn between them does not.
    (["--sampler", "random", "--range", "lora.r=float:8:64"], "--range lora.r=float:8:64 (at lora.r=28.6",
     "lora.r: Input should be a valid integer"),
    (["--sampler", "tpe", "--grid", "train.lr_scheduler=constant,cosin", "--range", "train.lr=log:1e-5:1e-3"],
     "--grid train.lr_scheduler=cosin", "train.lr_scheduler: Input should be"),
    (["--sampler", "random", "--grid", "eval.metric=loss,nope"], "--grid eval.metric=nope",
     "eval.metric: unknown metric"),
    # Each value is good on its own; together (a corner of the space) they are not.
    (["--sampler", "tpe", "--set", "train.lr_scheduler=cosine_with_restarts", "--grid",
      "train.lr_scheduler=constant,cosine_with_restarts", "--range", "train.lr_cycles=int:2:8"],
     "--range train.lr_cycles=int:2:8 (at train.lr_scheduler=constant, train.lr_cycles=2)",
     "train.lr_cycles: applies to lr_scheduler cosine_with_restarts, not constant"),
], ids=["range-low", "range-high", "int-range", "float-range-on-int", "choice", "choice-preflight", "corner"])
def test_a_random_or_tpe_search_space_is_checked_before_the_first_trial(tmp_path: Path, run_cli, monkeypatch,
                                                                       args: list[str], label: str,
                                                                       problem: str) -> None:
    """A grid sweep checked every grid point up front; random/TPE trial configs were checked only as each trial
    ran, so a bad bound or choice showed up after hours of earlier trials. Now each choice, each range bound
    and every corner of the space is checked before anything runs, refused like a grid point."""
    def no_trial(*a: object, **kw: object) -> None:
        raise AssertionError("the sweep started; it should have been refused before")

    monkeypatch.setattr(runner, "run_sweep", no_trial)
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"),
                                    "--trials", "3", *args])
    said = stdout + stderr
    assert code == 2 and "Traceback" not in said, said
    assert label in said and "1 problem(s)" in said and problem in said, said
    assert not (tmp_path / "s").exists(), "refused before anything was written"


def test_a_search_space_probes_each_value_then_every_corner() -> None:
    space = build_space(["lora.r=4,8"], ["train.lr=log:1e-5:1e-3", "lora.alpha=int:8:32"])
    probes = space.probes()
    inner = 1e-5 * 100 ** (1 / math.e)  # 1/e of the way in log space: not a round number
    assert probes[:7] == [{"lora.r": 4}, {"lora.r": 8}, {"train.lr": 1e-5}, {"train.lr": 1e-3}, {"train.lr": inner},
                          {"lora.alpha": 8}, {"lora.alpha": 32}]  # int ranges: the whole numbers a sampler draws
    assert len(probes) == 7 + 2 * 2 * 2 and {"lora.r": 8, "train.lr": 1e-3, "lora.alpha": 8} in probes[7:]
    assert build_space([], ["train.lr=float:0.1:0.2"]).probes() == [{"train.lr": 0.1}, {"train.lr": 0.2},
                                                                     {"train.lr": 0.1 + 0.1 / math.e}]


def test_a_space_with_too_many_corners_checks_each_value_and_says_so(tmp_path: Path, caplog) -> None:
    keys = ["train.lr", "train.warmup_ratio", "train.weight_decay", "train.max_grad_norm", "lora.dropout",
            "eval.early_stopping_min_delta", "train.label_smoothing", "preference.beta"]
    space = build_space(["lora.r=4,8,16,32", "train.lr_scheduler=constant,linear,cosine,cosine_with_restarts"],
                        [f"{key}=float:0.01:0.1" for key in keys] + ["lora.alpha=int:8:64"])
    assert space.corners() == 16 * 2 ** 9 > MAX_CORNERS and not space.corners_checked()
    probes = space.probes()
    assert len(probes) == 4 + 4 + 3 * 8 + 2 and all(len(params) == 1 for params in probes)  # each on its own
    request = SweepRequest(write_config(tmp_path), [], None, space, tmp_path / "s", "random", 2)
    with caplog.at_level(logging.WARNING, logger="dsft"):
        check_request(request)
    assert any("8192 corners, too many to check each" in r.getMessage() for r in caplog.records), caplog.text


def test_a_mistyped_lora_target_is_refused_before_the_sweep_prepares_data(tmp_path: Path, tiny_model_dir,
                                                                          run_cli) -> None:
    """In the base config, in one grid point or in one random/TPE choice: refused on the model's skeleton,
    before --out is written."""
    tiny_model_dir("tiny-deepseek-llm")
    for args in (["--set", "lora.targets=[q_prj]", "--grid", "train.lr=1e-4,2e-4"],
                 ["--grid", "lora.targets=q_proj,v_prj"],
                 ["--grid", "lora.targets=q_proj,v_prj", "--sampler", "random", "--trials", "2"]):
        code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"), *args])
        said = stdout + stderr
        assert code == 2 and "matches no adaptable Linear" in said and "LlamaForCausalLM" in said, said
        assert not (tmp_path / "s").exists(), "refused before anything was written"


DROPOUT_REFUSAL = ("model.hidden_dropout: the Llama architecture has no hidden-state dropout (only attention "
                   "dropout); use model.attention_dropout or lora.dropout instead")


@pytest.mark.parametrize(("args", "source"), [
    (["--grid", "train.lr=1e-4,2e-4"], "sweep.yaml: 1 problem(s)"),  # the config file sets it
    (["--set", "model.hidden_dropout=0.1", "--grid", "train.lr=1e-4,2e-4"], "--set model.hidden_dropout=0.1: 1 problem"),
    (["--grid", "model.hidden_dropout=0.0,0.1"], "--grid model.hidden_dropout=0.0 (trial-000): 1 problem"),
    (["--grid", "model.hidden_dropout=0.1", "--sampler", "random", "--trials", "2"],
     "--grid model.hidden_dropout=0.1: 1 problem"),
], ids=["config", "set", "grid", "random"])
def test_a_dropout_the_architecture_lacks_is_refused_before_the_first_trial(tmp_path: Path, run_cli, monkeypatch,
                                                                          args: list[str], source: str) -> None:
    """model.hidden_dropout on a Llama-type model was refused only inside each trial's run, after the data was
    prepared and the model loaded, every trial failing alike; `dsft train` refuses it from the model's config.
    The sweep refuses it once, before anything runs, naming where the value came from."""
    config = write_config(tmp_path)
    if source.startswith("sweep.yaml"):
        config.write_text(config.read_text().replace("name_or_path: tiny-deepseek-llm",
                                                     "name_or_path: tiny-deepseek-llm\n  hidden_dropout: 0.1"))

    def no_trial(*a: object, **kw: object) -> None:
        raise AssertionError("the sweep started; it should have been refused before")

    monkeypatch.setattr(runner, "run_sweep", no_trial)
    code, stdout, stderr = run_cli(["sweep", str(config), "--out", str(tmp_path / "s"), *args])
    said = " ".join((stdout + stderr).split())
    assert code == 2 and "Traceback" not in said, said
    assert source in said and said.count(DROPOUT_REFUSAL) == 1, said
    assert not (tmp_path / "s").exists(), "refused before anything was written"


def test_a_dropout_the_architecture_has_can_be_swept(tmp_path: Path, run_cli, monkeypatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(runner, "run_sweep", lambda request: calls.append(request) or Sweep("eval_loss", False, "grid"))
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"),
                                    "--grid", "model.attention_dropout=0.0,0.1"])
    assert code == 0 and len(calls) == 1, stdout + stderr


def test_a_sweep_builds_the_skeleton_once_for_trials_of_one_lora_setting(tmp_path: Path, tiny_model_dir, run_cli,
                                                                         monkeypatch) -> None:
    """The sweep checked lora.targets for the base config and its grid points, then each trial's run_training built
    the skeleton and checked them again: one check for the sweep, as `dsft train` has one."""
    tiny_model_dir("tiny-deepseek-llm")
    built: list[str] = []
    build = skeleton.model_skeleton
    monkeypatch.setattr(skeleton, "model_skeleton", lambda name, *a, **k: built.append(str(name)) or build(name, *a, **k))
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("max_steps: 2", "max_steps: 1"))
    code, stdout, stderr = run_cli(["sweep", str(config), "--set", "lora.targets=[q_proj, v_proj]",
                                    "--grid", "train.lr=1e-4,2e-4", "--out", str(tmp_path / "s")])
    assert code == 0, stdout + stderr
    assert [t["status"] for t in json.loads((tmp_path / "s" / "sweep.json").read_text())["trials"]] == ["finished"] * 2
    assert built == ["tiny-deepseek-llm"]


@pytest.mark.skipif(Environment().has_cuda(), reason="checks the refusal a CPU-only machine gives")
@pytest.mark.parametrize("args", [["--set", "train.distributed=deepspeed", "--grid", "train.lr=1e-4,2e-4"],
                                  ["--grid", "train.distributed=auto,deepspeed"]], ids=["base", "grid-point"])
def test_deepspeed_without_a_launcher_is_refused_as_dsft_train_refuses_it(tmp_path: Path, run_cli, monkeypatch,
                                                                          args: list[str]) -> None:
    """A sweep's local trials train in its own plain process: DeepSpeed failed in its MPI discovery there after
    the data had been prepared and the first trial's model loaded (`dsft train` refuses this config up front)."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def no_trial(*a: object, **kw: object) -> None:
        raise AssertionError("the sweep started; it should have been refused before")

    monkeypatch.setattr(runner, "run_sweep", no_trial)
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"), *args])
    said = stdout + stderr
    assert code == 2 and "Traceback" not in said, said
    assert said.count("train.distributed=deepspeed: DeepSpeed runs in a launcher's processes, and this `dsft sweep` "
                      "is one plain process") == 1, said
    assert not (tmp_path / "s").exists(), "refused before anything was written"


def test_a_sweep_written_for_launchers_is_not_refused_deepspeed_here(tmp_path: Path, run_cli, monkeypatch) -> None:
    """--launch script|slurm trains nowhere here: the refusal is for trials this process would train."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    calls: list[object] = []
    monkeypatch.setattr(runner, "run_sweep", lambda request: calls.append(request) or Sweep("eval_loss", False, "grid"))
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--out", str(tmp_path / "s"), "--set",
                                    "train.distributed=deepspeed", "--grid", "train.lr=1e-4,2e-4", "--launch", "script"])
    assert code == 0 and len(calls) == 1, stdout + stderr


def test_grid_values_are_typed_like_set_values() -> None:
    assert parse_grid("train.lr=1e-5, 3e-5") == ("train.lr", [1e-5, 3e-5])
    assert parse_grid("train.packing=true,false") == ("train.packing", [True, False])
    space = build_space(["train.lr=1e-5,3e-5", "lora.r=16,32"], [])
    assert len(space.grid()) == 4


def test_a_grid_written_as_a_yaml_list_is_told_the_comma_form() -> None:
    """Guide 000's 'compare lr 1e-5 vs 3e-5' written --grid "train.lr=[1e-5, 3e-5]" was split at its comma and
    refused as "--set 'train.lr=[1e-5': the value is not valid YAML", a --set never typed and half a value."""
    with pytest.raises(ConfigError) as info:
        parse_grid("train.lr=[1e-5, 3e-5]")
    assert str(info.value) == ("--grid 'train.lr=[1e-5, 3e-5]': list the values separated by commas, without "
                               "brackets: --grid train.lr=1e-5,3e-5")
    with pytest.raises(ConfigError) as info:
        parse_grid("train.lr=1e-5,[3e-5")
    assert str(info.value).startswith("--grid 'train.lr=1e-5,[3e-5', value '[3e-5': the value is not valid YAML")


QUOTE_IT = ("the shell splits a --grid list at its spaces: write the values without spaces (--grid "
            "train.lr=1e-5,3e-5) or quote the list (--grid 'train.lr=1e-5, 3e-5')")


@pytest.mark.parametrize(("grid", "message"), [
    (["train.lr=1e-5,", "3e-5"], f"dsft sweep: '3e-5': an argument nothing reads; {QUOTE_IT}"),
    (["train.lr=[1e-5,", "3e-5]"], f"dsft sweep: '3e-5]': an argument nothing reads; {QUOTE_IT}"),
    (["train.lr=1e-5", ",3e-5"], f"dsft sweep: ',3e-5': an argument nothing reads; {QUOTE_IT}"),
    (["train.lr=1e-5,", "train.epochs=1"], "dsft sweep: 'train.epochs=1': an argument nothing reads; the shell "
     "splits a --grid list at its spaces: give each key its own --grid (--grid train.lr=1e-5 --grid train.epochs=1)"),
], ids=["space-after-comma", "yaml-list", "space-before-comma", "two-keys"])
def test_a_grid_list_the_shell_split_at_a_space_says_to_quote_it(tmp_path: Path, run_cli, grid: list[str],
                                                                 message: str) -> None:
    """`dsft sweep c.yaml --grid train.lr=1e-5, 3e-5 --out s`, unquoted, was refused by click as 'Got unexpected
    extra argument(s) (3e-5)': no word of the --grid it came from, or of quoting."""
    code, stdout, stderr = run_cli(["sweep", str(write_config(tmp_path)), "--grid", *grid, "--out",
                                    str(tmp_path / "s")])
    assert code == 2 and " ".join((stdout + stderr).split()) == f"error: {message}", stdout + stderr
    assert not (tmp_path / "s").exists()


def test_a_split_grid_list_before_the_config_says_where_its_values_went(tmp_path: Path, run_cli) -> None:
    """With the CONFIG after the --grid (or not given), the word after the space was read as the CONFIG: 'config
    file not found: 3e-5', or a sweep over the one value before the comma."""
    code, stdout, stderr = run_cli(["sweep", "--grid", "train.lr=1e-5,", "3e-5", "--out", str(tmp_path / "s")])
    assert code == 2 and ("--grid 'train.lr=1e-5,': ends with a comma, so the values after it were read as other "
                          "arguments (the shell splits a list at its spaces); write the values without spaces (--grid "
                          "train.lr=1e-5,...) or quote the list (--grid 'train.lr=1e-5, ...')") in stdout + stderr


def test_best_trial_follows_the_metric_direction() -> None:
    trials = [Trial(0, {}, "s/trial-000", "finished", 0.5), Trial(1, {}, "s/trial-001", "finished", 0.8),
              Trial(2, {}, "s/trial-002", "failed", None)]
    assert choose_best(Sweep("eval_numeric_accuracy", True, "grid", trials)).number == 1
    assert choose_best(Sweep("eval_loss", False, "grid", trials)).number == 0


class _FakeTrial:
    def __init__(self, prune_at: int) -> None:
        self.reports: list[tuple[float, int]] = []
        self.prune_at = prune_at

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.reports[-1][1] >= self.prune_at


def test_pruning_reports_each_evaluation_and_stops_the_trial() -> None:
    from transformers import TrainerControl, TrainerState

    trial = _FakeTrial(prune_at=4)
    callback = OptunaPruning(trial, "eval_loss")
    state, control = TrainerState(), TrainerControl()
    for step, loss in ((0, 9.0), (2, 5.0), (4, 6.0)):
        state.global_step = step
        callback.on_evaluate(None, state, control, metrics={"eval_loss": loss})
    assert trial.reports == [(5.0, 2), (6.0, 4)], "step 0 (the base model) is not reported"
    assert callback.pruned and control.should_training_stop


@pytest.mark.slow
def test_grpo_sweep_trials_train_with_the_configured_rewards(tmp_path: Path, tiny_model_dir, run_cli,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Each GRPO trial is scored by ``grpo.rewards`` (the trials used to fail: no reward functions reached them)."""
    model = "tiny-r1-distill-qwen"
    tiny_model_dir(model)
    config = write_toy_grpo_config(tmp_path, monkeypatch, model, train={"max_steps": 2, "save_steps": 100},
                                   evaluation={"steps": 2, "load_best": False})
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli(["sweep", str(config), "--grid", "train.lr=1e-3,5e-3", "--out", str(out)])
    assert code == 0, stdout + stderr
    report = json.loads((out / "sweep.json").read_text())
    assert report["metric"] == "eval_reward" and report["greater_is_better"] is True, report
    for trial in report["trials"]:
        assert trial["status"] == "finished", trial
        rows = read_jsonl(Path(trial["run_dir"]) / "metrics.jsonl")
        assert any("rewards/even_tokens/mean" in r for r in rows)
        assert trial["value"] is not None and 0.0 <= trial["value"] <= 1.0


def test_a_trial_whose_config_is_refused_is_recorded_as_failed(tmp_path: Path) -> None:
    """A config error for one trial's values fails that trial, with its message, and the sweep goes on (Optuna
    catches DsftError): the trial is in sweep.json. Before, the error came from outside the trial's error
    handling, and a random/TPE sweep lost the trial from its report."""
    from types import SimpleNamespace

    from dsft.errors import ConfigError

    def refused(params: dict, prepared: Path) -> None:
        raise ConfigError("train.lr: must be > 0 (got -1.0)")

    request = SimpleNamespace(out=tmp_path, trial_config=refused, progress=False)
    sweep = Sweep("eval_loss", False, "random")
    trial = runner._run_trial(request, sweep, 3, {"train.lr": -1.0}, tmp_path / "data", runner.TrialsShared(),
                              last_trial=False)
    assert (trial.status, trial.error, trial.value) == ("failed", "train.lr: must be > 0 (got -1.0)", None)
