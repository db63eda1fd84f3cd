"""Chat through the dashboard: the answer is dsft serve's, for final/ and for a checkpoint, base beside it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dsft.config import load_config
from dsft.errors import DsftError
from dsft.serve.app import create_app as create_serve_app
from dsft.serve.server import build_engine
from dsft.serve.settings import ServeSettings
from dsft.training.run import run_training
from dsft.ui.app import create_app

POST = {"x-dsft-ui": "1"}
MESSAGES = [{"role": "user", "content": "Which river is longest?"}]


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> Path:
    tiny_model_dir("tiny-deepseek-v3")
    root = tmp_path_factory.mktemp("runs")
    data = root / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Which river is number {i}?"},
        {"role": "assistant", "content": f"River {i}.", "reasoning_content": f"Number {i}."}]}) + "\n"
        for i in range(8)), encoding="utf-8")
    cfg = load_config(None, ["model.name_or_path=tiny-deepseek-v3", f"data.train=[{data}]", "data.val_ratio=0",
                             "train.max_steps=2", "train.save_steps=1", "train.micro_batch_size=2",
                             "train.max_seq_len=64", "lora.r=4"])
    run_training(cfg, root / "lora", progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """The session fixture's behaviour at module scope (a module fixture cannot use a function one)."""
    from dsft.models.resolve import resolve_model

    cache = tmp_path_factory.mktemp("dsft-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSFT_CACHE", str(cache))
        yield lambda name: resolve_model(name, cache_dir=cache)


def serve_answer(run: Path) -> dict:
    """What `dsft serve RUN` answers to MESSAGES (greedy, 16 tokens)."""
    settings = ServeSettings(served_model_name="r")
    with TestClient(create_serve_app(build_engine(str(run), [], settings), settings)) as client:
        for _ in range(600):
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.1)
        return client.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 16,
                                                         "temperature": 0}).json()["choices"][0]["message"]


def test_chat_answers_as_dsft_serve_does(trained_root: Path) -> None:
    expected = serve_answer(trained_root / "lora")
    with TestClient(create_app(trained_root), base_url="http://127.0.0.1") as client:
        page = client.get("/chat/lora").text
        assert "<option value='checkpoint-1'>" in page and ">final</option>" in page
        got = client.post("/api/chat", headers=POST, json={"run": "lora", "messages": MESSAGES, "max_tokens": 16,
                                                           "temperature": 0, "side_by_side": True}).json()
        assert got["tuned"]["content"] == (expected["content"] or "")
        assert got["tuned"]["reasoning"] == expected.get("reasoning_content")
        assert got["tuned"]["usage"]["completion_tokens"] <= 16
        assert "content" in got["base"] and got["base"]["usage"]["completion_tokens"] <= 16
        ckpt = client.post("/api/chat", headers=POST, json={"run": "lora", "checkpoint": "checkpoint-1",
                                                            "messages": MESSAGES, "max_tokens": 4}).json()
        assert ckpt["tuned"]["usage"]["completion_tokens"] <= 4 and "base" not in ckpt


@pytest.mark.parametrize("body, message", [
    ({"run": "lora", "messages": []}, "messages"),
    # Checked as dsft serve checks them, before any model loads (they were answered 200, the error inside, after).
    ({"run": "lora", "messages": [{"role": "x", "content": "hi"}]}, "messages.0.role: Input should be 'system'"),
    ({"run": "lora", "messages": [{"content": 5}]}, "messages.0.role: Field required; messages.0.content: must be"),
    ({"run": "lora", "messages": [1]}, "messages.0: Input should be a valid dictionary"),
    ({"run": "lora", "messages": MESSAGES, "checkpoint": "checkpoint-99"}, "checkpoint checkpoint-99"),
    ({"run": "lora", "messages": MESSAGES, "temperature": 9}, "temperature"),
    ({"run": "lora", "messages": MESSAGES, "max_tokens": "many"}, "max tokens: a whole number in 1..2048"),
    # Refused before any model loads, as `dsft serve RUN` would refuse it (0 was read as 1, 10**6 loaded the model
    # and the run's serve app refused it inside the stream, naming the API's field).
    ({"run": "lora", "messages": MESSAGES, "max_tokens": 0}, "max tokens: a whole number in 1..2048 (this run's "
                                                             "serve.max_tokens), got 0"),
    ({"run": "lora", "messages": MESSAGES, "max_tokens": 10**6}, "max tokens: a whole number in 1..2048"),
    ({"run": "../lora", "messages": MESSAGES}, "run ../lora: outside the runs root"),
    ({"messages": MESSAGES}, "run: empty; name a path under the runs root"),
    ({"run": "nope", "messages": MESSAGES}, "no such file"),
])
def test_bad_chat_requests(runs_root: Path, body: dict, message: str) -> None:
    shutil.copytree(runs_root / "alpha", runs_root / "lora")
    client = TestClient(create_app(runs_root), base_url="http://127.0.0.1")
    response = client.post("/api/chat", headers=POST, json=body)
    assert response.status_code in (400, 404) and message in response.json()["error"], response.text


def test_the_chat_pages_max_tokens_is_the_runs_serve_limit(runs_root: Path) -> None:
    """The field had no max and the dashboard allowed 512 whatever the run's serve.max_tokens (dsft serve RUN's limit)."""
    run = shutil.copytree(runs_root / "alpha", runs_root / "lora")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "serve:\n  max_tokens: 64\n")
    client = TestClient(create_app(runs_root), base_url="http://127.0.0.1")
    assert "name='max_tokens' type='number' required min='1' max='64' value='64'" in client.get("/chat/lora").text
    assert "max='2048' value='128'" in client.get("/chat/alpha").text  # the schema's serve.max_tokens
    response = client.post("/api/chat", headers=POST, json={"run": "lora", "messages": MESSAGES, "max_tokens": 65})
    assert response.status_code == 400
    assert response.json()["error"] == "max tokens: a whole number in 1..64 (this run's serve.max_tokens), got 65"


def test_a_run_without_final_says_so(runs_root: Path) -> None:
    client = TestClient(create_app(runs_root), base_url="http://127.0.0.1")
    response = client.post("/api/chat", headers=POST, json={"run": "alpha", "messages": MESSAGES})
    assert response.status_code == 400 and "no final/" in response.json()["error"]
    # Without a checkpoint either, it said "chat with a checkpoint" of none.
    shutil.rmtree(runs_root / "alpha" / "checkpoints")
    response = client.post("/api/chat", headers=POST, json={"run": "alpha", "messages": MESSAGES})
    assert response.status_code == 400 and response.json()["error"] == (
        "alpha: no final/ and no checkpoint yet; nothing to chat with until the run has saved one")


def stream_events(client: TestClient, body: dict) -> list[dict]:
    with client.stream("POST", "/api/chat/stream", headers=POST, json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    return [json.loads(block.removeprefix("data: ")) for block in text.strip().split("\n\n")]


def test_streamed_chat_arrives_in_pieces_and_joins_to_the_whole_answer(trained_root: Path) -> None:
    body = {"run": "lora", "messages": MESSAGES, "max_tokens": 12, "temperature": 0, "side_by_side": True}
    with TestClient(create_app(trained_root), base_url="http://127.0.0.1") as client:
        whole = client.post("/api/chat", headers=POST, json=body).json()
        events = stream_events(client, body)
    for side in ("tuned", "base"):
        mine = [e for e in events if e["side"] == side]
        pieces = [e for e in mine if "content" in e or "reasoning" in e]
        assert len(pieces) > 1, mine  # token by token, not one block at the end
        assert "".join(e.get("content", "") for e in pieces) == whole[side]["content"]
        assert ("".join(e.get("reasoning", "") for e in pieces) or None) == whole[side]["reasoning"]
        assert mine[-1]["done"] and mine[-1]["usage"]["completion_tokens"] == whole[side]["usage"]["completion_tokens"]


def test_a_bad_streamed_chat_is_refused_before_the_stream(trained_root: Path) -> None:
    client = TestClient(create_app(trained_root), base_url="http://127.0.0.1")
    response = client.post("/api/chat/stream", headers=POST, json={"run": "lora", "messages": MESSAGES,
                                                                    "checkpoint": "checkpoint-99"})
    assert response.status_code == 400 and "checkpoint checkpoint-99" in response.json()["error"]
    assert client.post("/api/chat/stream", json={"run": "lora", "messages": MESSAGES}).status_code == 403
    assert client.post("/api/chat/stream", headers=POST, json={"run": "../x", "messages": MESSAGES}).status_code == 404


def _weights_run(root: Path, method: str, base: Path) -> Path:
    """A run directory as training leaves it (no weights worth loading: only what chooses them): ``final/`` and
    ``checkpoint-1``, a LoRA run's checkpoint saved without the tokenizer."""
    run = root / method
    weights = ["adapter_config.json"] if method == "lora" else ["config.json", "tokenizer_config.json"]
    for where, files in (("final", [*weights, "tokenizer_config.json"]), ("checkpoints/checkpoint-1", weights)):
        (run / where).mkdir(parents=True)
        for name in files:
            (run / where / name).write_text("{}", encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"status": "finished", "method": method, "template": "deepseek-r1",
                                              "base_model": str(base), "model_name_or_path": str(base),
                                              "final": "final"}), encoding="utf-8")
    return run


@pytest.mark.parametrize("method, base_present", [("lora", True), ("full", False)])
@pytest.mark.parametrize("checkpoint", [None, "checkpoint-1"])
def test_the_dashboard_chats_with_what_dsft_chat_loads(tmp_path: Path, method: str, base_present: bool,
                                                       checkpoint: str | None) -> None:
    """The dashboard picked a run's weights, tokenizer and base model its own way: a full run whose base model is gone
    (moved to a machine without it) was refused ('base model was not found') though `dsft chat RUN` chats with its
    final/, and a LoRA checkpoint saved without the tokenizer took final/'s where `dsft chat` takes the base's. Both
    now ask resolve_source, given the same weights."""
    from dsft.export.source import resolve_source
    from dsft.ui.chat import TUNED, sources

    base = tmp_path / "base"
    if base_present:
        base.mkdir()
        (base / "config.json").write_text("{}", encoding="utf-8")
        (base / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    run = _weights_run(tmp_path, method, base)
    weights = run / "checkpoints" / checkpoint if checkpoint else run
    cli = resolve_source(weights)
    (_, dashboard, adapters), = sources(run, checkpoint, with_base=False)
    assert (dashboard.template, dashboard.model_dir, dashboard.tokenizer_dir) == (
        cli.template, cli.model_dir, cli.tokenizer_dir)
    # A LoRA run's adapter is served by name (`tuned`) beside the base, in one engine.
    assert (dashboard.adapter_dir, adapters.get(TUNED)) == (None, cli.adapter_dir)


@pytest.mark.parametrize("checkpoint", [None, "checkpoint-1"])
def test_a_lora_run_whose_base_model_is_gone_says_what_to_do_in_the_dashboard(tmp_path: Path,
                                                                              checkpoint: str | None) -> None:
    """The chat said the CLI's 'pass the base model with --base-model PATH_OR_ID', a field the dashboard has none of.
    The rest of the message (whose base, the paths tried) is the library's own, as the CLI says it."""
    from dsft.training.rundir import RunDir
    from dsft.ui.chat import sources
    from dsft.ui.paths import shown

    root = tmp_path / "runs"
    base = tmp_path / "gone"
    run = _weights_run(root, "lora", base)
    weights = run / "checkpoints" / checkpoint if checkpoint else run / "final"
    client = TestClient(create_app(root), base_url="http://127.0.0.1")
    body = {"run": "lora", "messages": MESSAGES, **({"checkpoint": checkpoint} if checkpoint else {})}
    response = client.post("/api/chat", headers=POST, json=body)
    said = response.json()["error"]
    with pytest.raises(DsftError) as cli:  # what the command line says of the same weights
        RunDir.find(weights).to_load()
    head = str(cli.value).splitlines()[0]
    assert response.status_code == 400 and f"tried: {base}" in head and said.splitlines()[0] == shown(root, head), said
    assert "--base-model" not in str(cli.value)  # the library names no front end's flag; the CLI adds its own
    # Paths under the runs root relative to it, as the dashboard names them (and the CLI run there takes them).
    assert said.splitlines()[1:] == [f"  - put the base model back where the first path tried says, or chat from a "
                                     f"terminal: dsft chat {weights.relative_to(root)} --base-model PATH_OR_ID"], said
    # A full run asked for its base side by side: the dashboard's own way out, untick it.
    full = _weights_run(root, "full", base)
    with pytest.raises(DsftError) as side:
        sources(full, checkpoint, with_base=True)
    assert str(side.value).splitlines()[1:] == ["  - put the base model back where the first path tried says, or "
                                                "untick base side by side to chat with the tuned model alone"]


def test_a_run_with_only_its_config_is_listed_as_unusable_and_refused_saying_why(runs_root: Path) -> None:
    """A directory holding config.yaml but no run.json (training never started there, or stopped during setup) is
    listed, but no command opens it (RunDir.find takes only run.json's directories): chatting with its final/ was a 500
    (an AssertionError: the weights resolved as a plain model of no run) and compare/export started a job that could
    only fail. It is listed as not started, with the reason, offers no chat, and every chat or job says the reason."""
    run = shutil.copytree(runs_root / "alpha", runs_root / "lonely")
    (run / "run.json").unlink()
    (run / "final").mkdir()
    (run / "final" / "config.json").write_text("{}", encoding="utf-8")
    (run / "final" / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    reason = ("lonely: no run.json, only config.yaml (training has not started here, or stopped during setup); "
              "nothing to chat with, compare or export")
    client = TestClient(create_app(runs_root), base_url="http://127.0.0.1", raise_server_exceptions=False)
    listed, = (r for r in client.get("/api/runs").json() if r["name"] == "lonely")
    assert (listed["status"], listed["unusable"], listed["has_final"]) == ("not started", reason, False)
    page = client.get("/run/lonely").text
    assert reason in page and "/chat/lonely" not in page
    for body in ({"run": "lonely", "messages": MESSAGES}, {"run": "lonely", "messages": MESSAGES,
                                                          "checkpoint": "checkpoint-2"}):
        response = client.post("/api/chat", headers=POST, json=body)
        assert (response.status_code, response.json()) == (400, {"error": reason})
        response = client.post("/api/chat/stream", headers=POST, json=body)
        assert (response.status_code, response.json()) == (400, {"error": reason})
    assert client.get("/chat/lonely", headers={"accept": "application/json"}).json() == {"error": reason}
    response = client.post("/api/compare", headers=POST, json={"run": "lonely", "data": "d.jsonl"})
    assert (response.status_code, response.json()) == (400, {"error": reason})
    response = client.post("/api/export", headers=POST, json={"run": "lonely", "format": "hf"})
    assert (response.status_code, response.json()) == (400, {"error": reason})
    # The one owner of a run's serve defaults, as `dsft serve` reads them: the schema's for a directory it takes as no run.
    from dsft.serve.settings import serve_defaults

    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "serve:\n  max_tokens: 64\n")
    assert serve_defaults(run).max_tokens == 2048 and serve_defaults(runs_root / "alpha").max_tokens == 2048
    (runs_root / "alpha" / "config.yaml").write_text((run / "config.yaml").read_text())
    assert serve_defaults(runs_root / "alpha" / "checkpoints" / "checkpoint-2").max_tokens == 64


def test_a_full_runs_base_side_by_side_is_the_base_with_its_own_tokenizer(tmp_path: Path, tiny_model_dir) -> None:
    """Base side by side of a full run loaded the base weights with the run's tokenizer. A run may have changed the
    tokenizer (here: an added token, its embedding row grown in the trained weights only), so the base model was fed
    ids its embeddings do not have and the base side failed; it is the base as `dsft compare` evaluates it and `dsft
    chat BASE` loads it: its own tokenizer, prompted in the run's template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dsft.ui.chat import sources

    base = shutil.copytree(tiny_model_dir("tiny-deepseek-v3"), tmp_path / "base")
    root, added = tmp_path / "runs", "<reservoir>"
    run = _weights_run(root, "full", base)
    shutil.rmtree(run / "final")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.add_tokens([added])
    model = AutoModelForCausalLM.from_pretrained(base)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(run / "final")
    tokenizer.save_pretrained(run / "final")
    (_, tuned, _), (_, beside, _) = sources(run, None, with_base=True)
    assert (tuned.tokenizer_dir, beside.model_dir, beside.tokenizer_dir, beside.template) == (
        run / "final", base, base, tuned.template)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        got = client.post("/api/chat", headers=POST, json={
            "run": "full", "messages": [{"role": "user", "content": f"Which {added} is deepest?"}], "max_tokens": 2,
            "temperature": 0, "side_by_side": True}).json()
    assert "error" not in got["base"] and "error" not in got["tuned"], got
    assert got["base"]["usage"]["prompt_tokens"] > got["tuned"]["usage"]["prompt_tokens"]  # the token spelt out
