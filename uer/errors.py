"""User-facing errors.

A :class:`UerError` is a mistake the user can fix (a bad path, a malformed line, a
dataset built for another target).  ``main.py`` prints its message as one line and exits
with status 2 instead of showing a traceback.  The message should name the file (and
line or key) and say what to do.
"""

import re


class UerError(Exception):
    """An input or configuration problem the user can fix; printed as one line."""


def where(path, line=None) -> str:
    """Format ``path`` or ``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else str(path)


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
REASON_CHARS = 160


def one_line(message: str) -> str:
    """``message`` as the one line a user reads: no terminal escape codes, its lines joined."""
    lines = [line.strip() for line in _TERMINAL_CODES.sub("", message).splitlines() if line.strip()]
    return "; ".join(lines)


def reason(err: BaseException, limit: int = REASON_CHARS) -> str:
    """What a library's exception says, short enough to quote in a one-line error: its first line
    without escape codes -- its first sentence when the line is longer than ``limit`` characters,
    cut at ``limit`` when that is too."""
    text = _TERMINAL_CODES.sub("", str(err)).strip()
    first = text.splitlines()[0].strip() if text else type(err).__name__
    if len(first) <= limit:
        return first
    sentence = first.split(". ", 1)[0]
    return sentence if len(sentence) <= limit else first[:limit - 3].rstrip() + "..."


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops where it is, keeps what it finished writing, and exits 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
