"""A run's outputs: checked before any input is read, written by one run at a time.

Each stage lists where it writes (``outputs(cfg)``: its checkpoint directory, prediction
file, dataset, tool output) and :func:`claimed` takes them, in the launching process,
before the stage reads anything:

* **checked**: a directory output that is a file, a file output that is a directory, a
  location that cannot be created or written (permission, read-only file system) is one
  line naming the key, in the run's first second instead of after the work;
* **locked**: a lock file (``.uer.lock`` inside a directory the run writes into,
  ``.NAME.lock`` beside a file or a dataset it replaces) is held with ``flock`` for the
  run's whole life.  A second run into the same location stops at once, naming the
  holder (pid, host, start time).  The kernel drops the lock of a process that dies, so a
  lock file whose lock is free was left by a killed run: it is taken over with a warning;
* **cleaned**: temporary files and folders a killed run left there (``.step_N.pt.*.tmp``,
  ``.DATASET.tmp-*``) are removed, and logged.  Nothing else writes there while the lock
  is held.

Directories created for the lock are removed again when the run leaves them empty.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from uer.errors import UerError
from uer.io.atomic import TEMP_SUFFIX, os_reason

log = logging.getLogger("uer")

DIRECTORY = "directory"  # the run writes files into it (checkpoints, logs)
FILE = "file"  # the run writes or replaces this one file
TREE = "tree"  # a directory the run replaces as a whole (a dataset)
LOCK_FILE = ".uer.lock"
# mkstemp's random part: 8 characters of [a-z0-9_] (uer.io.atomic names temporary files .NAME.XXXXXXXX.tmp).
_TEMP_FILE = rf"\.(?P<name>.+)\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}"
_TREE_LEFTOVER = r"\.{name}\.(tmp|old)-[0-9a-f]{{12}}"  # uer.data.build's temporary and replaced datasets


@dataclass(frozen=True)
class Output:
    """Where a run writes: ``key`` is the setting that names it (for messages)."""

    key: str
    path: Path
    kind: str


def claimed(outputs: list[Output]) -> contextlib.ExitStack:
    """Check and lock every output (see the module docstring); closing the stack releases them."""
    stack = contextlib.ExitStack()
    try:
        seen = set()
        for output in outputs:
            check_shape(output)
            lock_path = _lock_path(output)
            if os.path.abspath(lock_path) in seen:
                continue
            seen.add(os.path.abspath(lock_path))
            stack.enter_context(_held(output, lock_path))
            remove_leftovers(output)
    except BaseException:
        stack.close()
        raise
    return stack


def check_shape(output: Output) -> None:
    """A UerError when ``output`` is a file where a directory is wanted or the other way round."""
    path = output.path
    if output.kind == FILE and path.is_dir():
        raise UerError(f"{output.key}={path} is a directory; give a file name, e.g. {path / 'out.txt'}")
    if output.kind != FILE and path.exists() and not path.is_dir():
        raise UerError(f"{output.key}={path} is a file, not a directory; remove it or choose another {output.key}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UerError(f"{output.key}={path} cannot be created: {parent} is a file; choose another "
                               f"{output.key}")
            return


def _lock_path(output: Output) -> Path:
    if output.kind == DIRECTORY:
        return output.path / LOCK_FILE
    return output.path.parent / f".{output.path.name}.lock"


@contextlib.contextmanager
def _held(output: Output, lock_path: Path) -> Iterator[None]:
    created = []
    try:
        created = _make_dirs(lock_path.parent)
        handle = _lock(output, lock_path)
    except OSError as err:
        _remove_empty(created)
        raise _cannot_write(output, err) from None
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it: see _lock
        handle.close()
        _remove_empty(created)


def _lock(output: Output, lock_path: Path):
    """The open lock file, locked by this process, holding who we are."""
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise UerError(f"{output.key}={output.path} is in use by another run ({holder}); wait for it to end, "
                           f"or choose another {output.key}") from None
        except OSError as err:
            if err.errno != errno.ENOLCK:
                handle.close()
                raise
            log.warning("%s=%s: the file system offers no locks (%s), so another run writing there at the same time "
                        "would not be noticed", output.key, output.path, err.strerror)
        # The holder unlinks the file before it lets go: a lock on an unlinked file locks nothing, try again.
        if _same_file(handle, lock_path):
            break
        handle.close()
    left = _holder(handle, default=None)
    if left is not None:
        log.warning("%s=%s: taking over the lock left by %s, which is no longer running", output.key,
                    output.path, left)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    handle.flush()
    return handle


def _same_file(handle, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _holder(handle, default: str | None = "pid unknown") -> str | None:
    """Who wrote the lock file: ``pid N on host H, started T``."""
    handle.seek(0)
    try:
        record = json.loads(handle.read() or "null")
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return default
    return f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}"


def _cannot_write(output: Output, err: OSError) -> UerError:
    return UerError(f"{output.key}={output.path} cannot be written: {os_reason(err)}")


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, outermost first."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        created.append(path)
    return created


def _remove_empty(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return  # not empty: the run wrote there


def remove_leftovers(output: Output) -> None:
    """Remove the temporary files (and datasets) a killed run left where ``output`` is written."""
    if output.kind == DIRECTORY:
        where, pattern = output.path, re.compile(_TEMP_FILE)
    elif output.kind == FILE:
        where = output.path.parent
        pattern = re.compile(_TEMP_FILE.replace("(?P<name>.+)", re.escape(output.path.name)))
    else:
        where, pattern = output.path.parent, re.compile(_TREE_LEFTOVER.format(name=re.escape(output.path.name)))
    if not where.is_dir():
        return
    for entry in where.iterdir():
        if not pattern.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.warning("removed %s, left there by a run that was killed", entry)
