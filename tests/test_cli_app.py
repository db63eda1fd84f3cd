"""Every command answers --help quickly, and user errors are one message with exit code 2."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dsft.cli.app import app, main

runner = CliRunner()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    stack = [(prefix, click_group)]
    while stack:
        path, cmd = stack.pop()
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            stack.append((path + (name,), sub))


@pytest.mark.parametrize("path", sorted(_commands(app)))
def test_help(path) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("path", sorted(_commands(app)))
def test_help_keeps_bracketed_words(path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich reads ``[word]`` and ``[default: x]`` in help text as markup and drops it: help is printed as written."""
    import re

    import typer.main

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    # A help console 2,000 columns wide and no terminal, whatever the process's environment says: rich falls
    # back to 80 columns on a (forced) dumb terminal, and the help would wrap mid-phrase.
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 2000)
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", False)
    env = {"COLUMNS": "2000", "LINES": "50"}
    output = " ".join(runner.invoke(app, [*path, "--help"], env=env, terminal_width=2000).output.split())
    for param in command.params:
        for words in re.findall(r"\[[^\]]+\]", getattr(param, "help", None) or ""):
            assert " ".join(words.split()) in output, f"{' '.join(path)} {param.name}: '{words}' is lost from --help"
    assert "\\[" not in output, f"{' '.join(path)}: markup escaped twice (an option shared by two commands)"


@pytest.mark.parametrize("path", sorted(p for p in _commands(app) if p))
def test_command_summary_is_one_sentence_line(path) -> None:
    """The group's command list shows a command's first help paragraph as written: a line break inside it
    breaks the sentence in `dsft --help`."""
    import typer.main

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    summary = (command.help or "").strip().split("\n\n")[0]
    assert "\n" not in summary, f"dsft {' '.join(path)}: its first help paragraph spans lines: {summary!r}"


def test_top_level_help_is_fast_and_light() -> None:
    code = "import sys; from dsft.cli.app import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "the CLI must not import torch at startup"


def test_user_error_is_one_message_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "show", str(tmp_path / "missing.yaml")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "config file not found" in err and "Traceback" not in err


def test_unknown_command_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_python_dash_m() -> None:
    out = subprocess.run([sys.executable, "-m", "dsft", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("dsft ")


def test_error_message_is_not_rich_markup(tmp_path, capsys) -> None:
    """Brackets in a message (pip extras, YAML errors, file names) are printed as written."""
    bad = tmp_path / "bad[1].yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(SystemExit) as info:
        main(["config", "show", str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bad[1].yaml: not valid YAML" in err.split("error:", 1)[1]
    from dsft.errors import DsftError

    def boom() -> None:
        raise DsftError('install it: pip install "dsft[distributed]"')

    import typer

    extra = typer.Typer()
    extra.command()(boom)
    from dsft.cli import app as app_module

    original = app_module.app
    app_module.app = extra
    try:
        with pytest.raises(SystemExit):
            main([])
    finally:
        app_module.app = original
    assert 'pip install "dsft[distributed]"' in capsys.readouterr().err


def test_debug_after_the_command_is_dsft_s_own_flag(tmp_path, monkeypatch) -> None:
    """`dsft train c.yaml --out r --debug` (README: `dsft --debug ...`) shows the traceback; it was refused as
    'No such option: --debug' of train."""
    monkeypatch.setenv("DSFT_DEBUG", "0")  # the root callback sets it to 1: restored (removed) after the test
    from dsft.errors import ConfigError

    with pytest.raises(ConfigError, match="config file not found"):  # --debug: the error is raised, not printed
        main(["train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "run"), "--debug"])


@pytest.mark.parametrize(("args", "said"), [
    (["launch", "c.yaml", "--num_gpus", "2", "--out", "l"], "No such option: --num_gpus; use --gpus-per-node"),
    (["plan", "--model", "tiny-r1-distill-qwen", "--nproc-per-node", "8"],
     "No such option: --nproc-per-node; use --gpus-per-node"),
    (["launch", "c.yaml", "--master_port", "29501", "--out", "l"], "No such option: --master_port; use --master-port"),
    (["train", "c.yaml", "--out", "r", "--num_gpus", "2"],
     "No such option: --num_gpus; this command is one process; a launcher starts one per GPU: dsft launch CONFIG "
     "--gpus-per-node ... writes its command (docs/distributed.md)"),
    (["train", "c.yaml", "--out", "r", "--deepspeed", "ds_config.json"],
     "No such option: --deepspeed; use train.distributed: deepspeed with train.zero_stage (in the config, or --set "
     "KEY=VALUE)"),
    (["train", "c.yaml", "--out", "r", "--learning_rate", "1e-5"],
     "No such option: --learning_rate; the config key is train.lr: --set train.lr=VALUE"),
    (["sweep", "c.yaml", "--out", "s", "--num_train_epochs", "1"],
     "No such option: --num_train_epochs; the config key is train.epochs: --set train.epochs=VALUE"),
    # `deepspeed --num_gpus 2 -m dsft train ...`: the launcher appends --local_rank=N unless given --no_local_rank
    (["train", "c.yaml", "--out", "r", "--local_rank=0"],
     "No such option: --local_rank; the deepspeed launcher adds it unless told not to: deepspeed --num_gpus N "
     "--no_local_rank --module dsft train ... (each process reads LOCAL_RANK from its environment), or dsft launch "
     "CONFIG --launcher deepspeed writes that command"),
])
def test_a_guide_s_launcher_or_training_script_option_says_what_does_its_job(args, said, capsys) -> None:
    """Guide 000 starts training with `deepspeed --num_gpus 2 --master_port 29501 train.py --deepspeed
    ds_config.json`; the same words given to dsft were 'No such option: --num_gpus' and nothing more (--master_port
    suggested --master-addr too; --learning_rate, --num_train_epochs the same)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and said in " ".join(err.split()), err
    assert "Possible options" not in err


@pytest.mark.parametrize(("args", "command"), [
    (["eval", "run", "--local_rank=0"], "dsft eval"),
    (["data", "prepare", "qa.jsonl", "--out", "p", "--local_rank", "1"], "dsft data prepare"),
    (["sweep", "c.yaml", "--out", "s", "--local_rank=3"], "dsft sweep"),
])
def test_a_launcher_s_local_rank_names_the_command_the_user_ran(args, command, capsys) -> None:
    """`deepspeed ... --module dsft eval RUN` appends --local_rank=N to whatever it starts; every command's message
    told the user to start `dsft train` instead, and that dsft launch writes the command (it writes train's only)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2, err
    assert err.endswith("No such option: --local_rank; the deepspeed launcher adds it unless told not to: deepspeed "
                        f"--num_gpus N --no_local_rank --module {command} ... (each process reads LOCAL_RANK from "
                        "its environment)"), err


@pytest.mark.parametrize(("args", "key"), [
    (["train", "c.yaml", "--out", "r", "--max-steps", "3"], "train.max_steps"),
    (["data", "prepare", "qa.jsonl", "--out", "p", "--format", "context_qa"], "data.format"),
])
def test_an_unknown_option_that_is_a_config_key_says_how_to_set_it(args, key, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"is a config key: --set {key}=VALUE" in err
    assert "Possible options" not in err  # data prepare suggested --out for --format
