"""`dsft data augment` and `dsft data distill` follow the output-directory rule: a non-empty --out that is not
their own earlier output is refused unless --overwrite (nothing in it changes), their own earlier output is
rewritten (a rerun resumes from the response cache), files they do not write always stay, and an input is never
replaced by an output, --overwrite or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

USER_FILES = {"rejects.jsonl": '{"mine": 1}\n', "removed.jsonl": '{"mine": 2}\n', "notes.txt": "my notes\n"}
# An endpoint that refuses connections: distill reaches it only once --out has passed.
UNREACHABLE = ["--base-url", "http://127.0.0.1:9/v1", "--model", "teacher", "--set",
               "data.distill.endpoint.max_retries=0", "--set", "data.distill.endpoint.timeout=0.5"]


def _users_dir(path: Path) -> Path:
    path.mkdir()
    for name, text in USER_FILES.items():
        (path / name).write_text(text, encoding="utf-8")
    return path


def _unchanged(path: Path) -> bool:
    return sorted(p.name for p in path.iterdir()) == sorted(USER_FILES) and all(
        (path / name).read_text(encoding="utf-8") == text for name, text in USER_FILES.items())


def _augment_args(tmp_path: Path) -> list[str]:
    table = tmp_path / "t.csv"
    table.write_text("name,year\nA,1958\nB,1960\n", encoding="utf-8")
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n", encoding="utf-8")
    return ["data", "augment", str(seed), "--set",
            f'data.augment.templates=[{{table: "{table}", questions: ["When was {{name}} built?"], answer: "{{year}}"}}]']


def test_augment_refuses_a_directory_of_the_users_unless_overwrite(tmp_path: Path, run_cli) -> None:
    out = _users_dir(tmp_path / "mine")
    code, _, err = run_cli([*_augment_args(tmp_path), "--out", str(out)])
    assert code == 2 and f"--out {out}: directory is not empty and holds no augment_report.json" in err, err
    assert "--overwrite" in err and "Traceback" not in err
    assert _unchanged(out)
    code, _, err = run_cli([*_augment_args(tmp_path), "--out", str(out), "--overwrite"])
    assert code == 0, err
    report = json.loads((out / "augment_report.json").read_text())
    assert report["kept"] == 3 and (out / "notes.txt").read_text() == "my notes\n"  # not augment's: it stays


def test_augment_reruns_into_its_own_output(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "aug"
    assert run_cli([*_augment_args(tmp_path), "--out", str(out)])[0] == 0
    code, _, err = run_cli([*_augment_args(tmp_path), "--out", str(out)])
    assert code == 0, err


def test_augment_never_replaces_its_input(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "aug"
    args = _augment_args(tmp_path)
    assert run_cli([*args, "--out", str(out)])[0] == 0
    before = (out / "augmented.jsonl").read_text()
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(["data", "augment", str(out / "augmented.jsonl"), *args[3:], "--out", str(out), *extra])
        assert code == 2 and f"would overwrite the input {out / 'augmented.jsonl'}" in err, err
    assert (out / "augmented.jsonl").read_text() == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_distill_refuses_a_directory_of_the_users_unless_overwrite(tmp_path: Path, run_cli, overwrite: bool) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "1 + 1?"}) + "\n", encoding="utf-8")
    out = _users_dir(tmp_path / "mine")
    code, _, err = run_cli(["data", "distill", str(questions), "--out", str(out), *UNREACHABLE,
                            *(["--overwrite"] if overwrite else [])])
    assert code == 2 and "Traceback" not in err, err
    if overwrite:  # past --out: the next check (the teacher) speaks
        assert "directory is not empty" not in err
    else:
        assert f"--out {out}: directory is not empty and holds no distill_report.json or distill_cache.jsonl" in err
        assert _unchanged(out)


def test_distill_never_replaces_its_input(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "d"
    out.mkdir()
    questions = out / "distilled.jsonl"  # e.g. distilling again what an earlier distill kept
    questions.write_text(json.dumps({"question": "1 + 1?"}) + "\n", encoding="utf-8")
    (out / "distill_report.json").write_text("{}\n", encoding="utf-8")
    code, _, err = run_cli(["data", "distill", str(questions), "--out", str(out), *UNREACHABLE, "--overwrite"])
    assert code == 2 and f"would overwrite the input {questions}" in err, err
