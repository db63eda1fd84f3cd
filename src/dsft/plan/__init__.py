"""Planning before booking GPUs: memory per GPU, host RAM and disk (``planner``), the cheapest change
that fits (``recommend``), and multi-node launch files (``launch``).

``shapes`` and ``activations`` read the real model on the ``meta`` device; ``memory`` turns counts into
bytes; ``model_source`` resolves presets, hub ids and config.json paths.
"""
