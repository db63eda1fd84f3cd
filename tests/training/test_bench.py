"""`dsft bench train` smoke test: tiny lengths and one timed step; checks the report's shape, not timings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import typer
from typer.testing import CliRunner

from dsft.cli import bench as bench_cli
from dsft.training.bench.runner import add_ratios
from dsft.training.bench.synthetic import make_examples, supervised_count
from dsft.training.bench.systems import Meter, dsft_counts, padding_free_counts, useful_flops
from dsft.training.collators import make_collator
from dsft.training.environment import cpu_multiplies_bf16
from dsft.training.guards import count_real_tokens
from dsft.training.segment_attention import SEGMENT_ATTENTION

from host_reads import HostReads


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """dsft"""

    bench_cli.register(app)
    return app


def test_synthetic_examples_follow_the_length_mix_and_mask(tiny_model_dir) -> None:
    from dsft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    examples = make_examples(tokenizer, 6, seed=0)
    assert examples == make_examples(tokenizer, 6, seed=0)  # fixed seed
    for e in examples:
        prompt = e.labels.index(next(x for x in e.labels if x != -100))
        assert 30 <= prompt <= 330 and 150 <= len(e.input_ids) - prompt <= 2000
        assert e.labels[-1] == tokenizer.eos_token_id  # EOS supervised
        assert e.input_ids[0] == tokenizer.bos_token_id
    assert any("的" in e.prompt or "我们" in e.prompt for e in examples)  # Chinese and English
    assert supervised_count([-100, 5, 6, -100, 7], max_len=4) == 2


def test_short_mix_has_no_reasoning_and_a_long_tail_of_prompts(tiny_model_dir) -> None:
    from dsft.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir("tiny-deepseek-v3"))
    examples = make_examples(tokenizer, 60, seed=0, mix="short")
    prompts = [e.labels.index(next(x for x in e.labels if x != -100)) for e in examples]
    answers = [len(e.input_ids) - p for p, e in zip(prompts, examples)]
    assert all("<think>" not in e.target for e in examples)
    assert all(15 <= p <= 1700 for p in prompts) and all(5 <= a <= 700 for a in answers)
    assert any(p > 450 for p in prompts)  # the long tail is drawn
    assert sorted(prompts)[len(prompts) // 2] < 450 and max(answers) > 100


@pytest.mark.parametrize("attention", ["sdpa", SEGMENT_ATTENTION])
def test_the_bench_counts_real_tokens_as_training_does(attention: str) -> None:
    """Real tokens are the collator's exact count (what training logs), also where an example's last tokens
    are unsupervised (ChatML's newline after the EOS), which a count from the labels would miss."""
    examples = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, -100, 5]},
                {"input_ids": [6, 7, 8, 9], "labels": [-100, 7, 8, -100]}]
    collator = make_collator(SimpleNamespace(packing=True, max_seq_len=16), SimpleNamespace(pad_token_id=0),
                             attention)
    batch = collator(examples)
    with HostReads() as reads:  # counted on the device: a read per micro-batch would stall a GPU's queue
        real, supervised = dsft_counts(batch)
    assert reads.names == []
    assert real == count_real_tokens(batch) == 9
    assert supervised == 3 + 2  # next-token targets: position 0 of a row never is one


def test_the_bench_counts_a_padding_free_batch_on_the_device() -> None:
    batch = {"input_ids": torch.ones(1, 7, dtype=torch.long), "labels": torch.tensor([[-100, 2, 3, -100, -100, 6, 7]])}
    meter = Meter(warmup_steps=0)
    with HostReads() as reads:
        real, supervised = padding_free_counts(batch)
        meter.count(0, real, batch["input_ids"].numel(), supervised)
    assert reads.names == []
    meter.on_train_end(None, None, None)
    assert (meter.real_tokens, meter.padded_tokens, meter.supervised_tokens) == (7, 7, 4)
    assert all(type(n) is int for n in (meter.real_tokens, meter.padded_tokens, meter.supervised_tokens))


def test_useful_flops() -> None:
    assert useful_flops(10.0, 3, real_tokens=2, supervised_tokens=1, full=False) == 4 * (20 + 3)


def test_mfu_takes_each_part_against_the_peak_of_its_dtype() -> None:
    from dsft.training.bench.runner import mfu

    peaks = {"fp32": 100.0, "bf16": 250.0}
    row = {"seconds": 2.0, "body_flops": 100.0, "lm_head_flops": 500.0, "body_dtype": "fp32", "lm_head_dtype": "bf16"}
    assert mfu(row, peaks) == pytest.approx((1.0 + 2.0) / 2.0)
    assert mfu(row | {"lm_head_dtype": "fp32"}, peaks) == pytest.approx((1.0 + 5.0) / 2.0)
    assert mfu(row | {"cpu_seconds": 6.0}, peaks, seconds_key="cpu_seconds") == pytest.approx(3.0 / 6.0)


def test_ratios_are_dsft_over_the_other_system() -> None:
    report = {"systems": {"dsft": {"supervised_tokens_per_s": 30.0, "peak_memory_bytes": 50},
                          "trl": {"supervised_tokens_per_s": 10.0, "peak_memory_bytes": 100}}}
    add_ratios(report)
    assert report["ratios"] == {"vs_trl": 3.0} and report["memory_ratios"] == {"vs_trl": 0.5}


def _tiny_spec(system: str, model_dir: Path, tmp_path: Path) -> dict:
    from dsft.models.loading import load_tokenizer

    examples = make_examples(load_tokenizer(model_dir), 6, seed=0, length_scale=0.1)
    data = tmp_path / "examples.jsonl"
    data.write_text("".join(json.dumps({"messages": e.messages, "input_ids": e.input_ids, "labels": e.labels}) + "\n"
                            for e in examples), encoding="utf-8")
    return {"system": system, "model_dir": str(model_dir), "data": str(data), "steps": 1, "seq_len": 256,
            "examples_per_step": 2, "method": "lora", "seed": 0, "lr": 2e-4, "threads": 2,
            "loss_chunk_size": 256, "work_dir": str(tmp_path / system)}


REPORT_KEYS = ("supervised_tokens_per_s", "tokens_per_s", "peak_memory_bytes", "final_loss")


def test_trl_system_runs_and_is_credited_with_dsft_mask(tiny_model_dir, tmp_path: Path) -> None:
    from dsft.training.bench.worker import run_system

    row = run_system(_tiny_spec("trl", tiny_model_dir("tiny-deepseek-v3"), tmp_path))
    for key in REPORT_KEYS:
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert row["uncredited_rows"] == 0 and row["gradient_checkpointing"]  # TRL's own default kept
    assert 0 < row["supervised_tokens"] < row["real_tokens"] <= row["padded_tokens"]


def test_dsft_lists_the_lean_blocks_that_ran_on_this_device(tiny_model_dir, tmp_path: Path) -> None:
    """The fused RMSNorm is installed on every norm and runs on CUDA only: on a CPU the report listed
    ``rms_norm_cuda x5`` as switched on all the same. Each lean block is listed with the modules it ran in."""
    from dsft.training.bench.worker import run_system

    row = run_system(_tiny_spec("dsft", tiny_model_dir("tiny-deepseek-v3"), tmp_path))
    listed = {entry.split(" x")[0]: entry for entry in row["dsft_accelerations"]}
    if torch.cuda.is_available():
        assert listed["rms_norm_cuda"] == "rms_norm_cuda x13", row["dsft_accelerations"]
        return
    # Here: the fused MLP of the dense layers and the shared experts, and the fused LoRA forward of the
    # attention's projections (those inside a fused MLP it computes itself); fp32 has no cast to skip.
    assert row["dsft_accelerations"] == [
        SEGMENT_ATTENTION, "lean_lora x15 of 24", "lora_cast_skips x28 installed, not used on cpu",
        "rms_norm_cuda x13 installed, not used on cpu", "swiglu_mlp x3"]


def test_trl_expert_system_packs_and_trains_on_dsfts_supervised_tokens(tiny_model_dir, tmp_path: Path) -> None:
    from dsft.training.bench.worker import run_system

    spec = _tiny_spec("trl-expert", tiny_model_dir("tiny-deepseek-v3"), tmp_path)
    row = run_system(spec)
    for key in REPORT_KEYS:
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert not row["gradient_checkpointing"] and row["per_device_train_batch_size"] == 1
    # Padding-free: every position fed is a real token, so the two token counts agree.
    assert row["real_tokens"] == row["padded_tokens"]
    # Completion-only loss on the same token stream: the targets are the ones dsft's mask supervises
    # (the timed step's examples, each cut at seq_len), nothing of the prompts.
    (tmp_path / "dsft").mkdir()
    dsft_row = run_system(_tiny_spec("dsft", tiny_model_dir("tiny-deepseek-v3"), tmp_path / "dsft"))
    assert row["supervised_tokens"] / row["real_tokens"] == pytest.approx(
        dsft_row["supervised_tokens"] / dsft_row["real_tokens"], rel=0.25)


def test_trl_expert_varlen_is_trl_expert_on_the_segment_kernel(tiny_model_dir, tmp_path: Path) -> None:
    """The same training as trl-expert (same loss), its attention within each packed example."""
    from dsft.training.bench.worker import run_system

    model_dir = tiny_model_dir("tiny-deepseek-v3")
    held_out, _ = _held_out_file(model_dir, tmp_path)
    rows = {}
    for system in ("trl-expert", "trl-expert-varlen"):
        (tmp_path / system).mkdir()
        rows[system] = run_system(_tiny_spec(system, model_dir, tmp_path / system) | {"held_out": str(held_out)})
    assert rows["trl-expert-varlen"]["dsft_accelerations"] == [SEGMENT_ATTENTION]
    assert "dsft_accelerations" not in rows["trl-expert"]
    assert rows["trl-expert-varlen"]["final_loss"] == pytest.approx(rows["trl-expert"]["final_loss"], rel=1e-5)
    # Every optimizer step's loss (the warm-up step and the timed one), the last of them the final loss.
    for row in rows.values():
        assert len(row["losses"]) == 2 and row["losses"][-1] == row["final_loss"]
    assert rows["trl-expert-varlen"]["losses"] == pytest.approx(rows["trl-expert"]["losses"], rel=1e-5)
    assert rows["trl-expert-varlen"]["supervised_tokens"] == rows["trl-expert"]["supervised_tokens"]
    # The learning check, measured on each one's trained weights, agrees too.
    assert rows["trl-expert-varlen"]["held_out_loss"] == pytest.approx(rows["trl-expert"]["held_out_loss"], rel=1e-5)


def test_held_out_loss_is_the_plain_cross_entropy_of_the_supervised_targets(tiny_model_dir) -> None:
    """One forward per conversation, fp32 lm_head in chunks: the same mean as full logits and F.cross_entropy
    over every conversation's supervised next-token targets together; the model's mode is kept."""
    from dsft.models.loading import load_model, load_tokenizer
    from dsft.training.bench.held_out import held_out_loss

    model_dir = tiny_model_dir("tiny-deepseek-v3")
    examples = [{"input_ids": e.input_ids, "labels": e.labels}
                for e in make_examples(load_tokenizer(model_dir), 3, seed=5, length_scale=0.1)]
    model = load_model(model_dir, dtype="float32")
    model.train()
    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            logits = model(torch.tensor([e["input_ids"]])).logits[0, :-1].float()
            targets = torch.tensor(e["labels"][1:])
            total += float(torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100, reduction="sum"))
            count += int(targets.ne(-100).sum())
    assert held_out_loss(model, examples, bf16=False, chunk_size=7) == pytest.approx(total / count, rel=1e-5)
    assert model.training


def _held_out_file(model_dir: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    from dsft.models.loading import load_tokenizer

    held_out = [{"input_ids": e.input_ids, "labels": e.labels}
                for e in make_examples(load_tokenizer(model_dir), 2, seed=9, length_scale=0.1)]
    path = tmp_path / "held_out.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in held_out), encoding="utf-8")
    return path, held_out


def test_dsft_measures_the_held_out_loss_on_its_trained_weights(tiny_model_dir, tmp_path: Path) -> None:
    """After its steps: the loss differs from the untrained model's (LoRA's B starts at zero, so that is the
    base model's), by a little after two steps."""
    from dsft.models.loading import load_model
    from dsft.training.bench.held_out import held_out_loss
    from dsft.training.bench.worker import run_system

    model_dir = tiny_model_dir("tiny-deepseek-v3")
    path, held_out = _held_out_file(model_dir, tmp_path)
    trained = run_system(_tiny_spec("dsft", model_dir, tmp_path) | {"held_out": str(path)})["held_out_loss"]
    untrained = held_out_loss(load_model(model_dir, dtype="float32"), held_out, bf16=False)
    assert trained != untrained and trained == pytest.approx(untrained, rel=0.05)


def test_profile_records_the_timed_steps(tiny_model_dir, tmp_path: Path) -> None:
    from dsft.training.bench.worker import run_system

    spec = _tiny_spec("dsft", tiny_model_dir("tiny-deepseek-v3"), tmp_path) | {"profile_dir": str(tmp_path / "prof")}
    row = run_system(spec)
    profile = row["profile"]
    assert row["profiled"] and (tmp_path / "prof" / "dsft.txt").read_text().startswith("dsft: ")
    assert sum(profile["share_by_kind"].values()) == pytest.approx(1.0)
    assert profile["share_by_kind"]["matmul"] > 0.1  # the LoRA step's matmuls are found by name
    assert 0 < profile["busy_seconds"] and profile["top"][0]["calls"] >= 1
    assert row["dsft_accelerations"][0] == SEGMENT_ATTENTION
    # The timed step and its micro-batches are what was recorded; its host reads are counted.
    assert profile["steps"] == 1 and profile["micro_batches"] == row["gradient_accumulation_steps"]
    assert profile["host_reads"] >= 1 and "host reads" in (tmp_path / "prof" / "dsft.txt").read_text()


def test_the_profile_counts_host_reads() -> None:
    """``float``, ``int``, ``bool`` and ``item`` of a tensor are one host read each (on a GPU each waits for
    every kernel queued before it)."""
    from dsft.training.bench.profiling import summarize_profile

    t = torch.arange(4.0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        float(t.sum()), int(t.sum()), bool(t.any()), t.max().item()
        t.sum() + 1  # no read
    summary = summarize_profile(list(profiler.events()), 1.0, on_device=False, steps=1, micro_batches=2)
    assert summary["host_reads"] == 4 and summary["host_reads_per_micro_batch"] == 2.0
    assert summary["device_to_host_copies"] is None  # only counted on a GPU


def test_busy_time_is_the_union_of_kernel_intervals() -> None:
    from dsft.training.bench.profiling import _busy_seconds, kind_of

    assert _busy_seconds([(0, 10), (5, 15), (20, 30), (22, 25)]) == pytest.approx(25e-6)
    assert kind_of("nvjet_sm90_tst_256x152_64x4_1x2_h_bz_coopA_NNT") == "matmul"
    assert kind_of("void pytorch_flash::flash_fwd_kernel<...>") == "attention"
    assert kind_of("aten::addmm_") == "matmul" and kind_of("aten::add_") == "other"


@pytest.mark.slow
def test_bench_train_cli_writes_the_report(tiny_model_dir, tmp_path: Path) -> None:
    tiny_model_dir("tiny-deepseek-v3")  # materialised once in the session cache the workers also read
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(_app(), [
        "bench", "train", "--steps", "1", "--seq-len", "256", "--examples-per-step", "2",
        "--length-scale", "0.1", "--compare", "seed", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["systems"]) == {"dsft", "seed"}
    for row in report["systems"].values():
        for key in (*REPORT_KEYS, "mfu"):
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, key
        assert row["uncredited_rows"] == 0
        assert row["supervised_tokens"] <= row["real_tokens"] <= row["padded_tokens"]
        assert math.isfinite(row["held_out_loss"]) and row["held_out_loss"] > 0
    seed = report["systems"]["seed"]
    assert seed["padded_tokens"] == 2 * 256 * 1  # every example padded to --seq-len, 2 per step
    assert set(report["ratios"]) == {"vs_seed"} == set(report["memory_ratios"])
    assert report["ratios"]["vs_seed"] == pytest.approx(
        report["systems"]["dsft"]["supervised_tokens_per_s"] / seed["supervised_tokens_per_s"])
    assert "report:" in result.output


def test_a_failed_peer_is_recorded_and_the_other_figures_kept() -> None:
    from dsft.training.bench.runner import add_ratios

    report = {"systems": {"dsft": {"supervised_tokens_per_s": 10.0, "peak_memory_bytes": 5},
                          "trl": {"failed": "bench system 'trl' failed (exit -9)"},
                          "seed": {"supervised_tokens_per_s": 2.0, "peak_memory_bytes": 10}}}
    ratios = add_ratios(report)
    assert ratios["ratios"] == {"vs_seed": 5.0} and ratios["memory_ratios"] == {"vs_seed": 0.5}


def test_bench_rejects_an_unknown_system(tmp_path: Path) -> None:
    from dsft.errors import DsftError
    from dsft.training.bench.runner import run_bench

    with pytest.raises(DsftError, match="unknown system"):
        run_bench(compare=("axolotl",))


def test_dsft_system_measures_an_optional_acceleration(tiny_model_dir, tmp_path: Path) -> None:
    from dsft.training.bench.worker import run_system

    spec = _tiny_spec("dsft", tiny_model_dir("tiny-deepseek-v3"), tmp_path)
    row = run_system(spec | {"loss_chunk_size": "auto", "dsft_options": ["offload_activations"], "loss_dtype": "bf16"})
    assert row["gradient_checkpointing"] and row["loss_chunk_size"] == 64  # auto at the 129k vocabulary, CPU
    assert (row["body_dtype"], row["lm_head_dtype"]) == ("fp32", "bf16")  # --loss-dtype reached the loss
    assert row["base_weights_dtype"] == "fp32"
    assert row["lm_head_flops"] > 0 and row["body_flops"] > 0
    assert math.isfinite(row["final_loss"]) and row["supervised_tokens"] > 0


@pytest.mark.skipif(torch.cuda.is_available() or not cpu_multiplies_bf16(),
                    reason="--precision bf16 on CPU needs bf16 matrix instructions (AVX512-BF16 or AMX)")
@pytest.mark.parametrize("system", ["dsft", "trl-expert"])
def test_precision_bf16_runs_every_system_on_a_bf16_base_under_autocast(
    tiny_model_dir, tmp_path: Path, system: str,
) -> None:
    from dsft.training.bench.worker import run_system

    row = run_system(_tiny_spec(system, tiny_model_dir("tiny-deepseek-v3"), tmp_path) | {"precision": "bf16"})
    assert (row["body_dtype"], row["lm_head_dtype"], row["base_weights_dtype"]) == ("bf16", "bf16", "bf16")
    assert math.isfinite(row["final_loss"]) and row["supervised_tokens"] > 0


def test_dsft_and_trl_expert_take_the_same_micro_batch_of_packed_rows(tiny_model_dir, tmp_path: Path) -> None:
    """--micro-batch-size N: both feed N packed rows per forward (more tokens than one row holds), with the
    accumulation that keeps a step near examples_per_step conversations (here at least one micro-batch)."""
    from dsft.training.bench.worker import run_system

    model_dir = tiny_model_dir("tiny-deepseek-v3")
    for system in ("dsft", "trl-expert"):
        (tmp_path / system).mkdir()
        spec = _tiny_spec(system, model_dir, tmp_path / system) | {"micro_batch_size": 2}  # 4 rows of <= 256
        row = run_system(spec)
        assert (row["per_device_train_batch_size"], row["gradient_accumulation_steps"]) == (2, 1), system
        assert row["real_tokens"] > 256, system  # the timed step's one micro-batch held two packed rows
        assert math.isfinite(row["final_loss"]), system


@pytest.mark.parametrize(("args", "message"), [
    (["--dsft-option", "turbo"], "unknown option(s) turbo"),
    (["--loss-chunk-size", "0"], "--loss-chunk-size: expected a positive integer or auto"),
    (["--loss-dtype", "fp16"], "--loss-dtype: expected one of auto, fp32, bf16"),
    (["--dsft-option", "liger"], "Liger's kernels are Triton kernels for CUDA"),
    (["--profile", "/dev/null/prof"], "--profile /dev/null/prof: cannot create the directory"),
    (["--micro-batch-size", "0"], "--micro-batch-size 0: must be >= 1"),
    (["--precision", "fp16"], "--precision: expected one of auto, fp32, bf16"),
])
def test_bench_train_rejects_bad_options(run_cli, tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = run_cli(["bench", "train", "--out", str(tmp_path / "x.json"), *args])
    assert code != 0 and message in out + err and "Traceback" not in out + err
    assert not (tmp_path / "x.json").exists()


def test_bench_train_refuses_a_profile_dir_holding_files_before_measuring(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--profile DIR follows the output rule: an earlier profile is not replaced by another benchmark's."""
    from dsft.training.bench import runner

    def measured(**_: object) -> None:
        raise AssertionError("the benchmark ran before --profile was checked")

    monkeypatch.setattr(runner, "run_bench", measured)
    profile = tmp_path / "prof"
    profile.mkdir()
    (profile / "dsft.txt").write_text("an earlier profile")
    code, out, err = run_cli(["bench", "train", "--out", str(tmp_path / "new.json"), "--profile", str(profile)])
    assert code == 2 and "Traceback" not in out + err
    assert f"--profile {profile}: directory is not empty" in out + err and "dsft.txt" in out + err
    assert (profile / "dsft.txt").read_text() == "an earlier profile" and not (tmp_path / "new.json").exists()


def test_a_rerun_into_its_own_report_rewrites_its_profile(tmp_path: Path) -> None:
    """The rerun exception: --out an earlier report profiled into DIR (bench_gpu_7b.sh's profile part, rerun)
    rewrites DIR without a flag; a report profiled elsewhere, or no report, needs --overwrite."""
    from dsft.errors import DsftError

    profile, out = tmp_path / "prof", tmp_path / "profiled.json"
    profile.mkdir()
    (profile / "dsft.txt").write_text("dsft: earlier")
    out.write_text(json.dumps({"settings": {"profile_dir": str(profile)}, "systems": {}}))
    bench_cli.check_profile_dir(profile, out, overwrite=False)
    out.write_text(json.dumps({"settings": {"profile_dir": str(tmp_path / "elsewhere")}, "systems": {}}))
    with pytest.raises(DsftError, match="directory is not empty"):
        bench_cli.check_profile_dir(profile, out, overwrite=False)
    bench_cli.check_profile_dir(profile, tmp_path / "new.json", overwrite=True)
    bench_cli.check_profile_dir(tmp_path / "empty-or-new", tmp_path / "new.json", overwrite=False)
