"""A graceful stop on SIGTERM: finish the current optimizer step, write a checkpoint, end the run as stopped.

``kill PID`` (SIGTERM, what ``dsft ui``'s Stop button, schedulers and ``docker stop`` send) no longer loses
the steps since the last checkpoint: the step in flight completes, the Trainer saves ``checkpoint-N`` as it
does at ``save_steps``, ``final/`` is written and ``run.json`` says ``stopped``; ``--resume auto`` continues.
A second SIGTERM before the step ends kills the process as before. Ctrl-C (SIGINT) is left alone.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from transformers import TrainerCallback


class StopOnSigterm(TrainerCallback):
    """Installed for the duration of ``trainer.train`` (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # asked twice: stop now
            self.restore()
            signal.raise_signal(signum)
            return
        self.requested = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control
