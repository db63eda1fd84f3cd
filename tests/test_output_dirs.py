"""The output rule of README "Output directories" for the commands without a data input: a non-empty --out
(their own earlier output included) is refused unless --overwrite, naming what it holds, and nothing in it
changes; with --overwrite the user's other files stay. A bench report file is replaced by a rerun, any other
file only with --overwrite, and a bad --out is refused before the benchmark runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_in_subprocess import run_dsft
from dsft.errors import DsftError


def _mine(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("my notes\n")
    return path


def test_launch_refuses_a_directory_of_the_users_unless_overwrite(tmp_path: Path, run_cli) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {name_or_path: tiny-r1-distill-qwen}\n")
    out = _mine(tmp_path / "launch")
    argv = ["launch", str(config), "--nodes", "1", "--gpus-per-node", "2", "--out", str(out)]
    code, stdout, err = run_cli(argv)
    message = " ".join(err.split())
    assert code == 2 and f"--out {out}: directory is not empty; it holds notes.txt" in message and "--overwrite" in message
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert run_cli([*argv, "--overwrite"])[0] == 0
    assert (out / "torchrun_node.sh").is_file() and (out / "notes.txt").read_text() == "my notes\n"


def test_demo_refuses_a_directory_of_the_users_unless_overwrite(tmp_path: Path, run_cli) -> None:
    out = _mine(tmp_path / "demo")
    code, _, err = run_cli(["demo", "--out", str(out), "--model", "gpt5"])
    assert code == 2 and f"--out {out}: directory is not empty; it holds notes.txt" in " ".join(err.split()), err
    code, _, err = run_cli(["demo", "--out", str(out), "--model", "gpt5", "--overwrite"])
    assert code == 2 and "--model gpt5: choose one of" in err  # past --out: the next check speaks
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "run").mkdir()  # an earlier demo's run: never replaced, --overwrite or not
    code, _, err = run_cli(["demo", "--out", str(out), "--overwrite"])
    assert code == 2 and "already holds a demo run" in err


def test_bench_checks_its_report_file_before_running(tmp_path: Path, run_cli) -> None:
    bad_chunk = ["--loss-chunk-size", "0"]  # refused after --out is checked: a passed --out reaches it
    mine = tmp_path / "results.json"
    mine.write_text('{"my": "numbers"}\n')
    code, out, err = run_cli(["bench", "train", "--out", str(mine), *bad_chunk])
    assert code == 2 and f"--out {mine}: exists and is no bench report" in out + err and "--overwrite" in out + err
    assert mine.read_text() == '{"my": "numbers"}\n'
    code, out, err = run_cli(["bench", "train", "--out", str(mine), "--overwrite", *bad_chunk])
    assert code == 2 and "--loss-chunk-size" in out + err
    code, out, err = run_cli(["bench", "train", "--out", str(tmp_path), *bad_chunk])
    assert code == 2 and f"--out {tmp_path}: is a directory" in out + err
    earlier = tmp_path / "bench.json"
    earlier.write_text(json.dumps({"settings": {}, "systems": {}}))
    code, out, err = run_cli(["bench", "train", "--out", str(earlier), *bad_chunk])
    assert code == 2 and "--loss-chunk-size" in out + err  # an earlier report: a rerun replaces it


LINUX_PROC = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


def _bench_refusal(tmp_path: Path, out: str) -> tuple[int, bool, str]:
    """(exit code, torch imported, stderr) of `dsft bench train --out OUT` in a fresh interpreter."""
    # The smallest benchmark: where the check misses, it runs (and fails at the write) in a minute, not ten.
    code, heavy, err = run_dsft(["bench", "train", "--out", out, "--steps", "1", "--seq-len", "64", "--compare", "seed",
                                 "--examples-per-step", "2", "--length-scale", "0.05"], tmp_path)
    return code, "torch" in heavy, err


@pytest.mark.parametrize("out, said", [
    # Run as root, os.access says /proc is writable; the report was lost after the benchmark, 'No such file'.
    pytest.param("/proc/dsft-bench.json", "--out /proc/dsft-bench.json: its folder /proc: the directory is not "
                 "writable (No such file or directory)", marks=LINUX_PROC, id="proc"),
    pytest.param("/proc/new/dsft-bench.json", "its folder /proc/new: cannot create the directory (/proc is not "
                 "writable: No such file or directory)", marks=LINUX_PROC, id="folder-under-proc"),
    pytest.param("{tmp}/taken/b.json", "its folder {tmp}/taken: exists and is not a directory", id="under-a-file"),
    pytest.param("{tmp}/taken/sub/b.json", "cannot create the directory ({tmp}/taken is not a directory)",
                 id="folder-under-a-file"),
    pytest.param("{tmp}", "--out {tmp}: is a directory; name the report file", id="a-directory"),
])
def test_bench_refuses_a_report_it_cannot_write_before_torch(tmp_path: Path, out: str, said: str) -> None:
    (tmp_path / "taken").write_text("a file\n")
    code, torch_loaded, err = _bench_refusal(tmp_path, out.format(tmp=tmp_path))
    assert code == 2 and said.format(tmp=tmp_path) in err and "Traceback" not in err, err
    assert not torch_loaded, "refused after torch was imported: the benchmark had begun"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-555 folder (creating there succeeds)")
def test_bench_refuses_a_read_only_folder_before_torch(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        code, torch_loaded, err = _bench_refusal(tmp_path, str(locked / "b.json"))
    finally:
        locked.chmod(0o755)
    assert code == 2 and f"its folder {locked}: the directory is not writable" in err and not torch_loaded, err


@LINUX_PROC
def test_an_output_folder_is_tried_not_only_asked(tmp_path: Path) -> None:
    """What every command's --out check answers: /proc refused (as root too), a writable folder left as it was."""
    from dsft.disk import check_output_dir, creation_refused

    assert creation_refused(Path("/proc")) is not None
    with pytest.raises(DsftError, match="--out /proc/run: cannot create the directory"):
        check_output_dir(Path("/proc/run"))
    assert creation_refused(tmp_path) is None and list(tmp_path.iterdir()) == []


# `dsft bench train` in a fresh interpreter whose benchmark is a stand-in (its report, at once) and whose files may
# grow to LIMIT bytes only (RLIMIT_FSIZE: a write past it fails with EFBIG, as a full disk fails with ENOSPC).
FULL_DISK_BENCH = """
import json, resource, signal, sys, types
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with an error instead of killing the process
report = json.loads(sys.argv[2])
sys.modules["dsft.training.bench.runner"] = types.SimpleNamespace(run_bench=lambda **_: report)
from dsft.cli.app import main
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
main(json.loads(sys.argv[1]))
"""
MEASURED = {"settings": {"model": "tiny-deepseek-v3", "method": "lora", "seq_len": 64, "steps": 1},
            "machine": {"device": "cpu"}, "ratios": {}, "memory_ratios": {},
            "systems": {"dsft": {"supervised_tokens_per_s": 1234.5, "tokens_per_s": 2345.6, "peak_memory_bytes": 2**30,
                                 "mfu": 0.01, "final_loss": 3.25, "held_out_loss": 3.5, "note": "x" * 400}}}


@pytest.mark.parametrize("earlier", [None, {"settings": {"model": "earlier"}, "systems": {}}], ids=["new", "rerun"])
def test_a_report_write_that_fails_midway_loses_no_measurement(tmp_path: Path, earlier: dict | None) -> None:
    """A bench report was written in place after the benchmark: a write that failed half-way (a full disk) left a
    truncated JSON at --out (a rerun's earlier report cut too) and lost the measurement with a traceback. The
    report is now written whole in one rename, and a failed write prints it on stdout and says so (exit 2)."""
    import subprocess
    import sys

    from cli_in_subprocess import ROOT

    out = tmp_path / "bench.json"
    if earlier is not None:
        out.write_text(json.dumps(earlier))
    argv = ["bench", "train", "--out", str(out), "--compare", "", "--steps", "1", "--seq-len", "64"]
    result = subprocess.run([sys.executable, "-c", FULL_DISK_BENCH, json.dumps(argv), json.dumps(MEASURED), "200"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    err = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"--out {out}: the report could not be written (File too large)" in err, err
    assert "printed above on stdout" in err, err
    assert json.loads(result.stdout[result.stdout.index("{\n"):]) == MEASURED
    if earlier is None:
        assert not out.exists() and "no file was written there" in err
    else:
        assert json.loads(out.read_text()) == earlier and "the earlier report there is unchanged" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bench.json"] if earlier else [])
