"""Hyper-parameter sweeps: a grid or Optuna search over config keys, each trial a normal run directory,
the best trial chosen on validation data."""
