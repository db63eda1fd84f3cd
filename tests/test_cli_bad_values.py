"""The CLI sweep of bad values: each is one message naming the flag, exit code 2, no traceback, nothing started.

Models named here do not exist on purpose: a command that skipped its check would fail later with a
message about the model instead, and the test would see that the flag is not named.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest

MISSING = "no-such-model-dir"


def _file(tmp: Path) -> str:
    path = tmp / "taken"
    path.write_text("a file, not a directory\n")
    return str(path)


def _config(tmp: Path) -> str:
    path = tmp / "c.yaml"
    path.write_text("train:\n  max_steps: 2\n")
    return str(path)


def _data(tmp: Path) -> str:
    path = tmp / "d.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    return str(path)


# (id, argv builder taking tmp_path, text the single message must hold)
CASES = [
    ("prepare-out-is-file", lambda t: ["data", "prepare", _data(t), "--out", _file(t)], "not a directory"),
    ("eval-out-is-file", lambda t: ["eval", MISSING, "--data", _data(t), "--out", _file(t)], "not a directory"),
    ("launch-out-is-file", lambda t: ["launch", _config(t), "--out", _file(t)], "not a directory"),
    ("deploy-out-is-file", lambda t: ["deploy", "k8s", MISSING, "--out", _file(t)], "not a directory"),
    ("deploy-out-under-a-file", lambda t: ["deploy", "k8s", MISSING, "--out", _file(t) + "/k8s"],
     "taken is not a directory"),
    ("tiny-out-is-file", lambda t: ["models", "tiny", "tiny-deepseek-v3", "--out", _file(t)], "not a directory"),
    ("demo-out-is-file", lambda t: ["demo", "--out", _file(t)], "not a directory"),
    ("set-bad-yaml", lambda t: ["config", "show", "--set", "train.lr=[1e-4"], "not valid YAML"),
    # A model that is there: the device, which needs torch to check, is checked after every input that does not.
    ("eval-device", lambda t: ["eval", "tiny-deepseek-v3", "--data", _data(t), "--out", str(t / "o"), "--device",
                               "bogus"],
     "--device bogus"),
    ("export-shard-size", lambda t: ["export", MISSING, "--out", str(t / "o"), "--max-shard-size", "lots"],
     "--max-shard-size lots"),
    ("serve-port", lambda t: ["serve", MISSING, "--port", "99999"], "--port"),
    ("serve-max-queue", lambda t: ["serve", MISSING, "--max-queue", "0"], "--max-queue"),
    ("serve-max-batch", lambda t: ["serve", MISSING, "--max-batch", "0"], "--max-batch"),
    ("serve-max-tokens", lambda t: ["serve", MISSING, "--max-tokens", "-1"], "--max-tokens"),
    ("serve-quantize", lambda t: ["serve", MISSING, "--quantize", "int3"], "--quantize int3"),
    ("serve-dtype", lambda t: ["serve", MISSING, "--dtype", "bogus"], "--dtype bogus"),
    ("serve-empty-key", lambda t: ["serve", MISSING, "--api-key", ""], "--api-key"),
    ("serve-vllm-model-len", lambda t: ["serve", MISSING, "--engine", "vllm", "--max-model-len", "-5"],
     "--max-model-len"),
    ("chat-max-tokens", lambda t: ["chat", MISSING, "--max-tokens", "-1"], "--max-tokens"),
    ("chat-temperature", lambda t: ["chat", MISSING, "--temperature", "-5"], "--temperature"),
    ("plan-gpu-mem", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "-1"], "--gpu-mem"),
    # inf (and 1e300, inf in bytes) ended in an OverflowError traceback.
    ("plan-gpu-mem-inf", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "inf"],
     "--gpu-mem: must be > 0 and at most 1,048,576 GiB, got inf"),
    ("plan-gpu-mem-huge", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "1e300"],
     "--gpu-mem: must be > 0 and at most"),
    ("plan-host-mem-inf", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--host-mem", "inf"],
     "--host-mem: must be > 0 and at most"),
    # A unit no one means by memory: named with the flag and the spellings taken, not typer's 'not a valid number'.
    ("plan-gpu-mem-unit", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "24GBs"],
     "--gpu-mem: '24GBs' is not a memory size; write GiB as a number (24) or with a unit: 24GiB, 24GB, 24576MiB"),
    ("plan-host-mem-unit", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--host-mem", "lots"],
     "--host-mem: 'lots' is not a memory size"),
    # A regular expression's \d matches any script's digits: a full-width ８ planned for 8 GiB, where typer refuses it
    # in every number flag.
    ("plan-gpu-mem-full-width", lambda t: ["plan", "--model", "deepseek-r1-distill-qwen-7b", "--gpu-mem", "８０GB"],
     "--gpu-mem: '８０GB' is not a memory size"),
    # Planned as a 'does not fit' with no fix, where no rank above the widest adapted matrix side adds capacity.
    ("plan-lora-rank", lambda t: ["plan", "--model", "tiny-deepseek-v3", "--lora-rank", "99999999999"],
     "--lora-rank 99999999999: above 64, the widest smaller side of the matrices LoRA adapts in tiny-deepseek-v3 "
     "(all-linear); a higher rank adds parameters and no capacity: set --lora-rank to at most 64"),
    ("plan-lora-rank-of-its-targets", lambda t: ["plan", "--model", "tiny-deepseek-v3", "--lora-targets", "q_a_proj",
                                                 "--lora-rank", "49"], "set --lora-rank to at most 48"),
    # A traceback from torch.set_num_threads, after the benchmark's model had been built.
    ("bench-threads", lambda t: ["bench", "train", "--out", str(t / "b.json"), "--threads", "-1"],
     "bench --threads: must be >= 1, got -1"),
    ("launch-master-port", lambda t: ["launch", _config(t), "--out", str(t / "o"), "--master-port", "99999"],
     "--master-port"),
    ("deploy-replicas", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--replicas", "0"], "--replicas"),
    # --gpus is checked once, with the other deploy options (all listed together), before the model is looked up.
    ("deploy-gpus", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--gpus", "-1"],
     "--gpus: must be >= 0, got -1"),
    ("deploy-gpus-and-replicas", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--gpus", "-1",
                                            "--replicas", "0"],
     "invalid deploy options - --replicas: must be >= 1, got 0 - --gpus: must be >= 0, got -1"),
    ("deploy-name", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--name", "Bad Name!"], "--name"),
    # Written into the manifests and the printed docker command as given: a space split the command, '' named no model.
    ("deploy-image", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--image", "my image"],
     "--image 'my image': not a container image reference"),
    ("deploy-image-upper", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--image", "reg.io/My-App:1"],
     "--image 'reg.io/My-App:1': not a container image reference"),
    ("deploy-served-name", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--served-model-name", " "],
     "--served-model-name: empty"),
    ("deploy-secret", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--api-key-secret", "My Key"],
     "--api-key-secret 'My Key': must be a DNS-1123 subdomain"),
    # Guide 001 writes 30Gi; 'GB' is no Kubernetes unit, and a request above the limit is a pod Kubernetes refuses.
    ("deploy-memory-unit", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--memory-limit", "30GB"],
     "--memory-limit '30GB': not a Kubernetes memory quantity; write 30Gi (GiB) or 30G (GB)"),
    ("deploy-memory-request", lambda t: ["deploy", "k8s", MISSING, "--out", str(t / "o"), "--memory-request", "40Gi"],
     "--memory-request 40Gi: above --memory-limit 32Gi"),
]


def _one_message(err: str) -> list[str]:
    """Lines that start an error message (ours print ``error:``, click's ``Error:``)."""
    return [line for line in err.splitlines() if re.match(r"\s*error:", line, re.IGNORECASE)]


@pytest.mark.parametrize("build, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value_is_one_message_and_exit_2(run_cli, tmp_path: Path, build, expected: str) -> None:
    code, out, err = run_cli(build(tmp_path))
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    assert len(_one_message(err)) == 1, err
    assert expected in " ".join(err.split()), err


def test_convert_refuses_a_checkpoint_that_is_not_fp8(run_cli, tiny_model_dir, tmp_path: Path) -> None:
    code, _, err = run_cli(["convert", "fp8-to-bf16", str(tiny_model_dir("tiny-deepseek-v3")), str(tmp_path / "o")])
    assert code == 2 and "not an FP8 checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_full_disk_during_prepare_names_the_path_and_cleans_up(run_cli, tmp_path: Path, monkeypatch) -> None:
    import dsft.data.pipeline as pipeline

    def disk_full(*_args, **_kwargs):
        (tmp_path / "out" / "train.jsonl").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "train.jsonl"))

    monkeypatch.setattr(pipeline, "prepare", disk_full)
    code, _, err = run_cli(["data", "prepare", _data(tmp_path), "--out", str(tmp_path / "out"),
                            "--tokenizer", "deepseek"])
    assert code == 2 and "Traceback" not in err
    message = " ".join(err.split())
    assert f"{tmp_path / 'out'}: no space left" in message and "needs about" in message
    assert not (tmp_path / "out").exists(), "the partial output must be removed"


def test_full_disk_during_prepare_keeps_an_out_directory_the_user_made(run_cli, tmp_path: Path, monkeypatch) -> None:
    from dsft.data import pipeline

    mine = tmp_path / "mine"
    mine.mkdir()  # made by the user, empty, before the command began

    def disk_full(*_args, **_kwargs):
        (mine / "train.jsonl").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(mine / "train.jsonl"))

    monkeypatch.setattr(pipeline, "prepare", disk_full)
    code, _, err = run_cli(["data", "prepare", _data(tmp_path), "--out", str(mine), "--tokenizer", "deepseek"])
    assert code == 2 and "no space left" in err and "Traceback" not in err
    assert mine.is_dir() and not any(mine.iterdir()), "the user's directory stays; only the partial output goes"


def test_too_little_free_space_is_refused_before_writing(run_cli, tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10, 10, 0))
    code, _, err = run_cli(["data", "prepare", _data(tmp_path), "--out", str(tmp_path / "out"),
                            "--tokenizer", "deepseek"])
    assert code == 2 and "needs about" in err and "0 B free" in err
    assert not any((tmp_path / "out").iterdir())


def test_read_only_output_is_one_message(run_cli, tmp_path: Path, monkeypatch) -> None:
    import dsft.data.pipeline as pipeline

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out" / "train.jsonl"))

    monkeypatch.setattr(pipeline, "prepare", read_only)
    code, _, err = run_cli(["data", "prepare", _data(tmp_path), "--out", str(tmp_path / "out"),
                            "--tokenizer", "deepseek"])
    assert code == 2 and "Read-only file system" in err and "Traceback" not in err


def test_file_system_errors_anywhere_are_one_message(run_cli, tmp_path: Path, monkeypatch) -> None:
    """The last line of defence: an OSError a command did not expect still becomes one message."""
    import dsft.config as config_module

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(config_module, "load_config", full)
    code, _, err = run_cli(["config", "show"])
    assert code == 2 and "No space left on device" in err and str(tmp_path / "x") in err and "Traceback" not in err
