"""SIGINT and SIGTERM stop a run where it is, as :class:`~uer.errors.Interrupted` (uer.app ends it in one line).

The handler raises the exception in whatever Python code the main thread runs at that moment.  When that is a
weakref callback or a ``__del__`` (the garbage collector runs them between any two lines), Python does not let it
out: it prints "Exception ignored in ..." with a traceback and carries on, and a Ctrl-C or a scheduler's SIGTERM
would leave the run going.  So the handler also notes the signal, every long loop passes :func:`raise_if_stopped`
(each :class:`~uer.progress.Progress` update: a training step, a batch predicted, a unit preprocessed), and a
stop swallowed that way is not printed.
"""

from __future__ import annotations

import signal
import sys

from uer.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the stop signals this process was sent, first first
_reported = sys.unraisablehook  # what reports the exceptions Python could not raise, before ours


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (a scheduler's ``kill``
    stops the run as a Ctrl-C does, instead of ending the process mid-write)."""
    global _reported
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    if sys.unraisablehook is not _unraisable:
        _reported, sys.unraisablehook = sys.unraisablehook, _unraisable


def raise_if_stopped() -> None:
    """Raise the :class:`Interrupted` of a stop signal whose exception was swallowed."""
    if _received:
        raise Interrupted(_received[0])


def _stop(signum, frame):
    _received.append(signum)
    raise Interrupted(signum)


def _unraisable(unraisable) -> None:
    """Python's report of an exception it could not raise, unless it is a stop (acted on at the next loop pass)."""
    if not isinstance(unraisable.exc_value, Interrupted):
        _reported(unraisable)
