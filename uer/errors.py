"""User-facing errors.

A :class:`UerError` is a mistake the user can fix (a bad path, a malformed line, a
dataset built for another target).  ``main.py`` prints its message as one line and exits
with status 2 instead of showing a traceback.  The message should name the file (and
line or key) and say what to do.
"""


class UerError(Exception):
    """An input or configuration problem the user can fix; printed as one line."""


def where(path, line=None) -> str:
    """Format ``path`` or ``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
