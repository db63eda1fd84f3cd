"""Evaluation: reasoning-aware task metrics, batched generation, eval runs and before/after reports.

Modules, in dependency order: ``text`` (normalisation, tokens) -> ``numbers`` -> ``metrics`` ->
``reasoning`` (answer after ``</think>``, think statistics) -> ``scoring`` (per-sample + aggregate) ->
``predictions`` (``dsft metrics``) ; ``generate`` (batched generation) -> ``eval_set`` / ``target`` ->
``evaluate`` (``dsft eval``, ``generation_eval``) -> ``charts`` / ``report`` -> ``compare``
(``dsft compare``). See docs/eval.md.
"""
