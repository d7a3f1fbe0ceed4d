"""Write files so that a crash or an error never leaves a half-written file under the real name.

Everything goes to a temporary file in the destination's directory (same file system) and
is renamed over the destination only once complete; on any error the temporary file is
removed and an existing destination is left as it was.  The temporary file is created
private (0600) and given the permissions a plain ``open`` would have (0666 less the
user's umask) before it is renamed, so checkpoints are as readable as any other output.

A write that fails in the operating system (disk full, permission, read-only file system)
is one :class:`~uer.errors.UerError` line naming the path and the reason
(:func:`write_error`), also when a library (torch's zip writer) wrapped the OS error in
its own.  :func:`reporting_write_errors` does the same for files appended to in place
(logs of metrics and scores).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from uer.errors import UerError, reason
from uer.stop_signals import STOP_SIGNALS

_UMASK_LOCK = threading.Lock()
TEMP_SUFFIX = ".tmp"  # a temporary file is .NAME.XXXXXXXX.tmp beside NAME
# What to do about the OS errors a write meets most.
_FIXES = {errno.ENOSPC: "free space there or write elsewhere", errno.EDQUOT: "free space there or write elsewhere",
          errno.EACCES: "choose a location you may write to", errno.EPERM: "choose a location you may write to",
          errno.EROFS: "choose a location on a writable file system"}


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError ``err`` is or was raised from (libraries wrap it), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


# numpy's writer reports a write the OS cut short (a full disk, a quota) with the counts alone, no errno.
_SHORT_WRITE = re.compile(r"^(\d+) requested and (\d+) written$")


def os_reason(err: OSError) -> str:
    """The OS's reason for ``err`` and what to do, e.g. ``No space left on device; free space there ...``."""
    short = _SHORT_WRITE.match(str(err)) if err.errno is None else None
    if short:
        return (f"No space left on device (or over quota: {short.group(2)} of {short.group(1)} bytes could be "
                f"written); {_FIXES[errno.ENOSPC]}")
    return f"{err.strerror or reason(err)}; {_FIXES.get(err.errno, 'check the path')}"


def write_error(path, err: BaseException) -> UerError | None:
    """One line for a failed write of ``path``: the OS's reason and the fix; None when ``err`` is no OS error."""
    cause = os_error_in(err)
    if cause is None:
        return None
    return UerError(f"cannot write {path}: {os_reason(cause)} (files written before are unchanged)")


@contextlib.contextmanager
def reporting_write_errors(path) -> Iterator[None]:
    """Turn an OS error of the block (writing ``path``) into one line."""
    try:
        yield
    except UerError:
        raise
    except Exception as err:
        error = write_error(path, err)
        if error is None:
            raise
        raise error from None


def current_umask() -> int:
    """The process's umask (reading it means setting it; the lock keeps threads of ours from racing)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have (e.g. raise
    KeyboardInterrupt): a write is never cut in the middle, where a library's own cleanup (torch's zip
    writer) would turn the interruption into an error of its own.  Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum))
                for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


@contextlib.contextmanager
def replacing(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds (SIGINT and
    SIGTERM held until then)."""
    path = Path(path)
    with signals_held(), reporting_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write(path, write: Callable[[object], None], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file (text: UTF-8, ``\\n`` line ends), then rename it to ``path``."""
    with replacing(path) as tmp:
        text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
        with open(tmp, "wb" if binary else "w", **text) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text))
