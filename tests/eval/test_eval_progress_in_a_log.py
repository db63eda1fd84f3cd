"""`dsft eval` / `compare` progress where the output is no terminal (nohup, SLURM's --output): a line as each tenth
of the prompts is answered, rather than a bar drawn only once every prompt is done."""

from __future__ import annotations

import io

from rich.console import Console

from dsft.eval.generate import _progress_bar


def test_generation_progress_in_a_log_file_is_printed_as_it_goes() -> None:
    out = io.StringIO()
    bar = _progress_bar(True, console=Console(file=out, force_terminal=False, width=200))
    task = bar.add_task("eval run", total=20, rate="")
    bar.update(task, advance=1, rate="5.0 tok/s")
    assert out.getvalue() == ""  # less than a tenth done
    bar.update(task, advance=3, rate="6.0 tok/s")
    assert out.getvalue().splitlines() == ["eval run 4/20  6.0 tok/s"]
    for _ in range(16):
        bar.update(task, advance=1, rate="7.0 tok/s")
    bar.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 9 and lines[-1] == "eval run 20/20  7.0 tok/s" and "━" not in out.getvalue()


def test_a_terminal_still_gets_the_bar() -> None:
    bar = _progress_bar(True, console=Console(file=io.StringIO(), force_terminal=True))
    try:
        assert bar.tasks == []  # a rich Progress
    finally:
        bar.stop()
