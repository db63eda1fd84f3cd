"""SIGTERM ends a command the way Ctrl-C does: its cleanup runs, one ``stopped`` line, exit status 128+signal.

Python's default SIGTERM ends the process where it stands: no ``finally``, no ``except``, so a stopped export
left a partial ``--out`` and a stopped ``dsft data prepare`` a half-written directory. The CLI therefore turns
SIGTERM (``kill PID``, the dashboard's Stop, ``docker stop``, schedulers) into :class:`dsft.errors.Stopped`,
raised in the main thread wherever the command is, as Ctrl-C raises KeyboardInterrupt; the cleanup paths
catch both (:data:`dsft.errors.STOPS`) and the entry point prints the line and exits 143 (130 for Ctrl-C,
which the handler only notes).
A second SIGTERM while the first one's cleanup runs ends the process at once.

Python runs a signal's handler wherever the main thread is, and that may be inside a weak-reference callback or a
``__del__`` (the import system's module locks have one): an exception raised there is not propagated but printed
as "Exception ignored" and dropped, so the stop was lost and the command ran on to exit 0 (the next SIGTERM then
ended it with no cleanup). :func:`install` therefore also hooks :data:`sys.unraisablehook`: a stop dropped that way
is delivered again a moment later, in the command's own code.

Commands that stop gracefully on their own keep Python's defaults (:func:`restore`): ``dsft train``
(which finishes the step, saves a checkpoint, :mod:`dsft.training.stop`, and exits 128+signal too) and the
servers ``dsft serve``
and ``dsft ui`` (uvicorn shuts down and re-raises the signal).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from dsft.errors import Stopped

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}
HANDLED = (signal.SIGTERM, signal.SIGINT)
_before: dict[int, Any] = {}  # the handlers install() replaced
_owner: list[int] = []  # the process that installed them (a forked worker inherits them, not the job)
received: list[int] = []  # the stop signals this process has had
_unraisable_before: list[Any] = []  # sys.unraisablehook before install()
REDELIVER_AFTER_S = 0.05  # long enough for the callback that swallowed the stop to have returned


def install() -> None:
    """SIGTERM raises :class:`Stopped` and Ctrl-C KeyboardInterrupt, both noted in :data:`received`, until
    :func:`restore` (only the main thread may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            if signal.getsignal(signum) == signal.SIG_IGN:  # started to ignore it (nohup, `cmd &` in a script)
                continue
            previous = signal.signal(signum, _on_signal)
            if previous is not _on_signal:
                _before[signum] = previous
        _owner[:] = [os.getpid()]
        received.clear()
        if sys.unraisablehook is not _stop_dropped:
            _unraisable_before[:] = [sys.unraisablehook]
            sys.unraisablehook = _stop_dropped


def restore() -> None:
    """The handlers from before :func:`install` (Python's defaults) again: when the command ends (the CLI run
    in-process leaves its caller as it was), or as it starts for a command with its own graceful stop
    (training, the servers)."""
    if threading.current_thread() is threading.main_thread():
        while _before:
            signum, previous = _before.popitem()
            signal.signal(signum, previous)
        if _unraisable_before:
            sys.unraisablehook = _unraisable_before.pop()


def _on_signal(signum: int, frame: Any) -> None:
    if _owner == [os.getpid()]:
        received.append(signum)
    if signum == signal.SIGINT:
        signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as without this handler
    signal.signal(signum, signal.SIG_DFL)  # the same signal again during the cleanup: end at once
    if _owner != [os.getpid()]:  # a forked worker (tokenizing in a pool): ends silently, as before
        os.kill(os.getpid(), signum)
        return
    raise Stopped(signum, NAMES[signum])


def _stop_dropped(unraisable: Any) -> None:
    """The exception of a stop that Python dropped (raised where it cannot propagate) is not printed; the same
    signal is armed and sent again once the dropping callback has returned. Anything else goes to the hook from
    before :func:`install`."""
    exc = unraisable.exc_value
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    ours = isinstance(exc, (Stopped, KeyboardInterrupt)) and signum in received and _owner == [os.getpid()]
    if not ours or threading.current_thread() is not threading.main_thread():
        (_unraisable_before[0] if _unraisable_before else sys.__unraisablehook__)(unraisable)
        return
    signal.signal(signum, _on_signal)  # the handler had set the default for a second signal
    # From another thread, later: sent now, the handler could run inside this hook and be dropped again.
    timer = threading.Timer(REDELIVER_AFTER_S, os.kill, args=(os.getpid(), signum))
    timer.daemon = True
    timer.start()


def stopped_line() -> tuple[str, int] | None:
    """The one line to print and the exit status (128 + the signal number) when a stop signal came."""
    if not received:
        return None
    signum = received[0]
    return f"stopped ({NAMES[signum]})", 128 + signum
