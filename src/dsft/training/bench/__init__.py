"""``dsft bench train``: dsft's training step against TRL and the seeds' recipe on one machine, one run."""
