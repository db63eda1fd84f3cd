"""A graceful stop on SIGTERM or Ctrl-C: finish the current optimizer step, write a checkpoint, end the run
as stopped.

``kill PID`` (SIGTERM, what ``dsft ui``'s Stop button, schedulers and ``docker stop`` send) and Ctrl-C
(SIGINT) no longer lose the steps since the last checkpoint: the step in flight completes, the Trainer
saves ``checkpoint-N`` as it does at ``save_steps``, ``final/`` is written and ``run.json`` says
``stopped``; ``--resume auto`` continues. The same signal a second time before the step ends stops the
process at once, as before (Ctrl-C twice: KeyboardInterrupt). Work between steps that can be dropped asks
:func:`stop_requested` and ends early (generation eval: at the next token, recording nothing).

Under several processes every rank must stop after the same step, or the others wait for ever in the next
step's collectives; a signal can reach the ranks on either side of a step end. The ranks therefore agree
at every step end (one all-reduce of a flag, the largest wins): if any rank was asked, all stop there.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}
_installed: list["StopOnSignal"] = []  # the handlers of the run in progress (install() to restore())


def stop_requested() -> bool:
    """Whether this process was asked to stop the run in progress (SIGTERM or Ctrl-C, once). Work done between
    optimizer steps that can be dropped (generation eval) asks it, so a stop does not wait for that work.

    >>> stop_requested()
    False
    """
    return any(stopper.requested for stopper in _installed)


class StopOnSignal(TrainerCallback):
    """Installed for the duration of ``trainer.train`` (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None  # the signal that asked (None on a rank that only agreed to another's)
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            # A signal the process was started ignoring (nohup, `dsft train ... &` in a script) stays ignored,
            # as the CLI's own handlers leave it (dsft.cli.stopping).
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS
                              if signal.getsignal(signum) != signal.SIG_IGN}
            _installed.append(self)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        if self in _installed:
            _installed.remove(self)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # asked twice: stop now
            self.restore()
            signal.raise_signal(signum)
            return
        self.requested, self.signum = True, signum
        # os.write, not logging: a handler may interrupt a logging call that holds its lock.
        os.write(2, f"\n{_NAMES.get(signum, signum)}: stopping after this step with a checkpoint "
                    f"(again to stop at once)\n".encode())

    def _agreed(self) -> bool:
        """Whether any rank was asked to stop (this rank alone outside a process group)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.requested
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.requested = bool(flag.item())
        return self.requested

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self._agreed():
            control.should_save = True
            control.should_training_stop = True
        return control
