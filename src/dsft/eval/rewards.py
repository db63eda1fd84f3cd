"""GRPO reward functions that know where DeepSeek models put their reasoning.

Each reward is called as TRL calls reward functions, ``reward(prompts, completions, completion_ids, **columns)``,
and returns one float (or None: "not applicable", which TRL leaves out of the sum) per completion. dsft gives
TRL the *rendered* prompt text and, per prompt, the template family's answer to "does the reply start inside a
think block" (column ``prompt_opens_think``: R1's prompt ends ``<｜Assistant｜><think>\\n``, so the model writes
``reasoning</think>answer`` with no opening tag); the rewards score the answer after ``</think>``, never the
chain of thought.

Built-ins (``grpo.rewards[].name``; ``options`` are their keyword arguments):

* ``accuracy`` (``metric``: numeric | exact | f1, ``reference``: answer | solution): the answer after
  ``</think>`` against the record's reference (its answer after its own ``</think>``, if any), with
  dsft's eval metrics. An unclosed think block scores 0.
* ``think_format``: 1 when the completion has exactly the think structure the prompt calls for (closes the
  block the prompt opened, or opens and closes its own), with non-empty reasoning and answer; else 0.
* ``length`` (``max_tokens``, ``buffer``): DAPO's soft over-long punishment: 0 up to ``max_tokens - buffer``
  tokens, falling linearly to -1 at ``max_tokens`` (defaults: grpo.max_completion_len and a quarter of it).
* ``language`` (``language``: zh | en): the share of the reasoning's words written in the target script
  (R1's language-consistency reward); 0 without reasoning.
* ``module:function``: any importable function with the same signature (``options`` bound as keywords).

Lives in dsft.eval (it scores with the eval metrics) and is handed to the training recipe by the CLI, so
dsft.training never imports dsft.eval.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dsft.config import DsftConfig
from dsft.errors import ConfigError
from dsft.eval.metrics import exact_match, token_f1
from dsft.eval.numbers import numeric_match
from dsft.eval.reasoning import END_THINK, THINK, parse_output, prompt_opens_think
from dsft.eval.text import split_tokens
from dsft.training.objective_settings import objective_settings, settings_read_by

RewardFn = Callable[..., list[float | None]]
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile("[a-z]")


def _text(completion: Any) -> str:
    """TRL passes plain strings, or ``[{"role": "assistant", "content": ...}]`` for conversational data."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def _prompt_text(prompt: Any) -> str:
    return _text(prompt) if not isinstance(prompt, list) else ""


def _opened(prompts: Sequence[Any], columns: dict[str, Any]) -> list[bool]:
    """Per prompt, whether the reply starts inside a think block: the template family's answer when dsft's GRPO
    data carries it (``prompt_opens_think`` column), else read from the prompt's text."""
    given = columns.get("prompt_opens_think")
    if given is not None:
        return [bool(v) for v in given]
    return [prompt_opens_think(_prompt_text(p)) for p in prompts]


def answer_accuracy(
    opened: bool, completion: str, reference: str | None, metric: str = "numeric"
) -> float | None:
    """Score of the answer after ``</think>`` against the answer of ``reference`` (after its own
    ``</think>``, if any; None when there is none);
    ``opened``: the prompt left the model inside a think block.

    >>> answer_accuracy(True, "7*6=42, so 41?\\n</think>\\n\\n42", "42")
    1.0
    >>> answer_accuracy(True, "the answer is 42 but I keep thinking", "42")
    0.0
    """
    # The reference's own think block (an R1-style solution column) is not what the answer must equal.
    reference = parse_output(reference).answer if reference is not None else ""
    if not reference:
        return None
    parsed = parse_output(completion, prompt_opened_think=opened)
    if parsed.unclosed or not parsed.answer:
        return 0.0
    if metric == "numeric":
        matched = numeric_match(parsed.answer, reference)
        return float(matched) if matched is not None else exact_match(parsed.answer, reference)
    if metric == "exact":
        return exact_match(parsed.answer, reference)
    return token_f1(parsed.answer, reference)


def think_format_score(opened: bool, completion: str) -> float:
    """1.0 when the completion's think structure is the one the prompt calls for, else 0.0; ``opened``: the
    prompt left the model inside a think block.

    >>> think_format_score(True, "reason\\n</think>\\n\\nanswer")  # R1: the prompt opened the block
    1.0
    >>> think_format_score(True, "<think>\\nreason\\n</think>\\n\\nanswer")  # opened twice
    0.0
    >>> think_format_score(False, "<think>\\nreason\\n</think>\\n\\nanswer")  # the model opens it
    1.0
    """
    body = completion
    if not opened:
        stripped = completion.lstrip()
        if not stripped.startswith(THINK):
            return 0.0
        body = stripped[len(THINK):]
    if THINK in body or body.count(END_THINK) != 1:
        return 0.0
    reasoning, answer = body.split(END_THINK)
    return float(bool(reasoning.strip()) and bool(answer.strip()))


def overlong_penalty(length: int, max_tokens: int, buffer: int) -> float:
    """DAPO's soft over-long punishment for a completion of ``length`` tokens.

    >>> [overlong_penalty(n, 100, 20) for n in (50, 80, 90, 100, 120)]
    [0.0, 0.0, -0.5, -1.0, -1.0]
    """
    if length <= max_tokens - buffer:
        return 0.0
    if length >= max_tokens:
        return -1.0
    return (max_tokens - buffer - length) / buffer


def language_share(text: str, language: str) -> float:
    """Share of the words of ``text`` in the target script (a CJK character is one word; digits don't count).

    >>> language_share("先算 3+4，then add", "zh")
    0.5
    >>> language_share("先算 3+4，then add", "en")
    0.5
    """
    cjk = latin = 0
    for word in split_tokens(text):
        if _CJK.match(word):
            cjk += 1
        elif _LATIN.search(word):
            latin += 1
    if not cjk + latin:
        return 0.0
    return (cjk if language == "zh" else latin) / (cjk + latin)


# ------------------------------------------------------------------------------- TRL-callable rewards


def accuracy(prompts: Sequence[Any], completions: Sequence[Any], metric: str = "numeric",
             reference: str = "answer", **columns: Any) -> list[float | None]:
    refs = columns.get(reference) or [None] * len(completions)
    opened = _opened(prompts, columns)
    return [answer_accuracy(o, _text(c), r, metric) for o, c, r in zip(opened, completions, refs)]


def think_format(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
    return [think_format_score(o, _text(c)) for o, c in zip(_opened(prompts, columns), completions)]


def length(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None,
           max_tokens: int = 4096, buffer: int | None = None, **_: Any) -> list[float | None]:
    buffer = buffer if buffer is not None else max(1, max_tokens // 4)
    sizes = [len(ids) for ids in completion_ids] if completion_ids is not None else [len(_text(c)) for c in completions]
    return [overlong_penalty(n, max_tokens, buffer) for n in sizes]


def language(prompts: Sequence[Any], completions: Sequence[Any], language: str = "en",
             **columns: Any) -> list[float | None]:
    out: list[float | None] = []
    for o, c in zip(_opened(prompts, columns), completions):
        parsed = parse_output(_text(c), prompt_opened_think=o)
        out.append(language_share(parsed.reasoning or "", language) if parsed.reasoned else 0.0)
    return out


BUILTIN_REWARDS: dict[str, tuple[RewardFn, frozenset[str]]] = {
    "accuracy": (accuracy, frozenset({"metric", "reference"})),
    "think_format": (think_format, frozenset()),
    "length": (length, frozenset({"max_tokens", "buffer"})),
    "language": (language, frozenset({"language"})),
}
_CHOICES = {"metric": ("numeric", "exact", "f1"), "reference": ("answer", "solution"), "language": ("zh", "en")}


def build_reward(name: str, options: dict[str, Any], where: str, max_completion_len: int) -> RewardFn:
    """One reward function, its options checked and bound; :class:`ConfigError` naming ``where`` otherwise."""
    if name in BUILTIN_REWARDS:
        function, allowed = BUILTIN_REWARDS[name]
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(f"{where}.options: unknown option(s) {', '.join(unknown)} for reward {name!r} "
                              f"(allowed: {', '.join(sorted(allowed)) or 'none'})")
        for key, choices in _CHOICES.items():
            if key in options and options[key] not in choices:
                raise ConfigError(f"{where}.options.{key}: must be one of {', '.join(choices)}, got {options[key]!r}")
        if name == "length":
            options = {"max_tokens": max_completion_len, **options}
    else:
        function = _import_reward(name, where)
    bound = functools.partial(function, **options) if options else function
    # TRL logs each reward under its function's __name__.
    return functools.update_wrapper(_named(bound), function) if options else function


def build_rewards(specs: Sequence[Any], max_completion_len: int) -> tuple[list[RewardFn], list[float]]:
    """The reward functions and weights of ``grpo.rewards`` (config entries with name, weight, options)."""
    if not specs:
        raise ConfigError("grpo.rewards: at least one reward is needed")
    functions = [build_reward(s.name, dict(s.options), f"grpo.rewards[{i}]", max_completion_len)
                 for i, s in enumerate(specs)]
    return functions, [float(s.weight) for s in specs]


def _named(bound: functools.partial) -> RewardFn:
    def reward(*args: Any, **kwargs: Any) -> list[float | None]:
        return bound(*args, **kwargs)

    return reward


def _import_reward(name: str, where: str) -> RewardFn:
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{where}.name: unknown reward {name!r}; use one of {', '.join(BUILTIN_REWARDS)} or "
                          "module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}.name: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{where}.name: {module_name} has no function {attribute!r}")
    return function


@dataclass(frozen=True)
class RewardCheck:
    """``grpo.rewards`` checked for preflight by building them (once: a custom reward module is imported and
    its function looked up here, not again for every check that needs the reward names)."""

    grpo: bool  # train.objective is grpo; every field below is empty otherwise
    functions: tuple[RewardFn, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def eval_metrics(self) -> tuple[str, ...]:
        """The metrics a GRPO evaluation logs that ``eval.metric`` may name: the mean reward of the completions
        sampled for the validation prompts (``eval_reward``) and each reward's mean, under its function's name
        (only ``eval_reward`` when the rewards do not build: :attr:`problems` says why)."""
        if not self.grpo:
            return ()
        return ("eval_reward", *(f"eval_rewards/{function.__name__}/mean" for function in self.functions))


def objective_rewards(cfg: DsftConfig) -> list[RewardFn] | None:
    """The reward functions ``cfg``'s objective trains with, built from ``grpo.rewards`` (their weights stay in the
    config); None for an objective that reads no rewards (:mod:`dsft.training.objective_settings` says which).
    Raises :class:`ConfigError` for a reward that cannot be built."""
    if cfg.train.objective not in settings_read_by("grpo", "rewards"):
        return None
    own = objective_settings(cfg)
    return build_rewards(own.rewards, own.max_completion_len)[0]


def check_rewards(cfg: DsftConfig) -> RewardCheck:
    """Build ``grpo.rewards`` once for preflight: the functions, or the problem (nothing unless a GRPO run)."""
    try:
        functions = objective_rewards(cfg)
    except ConfigError as exc:
        return RewardCheck(grpo=True, problems=(str(exc),))
    if functions is None:
        return RewardCheck(grpo=False)
    return RewardCheck(grpo=True, functions=tuple(functions))
