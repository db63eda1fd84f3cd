"""Fine-tuning a real pretrained model on made-up facts, from its GGUF file, then exporting and serving it.

SmolLM2-135M-Instruct cannot know when the (fictional) reservoirs were completed. It is trained on 40
questions (8 facts, 3 English and 2 Chinese phrasings each) and asked 24 paraphrased questions it never
saw: the answer must hold the completion month and year. General questions it answered right before
(never trained on) measure what it keeps. Bounded for a CPU: 4 epochs of 7 steps (the 40 records pack into 28
rows of at most 128 tokens, 4 rows a step).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dsft.eval.target import load_eval_target

from factcheck import ask, prompts_for, score
from http_ready import wait_until_healthy
from jsonl_files import read_jsonl
from smollm2_recipe import FULL, LORA, TRAIN

pytestmark = pytest.mark.slow


def train(source: str, facts: dict[str, Path], cache: Path, out: Path, method: list[str]) -> Path:
    from dsft.config import load_config
    from dsft.training.run import run_training

    cfg = load_config(None, [f"model.name_or_path={source}", f"model.cache_dir={cache}",
                             f"data.train=[{facts['train']}]", f"data.val=[{facts['paraphrased']}]", *TRAIN, *method])
    run_training(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def base_answers(smollm2, facts) -> dict[str, list[str]]:
    model, tokenizer = smollm2
    return {name: ask(model, tokenizer, read_jsonl(facts[name])) for name in ("paraphrased", "general")}


@pytest.fixture(scope="module")
def full_run(smollm2_gguf, smollm2_dir, facts, realmodel_env, tmp_path_factory) -> Path:
    """A full fine-tune whose config names the .gguf file itself (the converted copy is reused)."""
    return train(str(smollm2_gguf), facts, realmodel_env, tmp_path_factory.mktemp("full") / "run", FULL)


@pytest.fixture(scope="module")
def full_answers(full_run, facts) -> dict[str, list[str]]:
    target = load_eval_target(full_run)
    return {name: ask(target.model, target.tokenizer, read_jsonl(facts[name])) for name in ("paraphrased", "general")}


def report(label: str, answers: dict[str, list[str]], facts: dict[str, Path]) -> tuple[float, float]:
    learned = score(answers["paraphrased"], read_jsonl(facts["paraphrased"]))
    kept = score(answers["general"], read_jsonl(facts["general"]))
    print(f"{label}: paraphrased facts {learned:.0%}, general answers kept {kept:.0%}; e.g. "
          f"{answers['paraphrased'][0]!r} / {answers['general'][0]!r}")
    return learned, kept


def test_full_finetune_from_the_gguf_learns_the_facts(full_run, full_answers, base_answers, facts) -> None:
    import json

    info = json.loads((full_run / "run.json").read_text(encoding="utf-8"))
    assert info["model_source"]["quantization"] == "Q4_1" and info["template"] == "hf"
    base_learned, base_kept = report("base", base_answers, facts)
    learned, kept = report("full fine-tune", full_answers, facts)
    assert base_learned <= 0.1 and base_kept == 1.0
    assert learned >= 0.6  # a clear majority of never-seen phrasings answered with the right month and year
    assert kept >= 0.5  # general answers stay sensible (the figure is reported; see docs for remedies)


def test_lora_finetune_learns_the_facts(smollm2_dir, facts, realmodel_env, tmp_path, base_answers) -> None:
    run = train(str(smollm2_dir), facts, realmodel_env, tmp_path / "run", LORA)
    target = load_eval_target(run)
    assert target.adapter
    answers = {name: ask(target.model, target.tokenizer, read_jsonl(facts[name])) for name in ("paraphrased", "general")}
    learned, kept = report("LoRA fine-tune", answers, facts)
    assert learned >= 0.6 and kept >= 0.5


def test_hf_and_q8_0_gguf_exports_answer_like_the_trained_model(full_run, full_answers, facts, tmp_path) -> None:
    from dsft.export.api import export
    from dsft.export.gguf_verify import load_llama
    from dsft.models.loading import load_model, load_tokenizer

    records = read_jsonl(facts["paraphrased"])
    export(full_run, "hf", tmp_path / "hf", echo=print)
    model, tokenizer = load_model(tmp_path / "hf", dtype="float32", device="cpu"), load_tokenizer(tmp_path / "hf")
    assert ask(model, tokenizer, records) == full_answers["paraphrased"]
    del model
    result = export(full_run, "gguf", tmp_path / "gguf", dtype="q8_0", echo=print)
    llm = load_llama(tmp_path / "gguf" / "model.gguf", n_ctx=256)
    try:
        gguf_answers = []
        for prompt in prompts_for(records, tokenizer):
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            out = llm.create_completion(ids, max_tokens=32, temperature=0.0)
            gguf_answers.append(out["choices"][0]["text"].strip())
    finally:
        llm.close()
    same = sum(a == b for a, b in zip(gguf_answers, full_answers["paraphrased"]))
    print(f"q8_0 GGUF ({result.comparison.summary()}): {same}/{len(records)} answers identical to the trained "
          f"model's; facts right: GGUF {score(gguf_answers, records):.0%}, trained "
          f"{score(full_answers['paraphrased'], records):.0%}")
    # Measured: 21/24 answers identical, facts right 20/24 (GGUF) vs 21/24 (trained): 8-bit rounding flips
    # a near-tie in one Chinese answer. On a CPU with AMX (2026-11-28, same code): 23/24 and 19/24 in two runs
    # (facts 88% vs 88%, 92% vs 88%; max |logit diff| 3.49 vs 3.25, so the trained weights or llama.cpp's
    # arithmetic differ run to run on CPU), and one rounding
    # flip anywhere in a 32-token answer makes it differ. A broken export answers none alike.
    assert score(gguf_answers, records) >= score(full_answers["paraphrased"], records) - 1.5 / len(records)
    assert same >= 0.75 * len(records)


def test_dsft_serve_answers_through_the_openai_client(full_run, full_answers, facts) -> None:
    import openai


    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "dsft", "serve", str(full_run), "--port", str(port),
                               "--served-model-name", "reservoirs"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, server.stderr.read, "dsft serve", 300, poll_s=0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)
        records = read_jsonl(facts["paraphrased"])[:3]
        for record, expected in zip(records, full_answers["paraphrased"]):
            reply = client.chat.completions.create(model="reservoirs", messages=record["messages"][:1],
                                                   max_tokens=32, temperature=0)
            assert reply.choices[0].message.content.strip() == expected
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


