"""GRPO on TRL's GRPOTrainer, sampling from dsft-rendered prompts, with loud degenerate-batch guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsft.config import load_config
from dsft.data.conversation import Conversation, Message
from dsft.models.loading import load_tokenizer
from dsft.templates import get_template
from dsft.training.objectives import DegenerateBatchGuard, DegenerateGrpoError, _grpo_class

from grpo_toy_task import COMPLETION_TOKENS, write_toy_grpo_config
from jsonl_files import read_jsonl

MODEL = "tiny-r1-distill-qwen"


@pytest.mark.slow
def test_grpo_raises_mean_reward_and_warns_about_clipped_completions(
    tmp_path: Path, tiny_model_dir, run_cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiny_model_dir(MODEL)
    config = write_toy_grpo_config(
        tmp_path, monkeypatch, MODEL,
        train={"max_steps": 12, "lr": 0.005, "save_steps": 6}, evaluation={"steps": 6},
        # Sampling at a low temperature, for the reward to rise within 12 steps (see the task's reward); every
        # completion is cut at the task's length, so none may be left out of the loss.
        grpo={"temperature": 0.1, "mask_truncated_completions": False},
    )
    code, out, err = run_cli(["train", str(config), "--out", str(tmp_path / "run")])
    assert code == 0, out + err
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    # Validation prompts are sampled and scored before the first step and every 6 steps; the best checkpoint is
    # chosen by their mean reward (the GRPO default eval.metric), and no perplexity is made of the policy loss.
    evals = [r for r in rows if "eval_reward" in r]
    assert [r["step"] for r in evals] == [0, 6, 12], evals
    assert all("eval_rewards/even_tokens/mean" in r and "eval_perplexity" not in r for r in evals)
    assert evals[-1]["eval_reward"] > evals[0]["eval_reward"] + 0.1, evals
    rows = [r for r in rows if "reward" in r]
    rewards = [r["reward"] for r in rows]
    assert len(rewards) == 12
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.2, rewards
    assert "rewards/even_tokens/mean" in rows[0]
    # Every completion hit the task's 8-token limit: each step says so in metrics.jsonl.
    assert all(r["completions/clipped_ratio"] == 1.0 for r in rows)
    assert all(f"cut at grpo.max_completion_len={COMPLETION_TOKENS}" in r["warning"] for r in rows)
    assert all(r["supervised_tokens"] > 0 for r in rows)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["objective"], info["status"]) == ("grpo", "finished")
    best = max(evals[1:], key=lambda r: r["eval_reward"])
    assert info["best_metric"] == {"eval_reward": best["eval_reward"]}
    assert info["best_checkpoint"].endswith(f"checkpoint-{best['step']}")


def test_grpo_prompts_are_the_rendered_prompt_tokens(tiny_model_dir) -> None:
    """The hook GRPO samples through tokenizes the rendered prompt exactly as the renderer does: one BOS."""
    tokenizer = load_tokenizer(tiny_model_dir(MODEL))
    template = get_template("deepseek-r1")
    conv = Conversation([Message("user", "2+2?")])
    text = template.render_prompt(conv)
    trainer = _grpo_class().__new__(_grpo_class())
    trainer.processing_class = tokenizer
    ids, images, fields = trainer._tokenize_prompts([text])
    rendered = template.render_train(Conversation([*conv.messages, Message("assistant", "4")]), tokenizer,
                                     masking="last")
    assert ids[0] == rendered.input_ids[: rendered.supervised.index(True)]
    assert ids[0].count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids[0]).endswith("<｜Assistant｜><think>\n")


@pytest.mark.parametrize(("logs", "problem"), [
    ({"loss": 0.0, "completions/clipped_ratio": 1.0, "frac_reward_zero_std": 0.0}, "cut at grpo.max_completion_len"),
    ({"loss": 0.0, "completions/clipped_ratio": 0.5, "frac_reward_zero_std": 1.0}, "same reward"),
])
def test_degenerate_steps_warn_then_stop(logs: dict, problem: str) -> None:
    guard = DegenerateBatchGuard(stop_after=2, max_completion_len=8)
    state = type("State", (), {"global_step": 1})()
    first = dict(logs)
    guard.on_log(None, state, None, logs=first)
    assert problem in first["warning"]
    guard.on_log(None, state, None, logs={"loss": 0.1, "completions/clipped_ratio": 0.0, "frac_reward_zero_std": 0.0})
    guard.on_log(None, state, None, logs=dict(logs))  # the streak restarted after a healthy step
    with pytest.raises(DegenerateGrpoError, match="stopped after 2 consecutive steps"):
        guard.on_log(None, state, None, logs=dict(logs))


def test_grpo_config_problems(tmp_path: Path) -> None:
    from dsft.training.objective_checks import objective_problems

    cfg = load_config(None, ["train.objective=grpo", "train.micro_batch_size=3", "grpo.num_generations=4",
                             "grpo.max_completion_len=256", "train.max_seq_len=2048", "eval.metric=eval_loss"])
    problems = "\n".join(objective_problems(cfg, template_opens_think=True))
    assert "grpo.num_generations=4: must divide the completions per optimizer step" in problems
    assert "grpo.max_completion_len=256: the template's prompt opens a think block" in problems
    assert "eval.metric=eval_loss: GRPO's eval_loss is the policy loss" in problems
    assert objective_problems(load_config(None, ["train.objective=grpo", "grpo.num_generations=2",
                                                 "train.micro_batch_size=2", "train.max_seq_len=8192"]),
                              template_opens_think=True) == []


def test_shipped_preference_examples_pass_their_objective_checks() -> None:
    from dsft.training.objective_checks import objective_problems

    examples = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.yaml"))
    checked = 0
    for path in examples:
        cfg = load_config(path)
        if cfg.train.objective != "sft":
            assert objective_problems(cfg, template_opens_think=True) == [], path.name
            checked += 1
    assert checked >= 2


def test_the_family_says_whether_its_prompt_opens_the_think_block() -> None:
    from dsft.training.objective_checks import named_template_opens_think

    def opens(*overrides: str) -> bool | None:
        return named_template_opens_think(load_config(None, list(overrides)))

    assert opens("template.name=deepseek-r1") is True
    assert opens("template.name=deepseek-v3") is False
    assert opens("template.name=deepseek-v3.1") is False
    assert opens("template.name=deepseek-v3.1", "template.thinking=true") is True
    assert opens("template.name=auto") is None  # known once the model is resolved
