"""``dsft serve --engine vllm``: the vllm command line for models, LoRA runs and named adapters."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dsft.cli.app import main


def vllm_argv(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    main(["serve", *args, "--engine", "vllm", "--dry-run"])
    return shlex.split(capsys.readouterr().out.strip())


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_model_directory_gets_r1_reasoning_parser_and_training_template(
    serve_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dsft.templates import get_template

    argv = vllm_argv(capsys, str(serve_model_dir), "--served-model-name", "r1", "--port", "9001",
                     "--tensor-parallel-size", "2", "--max-model-len", "32768", "--api-key", "s3cret")
    assert argv[:3] == ["vllm", "serve", str(serve_model_dir)]
    assert option(argv, "--served-model-name") == "r1"
    assert option(argv, "--reasoning-parser") == "deepseek_r1"
    assert option(argv, "--tensor-parallel-size") == "2"
    assert option(argv, "--max-model-len") == "32768"
    assert (option(argv, "--host"), option(argv, "--port")) == ("127.0.0.1", "9001")
    assert option(argv, "--api-key") == "****", "the key must not be printed"
    assert Path(option(argv, "--chat-template")).read_text(encoding="utf-8") == get_template("deepseek-r1").chat_template
    assert "--enable-lora" not in argv and "--tokenizer" not in argv


def test_lora_run_serves_base_plus_adapters_with_enough_rank(
    lora_run_dir: Path, extra_adapter_dir: Path, serve_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = vllm_argv(capsys, str(lora_run_dir), "--served-model-name", "tuned", "--adapter", f"sql={extra_adapter_dir}")
    assert argv[2] == str(serve_model_dir)
    assert option(argv, "--served-model-name") == "tuned-base"
    assert option(argv, "--tokenizer") == str(lora_run_dir / "final")
    assert "--enable-lora" in argv
    start = argv.index("--lora-modules") + 1
    assert argv[start:start + 2] == [f"tuned={lora_run_dir / 'final'}", f"sql={extra_adapter_dir}"]
    assert option(argv, "--max-lora-rank") == "32", "rank 24 needs vLLM's next allowed rank, 32"


def test_missing_vllm_is_a_clear_error(serve_model_dir: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit) as info:
        main(["serve", str(serve_model_dir), "--engine", "vllm"])
    assert info.value.code == 2
    assert "pip install vllm" in capsys.readouterr().err


def test_bad_adapter_argument_is_a_clear_error(serve_model_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", str(serve_model_dir), "--engine", "vllm", "--dry-run", "--adapter", f"x={tmp_path}"])
    assert info.value.code == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_lora_run_template_travels_with_the_run_and_parallelism_reaches_vllm(
    lora_run_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Guide 003 serves on TP 8 x PP 4 over Ray; the template must not point into this machine's cache."""
    argv = vllm_argv(capsys, str(lora_run_dir), "--tensor-parallel-size", "8", "--pipeline-parallel-size", "4",
                     "--engine-args", "--trust-remote-code --max-num-seqs 64")
    template = Path(option(argv, "--chat-template"))
    assert template.parent in (lora_run_dir, lora_run_dir / "final")
    assert option(argv, "--tensor-parallel-size") == "8" and option(argv, "--pipeline-parallel-size") == "4"
    assert argv[-3:] == ["--trust-remote-code", "--max-num-seqs", "64"]
    config = tmp_path / "serve.yaml"
    config.write_text("serve:\n  tensor_parallel_size: 8\n  pipeline_parallel_size: 4\n"
                      "  engine_args: [--enable-expert-parallel]\n")
    argv = vllm_argv(capsys, str(lora_run_dir), "--config", str(config))
    assert option(argv, "--pipeline-parallel-size") == "4" and argv[-1] == "--enable-expert-parallel"


def test_vllm_only_options_are_refused_for_the_transformers_engine(serve_model_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", str(serve_model_dir), "--pipeline-parallel-size", "4"])
    assert info.value.code == 2 and "--engine vllm only" in capsys.readouterr().err


def test_a_tokenizer_carrying_the_training_template_needs_no_template_file(
    serve_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An HF export holds the training template in tokenizer_config.json: nothing points into a local cache."""
    import json
    import shutil

    from dsft.templates import get_template

    exported = tmp_path / "export"
    shutil.copytree(serve_model_dir, exported)
    (exported / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((exported / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = get_template("deepseek-r1").chat_template
    (exported / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    argv = vllm_argv(capsys, str(exported))
    assert "--chat-template" not in argv and option(argv, "--reasoning-parser") == "deepseek_r1"


def test_a_vllm_config_served_here_with_engine_transformers_leaves_its_vllm_settings_aside(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Guide 003's config (serve.engine vllm, TP 8, PP 4, --trust-remote-code) tried locally with --engine
    transformers was refused for the config's own vLLM settings; it now gets as far as the model (here: a name
    that names nothing, so no server starts). The same settings with serve.engine: transformers in the file
    are still a contradiction."""
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("serve:\n  engine: vllm\n  tensor_parallel_size: 8\n  pipeline_parallel_size: 4\n"
                       "  engine_args: [--trust-remote-code]\n")
    with pytest.raises(SystemExit) as info:
        main(["serve", str(tmp_path / "absent-model"), "--config", str(cluster), "--engine", "transformers"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "absent-model" in err and "vllm only" not in err, err
    contradictory = tmp_path / "local.yaml"
    contradictory.write_text("serve:\n  engine: transformers\n  tensor_parallel_size: 2\n")
    with pytest.raises(SystemExit) as info:
        main(["serve", str(tmp_path / "absent-model"), "--config", str(contradictory)])
    assert info.value.code == 2 and "apply to serve.engine: vllm only" in capsys.readouterr().err


def test_a_run_is_served_with_its_own_config_serve_section(lora_run_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A guide's `serve: {served_model_name: reservoir-qa}` went unread by `dsft serve RUN` (served as the directory's
    name) unless --config named the file again; export reads the run's own config, and so does serve now."""
    import shutil

    run = tmp_path / "000"
    shutil.copytree(lora_run_dir, run)
    (run / "config.yaml").write_text("serve:\n  served_model_name: reservoir-qa\n  port: 8123\n", encoding="utf-8")
    argv = vllm_argv(capsys, str(run))
    assert option(argv, "--served-model-name") == "reservoir-qa-base" and option(argv, "--port") == "8123"
    assert f"reservoir-qa={run / 'final'}" in argv
    other = tmp_path / "other.yaml"
    other.write_text("serve:\n  served_model_name: other\n", encoding="utf-8")
    argv = vllm_argv(capsys, str(run), "--config", str(other), "--port", "9002")  # --config, then flags, win
    assert option(argv, "--served-model-name") == "other-base" and option(argv, "--port") == "9002"


def family_argv(template: str, tmp_path: Path, engine_args: tuple[str, ...] = ()) -> list[str]:
    """The vllm argv for a bare model directory whose template family is ``template``."""
    from dsft.export.source import ExportSource
    from dsft.serve.settings import ServeSettings
    from dsft.serve.vllm import build_vllm_command

    source = ExportSource("full", template, tmp_path, tmp_path)
    return build_vllm_command(source, {}, ServeSettings(), tmp_path / "chat_template.jinja", engine_args=engine_args)


@pytest.mark.parametrize(("template", "reasoning", "tools", "tokenizer_mode"), [
    ("deepseek-v3", None, "deepseek_v3", None),
    ("deepseek-r1", "deepseek_r1", "deepseek_v3", None),
    ("deepseek-v3.1", "deepseek_v3", "deepseek_v31", None),
    ("deepseek-v3.2", "deepseek_v3", "deepseek_v32", "hf"),
    ("deepseek-v4", "deepseek_v4", "deepseek_v4", "hf"),
    ("deepseek-llm", None, None, None),
])
def test_each_family_gets_vllm_parsers_and_a_tokenizer_mode_that_keeps_the_training_template(
        template: str, reasoning: str | None, tools: str | None, tokenizer_mode: str | None, tmp_path: Path) -> None:
    """vLLM renders DeepSeek-V3.2 and V4 with its own encoder (tokenizer modes deepseek_v32/deepseek_v4, its
    default for those architectures) and ignores --chat-template there: the served prompt would not be the
    training one. Tool calls need vLLM's parser for the family's format, or they arrive as raw text in
    `content`; V4 had no reasoning parser, so its reasoning did too."""
    argv = family_argv(template, tmp_path)
    assert option(argv, "--chat-template") == str(tmp_path / "chat_template.jinja")
    assert (option(argv, "--reasoning-parser") if "--reasoning-parser" in argv else None) == reasoning
    assert (option(argv, "--tool-call-parser") if "--tool-call-parser" in argv else None) == tools
    assert ("--enable-auto-tool-choice" in argv) == (tools is not None)
    assert (option(argv, "--tokenizer-mode") if "--tokenizer-mode" in argv else None) == tokenizer_mode


def test_engine_args_come_last_so_a_user_can_override_the_tokenizer_mode(tmp_path: Path) -> None:
    """argparse keeps an option's last value: `--engine-args "--tokenizer-mode deepseek_v32"` wins (a user
    who wants DeepSeek's own encoder, or a vLLM too old to know `hf`)."""
    argv = family_argv("deepseek-v3.2", tmp_path, ("--tokenizer-mode", "deepseek_v32"))
    assert argv.index("--tokenizer-mode") < len(argv) - 2 and argv[-2:] == ["--tokenizer-mode", "deepseek_v32"]


@pytest.mark.parametrize("flags", [("--max-tokens", "64"), ("--max-queue", "4"), ("--max-batch", "2"),
                                   ("--quantize", "int8"), ("--dtype", "bfloat16")])
def test_the_transformers_engines_own_options_are_refused_for_vllm(serve_model_dir: Path, flags: tuple[str, ...],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM's server answers the requests itself (dsft only launches it), so dsft's request limits never see one and
    vLLM loads the model its own way: `--engine vllm --max-tokens 64` printed and ran a command without any cap, in
    silence. Refused naming the flag and where vLLM's own options go; --dtype auto (the default) is not a choice."""
    with pytest.raises(SystemExit) as info:
        main(["serve", str(serve_model_dir), "--engine", "vllm", "--dry-run", *flags])
    captured = capsys.readouterr()
    assert info.value.code == 2 and not captured.out, captured.out
    assert f"{flags[0]}: apply to --engine transformers only; with --engine vllm, vLLM's own server answers" in \
        captured.err and "--engine-args" in captured.err, captured.err
    assert vllm_argv(capsys, str(serve_model_dir), "--dtype", "auto")[:2] == ["vllm", "serve"]


def test_dsft_only_launches_vllm_so_its_request_checks_do_not_run_there(
        serve_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The stated limitation (docs/serve.md, "What dsft does not check under vLLM") holds: `--engine vllm` hands the
    process to `vllm serve` (here a fake one on PATH) and builds no dsft app or engine that a request could meet."""
    import dsft.serve.app as serve_app
    import dsft.serve.server as server
    import dsft.serve.vllm as vllm

    ran: list[list[str]] = []
    monkeypatch.setattr(vllm.shutil, "which", lambda name: f"/fake/{name}")
    monkeypatch.setattr(vllm.subprocess, "call", lambda command: ran.append(command) or 0)
    monkeypatch.setattr(serve_app, "create_app", lambda *a, **k: pytest.fail("dsft's app was built for vllm"))
    monkeypatch.setattr(server, "build_engine", lambda *a, **k: pytest.fail("dsft's engine was built for vllm"))
    main(["serve", str(serve_model_dir), "--engine", "vllm"])  # vLLM's exit status 0: returns
    assert [command[:2] for command in ran] == [["vllm", "serve"]]
    assert "running: vllm serve" in capsys.readouterr().err
