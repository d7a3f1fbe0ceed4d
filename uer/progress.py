"""Progress with an ETA for the long loops (preprocess, training, evaluation); durations and paths for people.

On a terminal a :class:`Progress` is one line on stderr, redrawn in place at most a few
times a second::

    predict dev.tsv [########............]  41%  64/157 batches | 12.3 batches/s | eta 7s

and erased before any log record is written, so log lines never land in the middle of it.
Elsewhere (a log file, CI, a cluster job) it writes a plain log line every ``interval``
seconds instead (none at all when ``plain=False``: training has its report lines).  Only
the main process of a multi-process run draws anything.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from uer.stop_signals import raise_if_stopped

log = logging.getLogger("uer.progress")

REDRAW_SECONDS = 0.2
BAR_WIDTH = 20


def format_duration(seconds: float) -> str:
    """``7s``, ``3m05s``, ``2h04m``: short and unambiguous."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the average rate so far (None until there is a rate)."""
    if done <= 0 or elapsed <= 0 or total <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


def is_main_process() -> bool:
    """False in the workers of a multi-process run other than rank 0."""
    return os.environ.get("RANK", "0") == "0"


_stack: list["Progress"] = []  # bars drawn now, innermost last


class _EraseBeforeRecords(logging.Filter):
    """Erase the drawn bar before a handler writes a record; the bar comes back on its next update."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _stack:
            _stack[-1]._erase()
        return True


_ERASER = _EraseBeforeRecords()


def _install_eraser() -> None:
    for handler in logging.getLogger().handlers:
        if _ERASER not in handler.filters:
            handler.addFilter(_ERASER)


def _remove_eraser() -> None:
    for handler in logging.getLogger().handlers:
        handler.removeFilter(_ERASER)


class Progress:
    """Count ``done`` towards ``total`` and show how far along and how long is left.

    ``plain``: write plain log lines when not on a terminal; ``interval``: seconds between
    them.  ``enabled=None`` draws on the main process only.  ``initial`` counts work done
    before this process (a resumed run), ``start`` when the counted work began.  Use as a
    context manager or call :meth:`close`.
    """

    def __init__(self, total: int, desc: str, unit: str = "", *, initial: int = 0, enabled: bool | None = None,
                 plain: bool = True, interval: float = 30.0, stream=None, logger: logging.Logger | None = None,
                 start: float | None = None):
        self.total = max(0, int(total))
        self.desc = desc
        self.unit = unit
        self.done = initial
        self._initial = initial
        self.enabled = is_main_process() if enabled is None else enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.enabled and _isatty(self.stream)
        self.plain = plain and self.enabled and not self.tty
        self.interval = interval
        self.logger = logger or log
        self.postfix = ""
        self._start = time.perf_counter() if start is None else start  # a time.perf_counter() value
        self._last_draw = 0.0
        self._last_plain = self._start
        self._drawn = False
        self._closed = False
        if self.tty:
            if _stack:
                _stack[-1]._erase()
            _stack.append(self)
            _install_eraser()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def eta(self) -> float | None:
        return eta_seconds(self.done - self._initial, self.total - self._initial, self.elapsed)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        raise_if_stopped()  # a long loop's pass: where a stop whose exception Python swallowed takes effect
        self.done += n
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled or self._closed:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= REDRAW_SECONDS or self.done >= self.total:
                self._draw(now)
        elif self.plain and now - self._last_plain >= self.interval and self.done < self.total:
            self._last_plain = now
            self.logger.info("%s", self.line(bar=False))

    def line(self, bar: bool = True) -> str:
        """The progress as text: ``desc [bar] pct done/total unit | rate | eta``."""
        parts = [self.desc]
        if self.total:
            fraction = min(1.0, self.done / self.total)
            if bar:
                filled = int(fraction * BAR_WIDTH)
                parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
            parts.append(f"{100 * fraction:3.0f}%")
            parts.append(f"{self.done}/{self.total}{' ' + self.unit if self.unit else ''}")
        else:
            parts.append(f"{self.done}{' ' + self.unit if self.unit else ''}")
        text = " ".join(parts)
        elapsed = self.elapsed
        if elapsed > 0 and self.done > self._initial:
            text += f" | {(self.done - self._initial) / elapsed:.3g} {self.unit or 'it'}/s"
        if self.postfix:
            text += f" | {self.postfix}"
        eta = self.eta()
        text += f" | {format_duration(elapsed)} elapsed" + (f", eta {format_duration(eta)}" if eta is not None else "")
        return text

    def _draw(self, now: float) -> None:
        self._last_draw = now
        if _stack and _stack[-1] is not self:
            return  # an inner bar is on the line
        width = _terminal_width(self.stream)
        text = self.line()[:width - 1]
        try:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            return
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._drawn = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self._erase()
            if self in _stack:
                _stack.remove(self)
            if not _stack:
                _remove_eraser()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _terminal_width(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 100
