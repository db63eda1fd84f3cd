"""Guide 003: full-parameter SFT of DeepSeek-V3/R1 (MLA + MoE) from OpenAI messages with reasoning_content and
per-turn loss flags, ZeRO-3 + sequence parallel over 32 x 8 GPUs, an HF checkpoint, vLLM on TP 8 x PP 4.
The cluster parts are checked as generated files; the training, export and serving run on the tiny preset."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import pytest
from safetensors import safe_open

from jsonl_files import read_jsonl
from scenarios_helpers import FEW_STEPS, assert_every_record_accounted, guide, serve_once, supervised_text

GUIDE = guide("003")
CONFIG = GUIDE / "config.yaml"
DATA = GUIDE / "data" / "train_example.jsonl"
ON_CPU = ["--set", "train.distributed=auto"]


@pytest.mark.slow
def test_guide_003_loss_flags_full_sft_export_vllm(at_repo_root: Path, dsft, run_cli, tmp_path: Path,
                                                   caplog) -> None:
    from dsft.config import load_config
    from dsft.data.prepared_folder import load_prepared
    from dsft.models.loading import load_tokenizer
    from dsft.models.resolve import resolve_model
    from dsft.templates import get_template
    from dsft.plan.planner import load_profile
    from dsft.training.distributed import check_sequence_parallel, deepspeed_config

    records = read_jsonl(DATA)
    prepared = tmp_path / "prepared"
    dsft("data", "prepare", "--config", CONFIG, "--out", prepared)
    report = json.loads((prepared / "data_report.json").read_text())
    assert_every_record_accounted(report)
    assert report["read"] == report["kept"] == len(records)
    with_reasoning = sum(1 for r in records if "reasoning_content" in r["messages"][-1] or "<think>" in r["messages"][-1]["content"])
    assert report["reasoning"]["splits"]["train"]["with_reasoning"] == with_reasoning

    # loss flags: an earlier answer marked loss false is context only; the last is trained with its reasoning
    tokenizer = load_tokenizer(resolve_model("tiny-deepseek-v3"))
    template = get_template("deepseek-r1")
    train = load_prepared(prepared).splits["train"]
    multi = next(c for c in train if sum(m.role == "assistant" for m in c.messages) == 2)
    target = supervised_text(template.render_train(multi, tokenizer), tokenizer)
    history, last = [m for m in multi.messages if m.role == "assistant"]
    assert target == f"{last.reasoning}\n</think>\n\n{last.content}{tokenizer.eos_token}"
    assert history.content not in target
    merged = next(c for c in train if c.messages[-1].content == "25。")  # the guide's <think>-in-content form
    assert merged.messages[-1].reasoning == "100除以4等于25。"

    # full fine-tuning on one process: every weight may move
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="dsft.training.run"):  # one plain line, no UserWarning
        dsft("train", CONFIG, "--out", run, *FEW_STEPS, *ON_CPU, "--set", "train.max_steps=2",
             "--set", "train.lr=1e-3")
    assert "train.zero_stage=3: not applied" in caplog.text
    assert json.loads((run / "run.json").read_text())["method"] == "full"
    base = resolve_model("tiny-deepseek-v3")
    name = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"
    with safe_open(str(base / "model.safetensors"), "pt") as before, safe_open(str(run / "final" / "model.safetensors"), "pt") as after:
        assert not before.get_tensor(name).equal(after.get_tensor(name).to(before.get_tensor(name).dtype))

    # the cluster: 32 nodes x 8 GPUs under SLURM, ZeRO-3 over all 256 ranks, and the planner's verdict
    dsft("launch", CONFIG, "--nodes", "32", "--gpus-per-node", "8", "--launcher", "slurm", "--out", tmp_path / "slurm")
    sbatch = (tmp_path / "slurm" / "dsft.sbatch").read_text()
    assert "#SBATCH --nodes=32" in sbatch and "--nproc-per-node 8" in sbatch and f"dsft train {CONFIG}" in sbatch
    cluster = load_config(CONFIG, ["train.sequence_parallel=8", "train.max_seq_len=32768"]).train
    ds = deepspeed_config(cluster, world_size=256)
    assert ds["zero_optimization"]["stage"] == 3 and ds["train_micro_batch_size_per_gpu"] == 1
    # the guide's SP 8 for DeepSeek-V3's MLA (128 heads), packed, on flash-attention or dsft's segment attention
    v3 = load_profile("deepseek-v3").hf_config
    for attention in ("flash_attention_2", "dsft_segments"):
        check_sequence_parallel(cluster, 8, 256, v3, attention)
    plan = json.loads(dsft("plan", "--model", "deepseek-v3", "--method", "full", "--nodes", "32", "--gpus-per-node", "8",
                           "--gpu-mem", "80", "--seq-len", "32768", "--zero", "3", "--offload", "optimizer+param",
                           "--sp", "4", "--micro-batch", "2", "--grad-checkpointing", "--json"))
    assert plan["fits"] is True and plan["per_gpu_bytes"] <= 80 * 2**30
    # the guide's table: the same row without the offload ran out of memory, and so does the plan
    plan = json.loads(dsft("plan", "--model", "deepseek-v3", "--method", "full", "--nodes", "32", "--gpus-per-node", "8",
                           "--gpu-mem", "80", "--seq-len", "32768", "--zero", "3", "--sp", "4", "--micro-batch", "1",
                           "--grad-checkpointing", "--json"))
    assert plan["fits"] is False and plan["per_gpu_bytes"] > 80 * 2**30
    # the recommended row as a config (SP 4, bs 2 per GPU): packed rows under SP go one to a micro-batch, so the
    # job's scripts are refused with the fix, before any of the 256 processes would stop at start
    code, _, err = run_cli(["launch", str(CONFIG), "--nodes", "32", "--gpus-per-node", "8", "--launcher", "slurm",
                            "--out", str(tmp_path / "bs2"), "--set", "train.sequence_parallel=4",
                            "--set", "train.max_seq_len=32768", "--set", "train.micro_batch_size=2"])
    assert code == 2 and "train.micro_batch_size: 1 (got 2); raise train.grad_accum" in err
    assert not (tmp_path / "bs2").exists()

    # HF checkpoint in bf16 (verified on reload), then the guide's vLLM deployment from the config
    export = tmp_path / "hf"
    dsft("export", run, "--format", "hf", "--dtype", "bfloat16", "--out", export)
    assert json.loads((export / "config.json").read_text())["dtype"] == "bfloat16"
    # as the guide's README runs it: host 0.0.0.0 (the config's) needs a key, which the printed line hides
    argv = shlex.split(dsft("serve", export, "--config", CONFIG, "--max-model-len", "32768", "--api-key",
                            "guide-key", "--dry-run").strip())

    def option(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert argv[:3] == ["vllm", "serve", str(export)]
    assert (option("--tensor-parallel-size"), option("--pipeline-parallel-size")) == ("8", "4")
    assert (option("--served-model-name"), option("--reasoning-parser")) == ("deepseek-r1-sft", "deepseek_r1")
    assert option("--host") == "0.0.0.0" and "--trust-remote-code" in argv and "--chat-template" not in argv
    assert "guide-key" not in argv and "--api-key" in argv

    # the guide's curl request, answered by dsft's own server on the export
    answer = serve_once(export, "/v1/chat/completions", {"model": "guide", "max_tokens": 6,
                                                           "messages": [{"role": "user", "content": "hello"}]})
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
