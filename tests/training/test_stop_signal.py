"""SIGTERM asks training to stop after the current step with a checkpoint (end to end: tests/ui/test_ui_launch.py)."""

from __future__ import annotations

import os
import signal

from transformers import TrainerControl

from dsft.training.stop import StopOnSigterm


def test_sigterm_sets_save_and_stop_at_the_next_step_end_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopper = StopOnSigterm()
    stopper.install()
    try:
        control = stopper.on_step_end(None, None, TrainerControl())
        assert not control.should_save and not control.should_training_stop  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)  # the process survives: the handler only records it
        assert stopper.requested
        control = stopper.on_step_end(None, None, TrainerControl())
        assert control.should_save and control.should_training_stop
    finally:
        stopper.restore()
    assert signal.getsignal(signal.SIGTERM) == before
