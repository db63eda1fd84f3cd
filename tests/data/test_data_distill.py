"""dsft data distill against a scripted teacher: every question accounted for, resumable, verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_endpoint import Reply, fake_endpoint, last_user, ok

from dsft.config.schema import DistillConfig
from dsft.data.distill import distill_files
from dsft.data.endpoint import ResponseCache
from dsft.eval.answer_check import answer_checker

QUESTIONS: list[dict[str, Any]] = [
    {"question": "Q1 青山水库哪年建成？", "answer": "1958年", "domain": "dams"},        # answered at once
    {"question": "Q2 rate limited: 2+2?", "answer": "4"},                            # 429 twice, then right
    {"question": "Q3 server error: 3+3?", "answer": "6"},                            # 500 every time
    {"question": "Q4 slow: 4+4?", "answer": "8"},                                    # times out every time
    {"question": "Q5 empty reasoning: 5+5?", "answer": "10"},
    {"question": "Q6 unclosed think: 6+6?", "answer": "12"},
    {"question": "Q7 wrong then right: 7+7?", "answer": "14"},
    {"question": "Q8 always wrong: 8+8?", "answer": "16"},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q9 inline think: 9+9?"}]},
    {"question": "Q10 malformed body"},
    {"text": "no question at all"},                                                  # rejected input
]


def teacher(body: dict[str, Any], count: int) -> Reply:
    question = last_user(body)
    tag = question.split()[0]
    if tag == "Q1":
        return ok("该水库于1958年建成。", reasoning="题目给出1958年。")
    if tag == "Q2":
        return Reply(429, headers={"Retry-After": "0"}) if count < 2 else ok("The answer is 4.", "2+2=4")
    if tag == "Q3":
        return Reply(500)
    if tag == "Q4":
        return Reply(delay=1.5, content="8", reasoning="late")
    if tag == "Q5":
        return ok("10", reasoning="")
    if tag == "Q6":
        return ok("<think>6+6 is 12 but I never close")
    if tag == "Q7":
        return ok("15", "guess") if count == 0 else ok("It is 14.", "7+7=14")
    if tag == "Q8":
        return ok("17", "off by one")
    if tag == "Q9":
        return ok("<think>\n9+9=18\n</think>\n\n18")
    return Reply(raw="{not json")


def settings(base_url: str, **extra: Any) -> DistillConfig:
    return DistillConfig.model_validate({"endpoint": {"base_url": base_url, "model": "teacher", "max_retries": 2,
                                                      "backoff": 0, "timeout": 0.5, "concurrency": 4}, **extra})


def test_every_question_is_answered_rejected_or_failed_and_a_rerun_asks_only_the_failures(tmp_path: Path) -> None:
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    out = tmp_path / "out"
    with fake_endpoint(teacher) as endpoint:
        report = distill_files(settings(endpoint.base_url, samples=2, system="Think step by step."), [str(data)], out,
                               answer_checker("auto"))
        systems = {last_user(r).split()[0]: r["messages"][0]["content"] for r in endpoint.requests}
        first_requests = len(endpoint.requests)
        again = distill_files(settings(endpoint.base_url, samples=2, system="Think step by step."), [str(data)], out,
                              answer_checker("auto"))
        rerun = endpoint.requests[first_requests:]
    assert report["read"] == 11 and report["rejected"] == 1
    assert systems["Q1"] == "Think step by step." and systems["Q9"] == "Be brief."  # the record's own system wins
    assert report["kept"] == 4 and report["verified"] == 3  # Q1, Q2, Q7 checked against references; Q9 has none
    assert report["removed"] == {"wrong_answer": 1, "unusable_output": 2, "request_failed": 3}
    assert report["read"] + sum(report["added"].values()) == (
        report["kept"] + report["rejected"] + sum(report["removed"].values()))
    assert report["retries"] >= 2 + 2 * 2  # Q2's 429s, Q3's and Q4's retries
    # The rerun asks again only what failed (Q3, Q4, Q10: 3 tries each); answers come from the cache.
    assert sorted({last_user(r).split()[0] for r in rerun}) == ["Q10", "Q3", "Q4"]
    assert again["kept"] == 4 and again["from_cache"] >= 7
    records = {json.loads(line)["meta"]["origin"].rsplit(":", 1)[1]: json.loads(line)
               for line in (out / "distilled.jsonl").read_text().splitlines()}
    assert set(records) == {"1", "2", "7", "9"}
    q1 = records["1"]
    assert q1["messages"][-1] == {"role": "assistant", "content": "该水库于1958年建成。", "reasoning_content": "题目给出1958年。"}
    assert q1["meta"]["domain"] == "dams" and q1["meta"]["distill_model"] == "teacher"
    assert records["7"]["meta"]["distill_sample"] == 1  # rejection sampling: the first right sample
    assert records["9"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert records["9"]["messages"][-1]["reasoning_content"] == "9+9=18" and records["9"]["messages"][-1]["content"] == "18"
    removed = {json.loads(line)["where"].rsplit(":", 1)[1]: json.loads(line) for line in (out / "removed.jsonl").read_text().splitlines()}
    assert removed["8"]["step"] == "wrong_answer" and "numeric: answer 17, reference 16" in removed["8"]["reason"]
    assert "empty reasoning" in removed["5"]["reason"] and "unclosed <think>" in removed["6"]["reason"]
    assert removed["3"]["step"] == "request_failed" and "HTTP 500" in removed["3"]["reason"]
    assert "timed out" in removed["4"]["reason"] and "malformed response" in removed["10"]["reason"]
    assert "no question field" in (out / "rejects.jsonl").read_text()
    # dsft data distill says the most frequent reasons of its rejections from here, as dsft data prepare does.
    assert [(r["records"], r["first"]) for r in report["rejected_reasons"]] == [(1, report["rejected_examples"][0].split(": ")[0])]


def test_the_cache_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    cache = ResponseCache(path)
    key = ResponseCache.key([{"role": "user", "content": "q"}], "m", {}, 0)
    from dsft.data.endpoint import Completion

    cache.put(key, Completion("a", "r"))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"key": "abc", "completion": {"cont')  # killed mid-write
    assert ResponseCache(path).get(key) == Completion("a", "r") and len(ResponseCache(path)) == 1


def test_the_key_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "Q1 x?", "answer": "1958"}) + "\n", encoding="utf-8")
    monkeypatch.setenv("TEACHER_KEY", "sk-secret")
    with fake_endpoint(teacher) as endpoint:
        cfg = settings(endpoint.base_url)
        cfg.endpoint.api_key_env = "TEACHER_KEY"
        distill_files(cfg, [str(data)], tmp_path / "out", None)
        assert endpoint.requests[0]["authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in (tmp_path / "out" / "distill_report.json").read_text()


def test_distill_cli_without_an_endpoint_is_one_error(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n", encoding="utf-8")
    code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "o")])
    assert code == 2 and "data.distill.endpoint: set base_url and model" in err and "Traceback" not in err


def test_backoff_doubles_and_retry_after_wins(tmp_path: Path) -> None:
    from dsft.data.endpoint import ChatClient, EndpointSettings, RequestFailed

    slept: list[float] = []
    with fake_endpoint(lambda body, count: Reply(503, headers={"Retry-After": "7"} if "after" in last_user(body) else {})) as endpoint:
        client = ChatClient(EndpointSettings(endpoint.base_url, "m", None, max_retries=3, backoff=1.0), sleep=slept.append)
        with pytest.raises(RequestFailed, match="HTTP 503.*after 3 retries"):
            client.complete([{"role": "user", "content": "x"}])
        assert len(slept) == 3 and all(2 ** i * 0.5 <= s <= 2 ** i for i, s in enumerate(slept))
        slept.clear()
        with pytest.raises(RequestFailed):
            client.complete([{"role": "user", "content": "after"}])
        assert slept == [7.0, 7.0, 7.0]
        client.close()


def test_the_rate_limit_spaces_request_starts() -> None:
    import time

    from dsft.data.endpoint import _RateLimit

    limit = _RateLimit(per_minute=600)  # one start every 0.1 s
    started = time.monotonic()
    for _ in range(5):
        limit.wait()
    assert time.monotonic() - started >= 0.39


def test_an_unreachable_or_refusing_teacher_is_one_error(tmp_path: Path, run_cli) -> None:
    import socket

    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "Q1 x?"}) + "\n", encoding="utf-8")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "o"),
                            "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m"])
    assert code == 2 and "the endpoint does not answer" in err and "Traceback" not in err
    with fake_endpoint(lambda body, count: Reply(401)) as endpoint:
        code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "o"),
                                "--base-url", endpoint.base_url, "--model", "m"])
        assert len(endpoint.requests) == 1  # a 401 is not retried
    assert code == 2 and "every request failed (first: sample 0: HTTP 401" in err
    assert json.loads((tmp_path / "o" / "distill_report.json").read_text())["removed"]["request_failed"] == 1


@pytest.mark.parametrize("args, said", [
    # The flag the user typed names the problem, not the key it sets (it was 'error: config: 1 problem(s)').
    (["--base-url", "api.deepseek.com/v1", "--model", "m"], "error: --base-url api.deepseek.com/v1: 1 problem(s)"),
    (["--set", "data.distill.endpoint.base_url=api.x/v1", "--model", "m"],
     "error: --set data.distill.endpoint.base_url=api.x/v1: 1 problem(s)"),
    # The flag comes after --set and wins: it is the value refused, and named.
    (["--set", "data.distill.endpoint.base_url=http://ok/v1", "--base-url", "api.deepseek.com/v1", "--model", "m"],
     "error: --base-url api.deepseek.com/v1: 1 problem(s)"),
    # An empty flag is a value given, not a flag left out (it said 'set base_url and model', naming no flag).
    (["--base-url", "", "--model", "m"], "error: --base-url '': 1 problem(s)"),
])
def test_a_base_url_that_is_no_url_is_named_as_the_user_gave_it(tmp_path: Path, run_cli, args: list[str],
                                                                 said: str) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n", encoding="utf-8")
    code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "o"), *args])
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err, err
    assert said in text and "data.distill.endpoint.base_url: must be an http:// or https:// URL" in text, text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "said"), [
    (["--model", ""], "error: --model '': 1 problem(s)"),
    (["--model", "  "], "error: --model '  ': 1 problem(s)"),
    (["--set", 'data.distill.endpoint.model=""'], "error: --set data.distill.endpoint.model=\"\": 1 problem(s)"),
])
def test_an_empty_model_name_is_named_as_the_user_gave_it(tmp_path: Path, run_cli, args: list[str], said: str) -> None:
    """--model '' (an unset shell variable) was taken for no model: 'data.distill.endpoint: set base_url and model',
    naming no flag, as --base-url '' was (9e0f425)."""
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n", encoding="utf-8")
    code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / "o"), "--base-url", "http://ok/v1",
                            *args])
    assert code == 2 and "Traceback" not in err, err
    assert said in err and "data.distill.endpoint.model: must name the model every request asks for" in err, err
    assert "set base_url and model" not in err and not (tmp_path / "o").exists()


def test_a_model_name_is_text_whatever_yaml_would_read_it_as(tmp_path: Path, run_cli) -> None:
    """--model yes was read as YAML (the boolean true, then refused as no string), --model 1.5 as a number."""
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "x"}) + "\n", encoding="utf-8")
    with fake_endpoint(lambda body, count: Reply(401)) as endpoint:
        for name in ("yes", "1.5"):
            code, _, err = run_cli(["data", "distill", str(data), "--out", str(tmp_path / name),
                                    "--base-url", endpoint.base_url, "--model", name])
            assert "problem(s)" not in err and "every request failed" in err, err  # reached the teacher
            assert endpoint.requests[-1]["model"] == name
