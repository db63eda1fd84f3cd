"""The output rule of README "Output directories" for the commands without a data input: a non-empty --out
(their own earlier output included) is refused unless --overwrite, naming what it holds, and nothing in it
changes; with --overwrite the user's other files stay. A bench report file is replaced by a rerun, any other
file only with --overwrite, and a bad --out is refused before the benchmark runs."""

from __future__ import annotations

import json
from pathlib import Path


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
