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

Before any of that, :func:`check_apart` compares the outputs with the run's **inputs** (each
stage declares the settings that name files it reads, ``input_keys(cfg)``): an output that
is an input, resolves to one (a symlink, a ``./`` alias, a hard link: the same device and
inode) or lies inside an input directory is one line naming both, before anything is read.

A directory replaced as a whole (a dataset, :data:`TREE`) records the files the run wrote in
it (:data:`MANIFEST`); :func:`replace_tree` later replaces only those and leaves any other
file there alone.
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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from omegaconf import ListConfig, OmegaConf

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
class Input:
    """A file or directory the run reads: ``key`` is the setting that names it (for messages)."""

    key: str
    path: Path


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


# ------------------------------------------------------------------------------------ inputs


def path_keys(cfg, node: str, skip: tuple[str, ...] = ()) -> list[str]:
    """The settings of ``cfg[node]`` that name files (``*_path``, ``*_paths``), as ``node.key``, except ``skip``."""
    section = cfg.get(node)
    if not hasattr(section, "keys"):
        return []
    keys = [f"{node}.{key}" for key in section.keys() if str(key).endswith(("_path", "_paths"))]
    return [key for key in keys if key not in skip]


def inputs_at(cfg, keys: list[str]) -> list[Input]:
    """The inputs the settings ``keys`` (dotted; a value may be a list) name, unset ones left out."""
    found = []
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
        found += [Input(key, Path(str(path))) for path in values if path not in (None, "")]
    return found


def check_apart(outputs: list[Output], inputs: list[Input]) -> None:
    """A UerError when an output is, resolves to or lies inside one of the ``inputs``."""
    for output in outputs:
        for source in inputs:
            overlap = _overlap(output.path, source.path)
            if overlap:
                raise UerError(f"{output.key}={output.path} {overlap} {source.key}={source.path}, which this run "
                               f"reads; writing there would destroy it: choose another {output.key}")


def _overlap(output: Path, source: Path) -> str | None:
    """How ``output`` would overwrite ``source`` (``is``, ``is another name of``, ``lies inside``), or None."""
    if not source.exists():
        return None
    if output.exists() and os.path.samestat(os.stat(output), os.stat(source)):
        same_name = os.path.abspath(output) == os.path.abspath(source)
        return "is" if same_name else "is another name (a link or alias) of"
    real_output, real_source = Path(os.path.realpath(output)), Path(os.path.realpath(source))
    if real_output == real_source:
        return "is another name (a link or alias) of"
    if source.is_dir() and real_output.is_relative_to(real_source):
        return "lies inside"
    return None


# ----------------------------------------------------------------------- replaced directories

MANIFEST = ".uer-files.json"  # in a directory replaced as a whole: the files this project wrote there


def written_files(directory: Path, default: tuple[str, ...] = ()) -> set[str]:
    """The names of the files this project wrote in ``directory`` (its manifest); ``default`` when it has none
    (written before manifests were kept)."""
    try:
        names = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set(default)
    return {name for name in names if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}


def foreign_files(directory: Path, default: tuple[str, ...] = ()) -> list[Path]:
    """The entries of ``directory`` this project did not write there (see :func:`written_files`)."""
    ours = written_files(directory, default) | {MANIFEST}
    return sorted(entry for entry in directory.iterdir() if entry.name not in ours)


def replace_tree(new: Path, path: Path, default: tuple[str, ...] = (), key_file: str | None = None) -> None:
    """Put the directory ``new`` (complete, beside ``path``) in ``path``'s place, replacing only what this project
    wrote there: ``path``'s other files stay.  Without such files the swap is one rename, so a crash leaves the old
    or the new directory; with them, the new files move in one by one, ``key_file`` (the one that makes the
    directory valid, e.g. a dataset's meta.json) removed first and moved in last (``default``: see
    :func:`written_files`)."""
    _write_manifest(new, [entry.name for entry in new.iterdir()])
    if not path.exists():
        os.replace(new, path)
        return
    if not foreign_files(path, default):
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(path, old)
        os.replace(new, path)
        shutil.rmtree(old)
        return
    before, after = written_files(path, default), {entry.name for entry in new.iterdir()} - {MANIFEST}
    _write_manifest(path, sorted(before | after))  # a crash below leaves every file of ours named
    if key_file is not None:
        _remove(path / key_file)
    for name in sorted(after, key=lambda name: name == key_file):
        os.replace(new / name, path / name)
    for name in sorted(before - after):
        _remove(path / name)
    _write_manifest(path, sorted(after))
    shutil.rmtree(new)


def _write_manifest(directory: Path, names: list[str]) -> None:
    names = sorted(name for name in names if name != MANIFEST)
    (directory / MANIFEST).write_text(json.dumps({"files": names}, indent=1) + "\n", encoding="utf-8")


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)
