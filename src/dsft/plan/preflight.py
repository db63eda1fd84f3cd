"""Preflight: every check of a config that needs neither data nor model, run before anything loads.

``dsft config show``, ``dsft train`` and ``dsft launch`` call :func:`preflight` right after
:func:`dsft.config.load_config` (which checks each key on its own): one error lists every problem, each
naming its key, in about a second. Settings that are valid but will not be applied are no problem: they are
said in one line each (:func:`preflight_notices`). The checks belong to the stages that own the settings:

* training (:mod:`dsft.training.preflight`): precision and QLoRA against the device, strategy against
  device and world size, sequence parallelism against world size, attention heads and attention kernel,
  the evaluation schedule (best checkpoint, early stopping) against the data's validation split;
* evaluation (:mod:`dsft.eval.selection`): ``eval.metric`` against the metrics the run will log,
  ``eval.metrics`` against the known metrics;
* export: ``export.tolerance`` as a bound (:func:`dsft.export.bounds.parse_tolerance`), ``export.format`` with
  ``export.verify`` against the verifier that format needs;
* preference / RL objectives (:mod:`dsft.training.objective_checks`, :func:`dsft.eval.rewards.check_rewards`):
  the data and loss keys an objective does not use, GRPO's group size, completion room and rewards.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from dsft.config import DsftConfig
from dsft.config.loader import problems_source
from dsft.errors import ConfigError, DsftError
from dsft.eval.rewards import RewardCheck, check_rewards
from dsft.eval.selection import eval_config_problems, generation_world_problems
from dsft.export.bounds import parse_tolerance
from dsft.training.environment import Environment
from dsft.training.objective_checks import named_template_opens_think, objective_problems
from dsft.training.preflight import config_notices, training_problems, unlaunched_problems

# Export formats whose verification runs the file in llama.cpp (module name of llama-cpp-python).
LLAMA_CPP_FORMATS = ("gguf", "ollama")
LLAMA_CPP_MODULE = "llama_cpp"


def export_problems(cfg: DsftConfig, env: Environment) -> list[str]:
    """``export.tolerance`` as a bound; ``export.format`` + ``export.verify`` against the verifier installed here."""
    e = cfg.export
    problems = []
    if e.tolerance is not None:
        try:
            parse_tolerance(e.tolerance, name="export.tolerance")
        except DsftError as exc:
            problems.append(str(exc))
    if e.verify and e.format in LLAMA_CPP_FORMATS and env.inspect_packages \
            and importlib.util.find_spec(LLAMA_CPP_MODULE) is None:
        problems.append(f"export.format={e.format} with export.verify: true needs llama-cpp-python to verify the GGUF "
                        "file (pip install llama-cpp-python, or dsft[gguf-verify]); or set export.verify: false")
    return problems


def preflight_problems(cfg: DsftConfig, env: Environment, rewards: RewardCheck | None = None) -> list[str]:
    """Every problem :func:`preflight` would report, one line each (``rewards``: ``grpo.rewards`` already
    built by :func:`check_rewards`, else built here)."""
    if rewards is None:
        rewards = check_rewards(cfg)  # built once: the reward problems and the reward metrics eval.metric may name
    objective = objective_problems(cfg, named_template_opens_think(cfg), env.world_size) + list(rewards.problems)
    return (training_problems(cfg, env) + eval_config_problems(cfg.eval, rewards.eval_metrics)
            + generation_world_problems(cfg.eval, env.world_size) + export_problems(cfg, env) + objective)


def preflight_notices(cfg: DsftConfig, env: Environment) -> list[str]:
    """The settings of ``cfg`` a run on ``env`` will not apply, one line each
    (:func:`dsft.training.preflight.config_notices`): what ``dsft train`` says before it reads anything, for
    ``dsft config show`` and ``dsft launch`` to say too. No launcher's number of processes: one, as ``dsft train``
    here; a cluster's packages, unknown here, are taken to be there (as the checks take them)."""
    return config_notices(cfg, env.world_size or 1, env.cuda, None if env.inspect_packages else True)


def preflight(cfg: DsftConfig, env: Environment, source: str = "config", overrides: Sequence[str] = (),
              trains_here: str | None = None) -> RewardCheck:
    """Raise one :class:`ConfigError` listing every problem of ``cfg`` on ``env`` (nothing loaded yet), labelled
    with ``source`` (the config file) or the ``--set`` among ``overrides`` that caused them
    (:func:`dsft.config.loader.problems_source`).

    ``trains_here``: the command (``dsft train``, ``dsft sweep``, ``dsft demo``) that trains ``cfg`` in this
    process; what it cannot run without a launcher (:func:`dsft.training.preflight.unlaunched_problems`) is then
    in the same list, so a config with several problems is told all of them at once.

    Returns the GRPO reward functions it built to check ``grpo.rewards`` (none for other objectives), for the
    training run to use as they are.
    """
    rewards = check_rewards(cfg)
    problems = preflight_problems(cfg, env, rewards)
    if trains_here is not None:
        problems += unlaunched_problems(cfg, env, trains_here)
    if problems:
        raise ConfigError(f"{problems_source(source, overrides, problems)}: {len(problems)} problem(s)", problems)
    return rewards
