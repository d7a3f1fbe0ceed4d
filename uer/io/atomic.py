"""Write files so that a crash or an error never leaves a half-written file under the real name.

Everything goes to a temporary file in the destination's directory (same file system) and
is renamed over the destination only once complete; on any error the temporary file is
removed and an existing destination is left as it was.  The temporary file is created
private (0600) and given the permissions a plain ``open`` would have (0666 less the
user's umask) before it is renamed, so checkpoints are as readable as any other output.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (reading it means setting it; the lock keeps threads of ours from racing)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
