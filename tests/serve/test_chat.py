"""``dsft chat``: piped stdin, commands, streamed output with reasoning dimmed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from scripted import scripted_serving

from dsft.cli.app import main

ANSWER = "Two plus two.\n</think>\n\nIt is 4."


@pytest.fixture(scope="module")
def tokenizer(serve_model_dir: Path) -> Any:
    from dsft.models.loading import load_tokenizer

    return load_tokenizer(serve_model_dir)


def test_piped_chat_answers_like_generate(serve_model_dir: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from dsft.models.loading import load_model, load_tokenizer

    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2+2?\n/system Answer briefly.\n/reset\n/bogus\n/exit\nnot read\n"))
    # --max-new-tokens: eval's and compare's name for it, accepted beside --max-tokens (was 'No such option')
    main(["chat", str(serve_model_dir), "--max-new-tokens", "6", "--temperature", "0"])
    out = capsys.readouterr().out
    model, tok = load_model(serve_model_dir, dtype="float32", device="cpu"), load_tokenizer(serve_model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)
    ids = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
    expected = tok.decode(ids[0, len(prompt):], skip_special_tokens=True)
    assert expected.strip() and expected in out
    assert "(system prompt set; history cleared)" in out
    assert "(history cleared)" in out
    assert "unknown command /bogus" in out
    assert "not read" not in out


def test_reasoning_is_dimmed_and_history_keeps_the_turns(tokenizer: Any) -> None:
    from dsft.serve.chat import ChatSession, run_chat

    session = ChatSession(scripted_serving(tokenizer, ANSWER, "deepseek-r1"), max_tokens=40)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system="standard", width=200)
    answered = run_chat(session, ["Hi", "And 3+3?"], console, interactive=False)
    assert answered == 2
    assert [m.role for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.history[1].reasoning == "Two plus two.\n"
    assert session.history[1].content == "\n\nIt is 4."
    text = screen.getvalue()
    dim_start = text.index("\x1b[2m")
    assert text.index("Two") > dim_start, "the reasoning is printed dimmed"
    assert "It is 4." in text and "\x1b[2m" not in text[text.index("It is 4.") - 8:text.index("It is 4.")]

    run_chat(session, ["/system Be brief.", "Hi"], console, interactive=False)
    assert session.system == "Be brief." and [m.role for m in session.history] == ["user", "assistant"]



def test_replies_are_printed_as_written_not_as_rich_emoji(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece of a reply that holds a whole emoji code (`:smile:`, `:+1:`) is printed as the model wrote it;
    rich would turn it into 😄 and the terminal would show text the model did not write. The generation loop
    is replaced by one that delivers the reply as one piece, as a tokenizer with such tokens could."""
    from dsft.serve import chat
    from dsft.serve.generation import RowResult

    reply = "Nice :smile: and :+1: day"

    def one_piece(model: Any, tok: Any, requests: list[Any], eos_ids: set[int], emit: Any) -> list[RowResult]:
        result = RowResult(text=reply, completion_tokens=1, finish_reason="stop")
        emit(0, reply, result)
        return [result]

    monkeypatch.setattr(chat, "generate_batch", one_piece)
    session = chat.ChatSession(scripted_serving(tokenizer, "unused", "deepseek-v3"), max_tokens=8)
    screen = io.StringIO()
    answered = chat.run_chat(session, ["Hi"], Console(file=screen, width=200), interactive=False)
    assert answered == 1 and reply in screen.getvalue()
    assert session.history[-1].content == reply


def test_a_line_that_is_not_utf8_is_refused_and_the_session_goes_on(tokenizer: Any) -> None:
    """A GBK terminal (or piped GBK file) under a UTF-8 locale: the undecodable bytes reached the tokenizer as lone
    surrogates, a TypeError traceback ended the chat and its history was lost."""
    from dsft.serve.chat import ChatSession, run_chat

    session = ChatSession(scripted_serving(tokenizer, ANSWER, "deepseek-r1"), max_tokens=40)
    screen = io.StringIO()
    gbk = "你好".encode("gbk").decode("utf-8", errors="surrogateescape")  # what sys.stdin reads
    answered = run_chat(session, ["Hi", gbk, f"/system {gbk}", "And 3+3?"], Console(file=screen, width=300),
                        interactive=False)
    assert answered == 2
    assert [m.role for m in session.history] == ["user", "assistant", "user", "assistant"]
    assert session.system is None
    text = " ".join(screen.getvalue().split())
    assert text.count("line not sent: not valid UTF-8 (byte 0xC4 at character") == 2
    assert "line not sent: not valid UTF-8 (byte 0xC4 at character 0); it reads as GBK/GB18030 Chinese" in text


def test_help_lists_the_commands(tokenizer: Any) -> None:
    """/help was answered 'unknown command /help' (which then listed the commands)."""
    from dsft.serve.chat import HELP, ChatSession, run_chat

    session = ChatSession(scripted_serving(tokenizer, ANSWER, "deepseek-r1"), max_tokens=40)
    screen = io.StringIO()
    answered = run_chat(session, ["/help", "/?"], Console(file=screen, width=300), interactive=False)
    text = " ".join(screen.getvalue().split())
    assert answered == 0
    assert "unknown command /help" not in text
    assert text.startswith(HELP) and "/help" in HELP
    assert "unknown command /?" in text


def test_a_reply_without_max_new_tokens_stays_within_serve_max_tokens() -> None:
    """The default (512 tokens) is lowered to a serve.max_tokens below it rather than refused: the user asked for
    nothing out of bounds."""
    from dsft.config import load_config
    from dsft.serve.settings import check_reply_tokens

    capped = load_config(None, ["serve.max_tokens=64"]).serve
    assert check_reply_tokens(None, capped, "c.yaml", flag="--max-new-tokens", default=512) == 64
    assert check_reply_tokens(64, capped, "c.yaml", flag="--max-new-tokens", default=512) == 64
    assert check_reply_tokens(None, load_config(None).serve, "", flag="--max-new-tokens", default=512) == 512


def test_a_thinking_flag_the_template_has_no_mode_for_is_named(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`dsft chat --thinking` with a family that has no thinking mode changed nothing, silently; one notice says so
    before the first prompt, as eval, template render and data inspect say it."""
    monkeypatch.setattr("sys.stdin", io.StringIO("/exit\n"))
    main(["chat", "tiny-deepseek-v3", "--thinking"])
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("notice: --thinking: template deepseek-r1 has no thinking mode; the flag changes nothing") == 1, err
