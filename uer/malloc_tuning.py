"""glibc malloc settings that keep training memory close to what the tensors need.

glibc's thread cache (tcache) keeps small freed chunks without merging them with their
neighbours.  PyTorch allocates every tensor 64-byte aligned (``posix_memalign``), and
each aligned allocation frees a small slice before and after itself into that cache,
where it stays "in use" as far as the heap knows.  So when a step frees its activations,
adjacent ones cannot merge back into larger blocks, the next step cannot reuse them for
its larger tensors, and the heap keeps growing into memory that is free but resident.
At ``size=base``, batch 16, length 128 that is about a third of a GiB
(``bench/pretrain_memory.py``: peak RSS 3.2 GiB with glibc's defaults, 2.9 with these).

The settings: no tcache; a fixed mmap threshold at glibc's own ceiling (32 MiB) and a high
trim threshold, so freed memory stays in the heap for reuse instead of going back to the
system and being faulted in again (without them, no tcache costs about 5% of speed).

The thresholds can be set at run time (``mallopt``), the thread cache only at start-up
(``GLIBC_TUNABLES``).  So ``main.py`` restarts itself once with all three set
(:func:`restart_with_tuned_malloc`: the same process id, arguments and interpreter, and
child processes inherit the settings) -- but only when it is the process's own script,
``python [options] main.py ...``.  Run any other way (``runpy``, IPython's ``%run``, a
debugger, a host embedding Python) the process is not main.py's to restart: the
thresholds are set with ``mallopt`` and the thread cache stays as it is.
``UER_MALLOC_TUNING=0`` keeps glibc's defaults; tunables the user has set already win over
these.  Nothing happens on systems without glibc.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from typing import Mapping, Optional, Sequence

from uer.errors import UerError

SWITCH = "UER_MALLOC_TUNING"  # off: leave malloc alone; "applied": set by the restart
OFF = ("0", "off", "false", "no")
ON = ("", "1", "on", "true", "yes")

TUNABLES = {
    "glibc.malloc.tcache_count": "0",
    "glibc.malloc.mmap_threshold": str(32 * 2**20),
    "glibc.malloc.trim_threshold": str(4 * 2**30),
}

RESTART_ONLY = "glibc.malloc.tcache_count"  # read at start-up only
# mallopt's parameter numbers (glibc's <malloc.h>) for the tunables that can change at run time.
MALLOPT = {"glibc.malloc.trim_threshold": -1, "glibc.malloc.mmap_threshold": -3}
INT_MAX = 2**31 - 1

# The older environment variables that set the same tunables.
LEGACY_NAMES = {
    "glibc.malloc.tcache_count": "MALLOC_TCACHE_COUNT_",
    "glibc.malloc.mmap_threshold": "MALLOC_MMAP_THRESHOLD_",
    "glibc.malloc.trim_threshold": "MALLOC_TRIM_THRESHOLD_",
}


def uses_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # not POSIX, or no such name here
        return False


def _switch(environ: Mapping[str, str]) -> str:
    switch = environ.get(SWITCH, "").strip().lower()
    if switch not in OFF + ON + ("applied",):
        raise UerError(f"environment variable {SWITCH}={environ[SWITCH]!r} is not understood; "
                       f"set it to 0 to keep glibc's malloc defaults, or unset it")
    return switch


def _missing(environ: Mapping[str, str], glibc: bool) -> list[str]:
    """The tunables of :data:`TUNABLES` to set: none when switched off, restarted already or not glibc,
    else those that neither ``GLIBC_TUNABLES`` nor an older variable sets."""
    switch = _switch(environ)
    if not glibc or switch in OFF or switch == "applied":
        return []
    named = {item.split("=", 1)[0] for item in environ.get("GLIBC_TUNABLES", "").split(":") if item}
    return [name for name in TUNABLES if name not in named and LEGACY_NAMES[name] not in environ]


def tuned_environment(environ: Mapping[str, str], glibc: bool) -> Optional[dict[str, str]]:
    """``environ`` with the missing tunables added, or None when no restart is needed
    (the thread-cache setting, which only a restart applies, is set or not wanted)."""
    missing = _missing(environ, glibc)
    if RESTART_ONLY not in missing:
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    added = [f"{name}={TUNABLES[name]}" for name in missing]
    return {**environ, "GLIBC_TUNABLES": ":".join([current, *added] if current else added), SWITCH: "applied"}


def run_time_settings(environ: Mapping[str, str], glibc: bool) -> dict[int, int]:
    """``{mallopt parameter: value}`` for the missing tunables that can be set without a restart
    (a value beyond a C ``int``, which mallopt takes, is lowered to the largest one)."""
    return {MALLOPT[name]: min(int(TUNABLES[name]), INT_MAX) for name in _missing(environ, glibc) if name in MALLOPT}


def process_script(orig_argv: Sequence[str]) -> Optional[str]:
    """The script of a ``python [options] SCRIPT [args]`` command line; None for ``-c``, ``-m``,
    standard input, or no script."""
    args = iter(orig_argv[1:])
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg == "-":
            return None
        if not arg.startswith("-"):
            return arg
        if arg == "--check-hash-based-pycs":
            next(args, None)
        if arg.startswith("--"):
            continue
        for position, flag in enumerate(arg[1:], start=2):
            if flag in "cm":
                return None
            if flag in "WX":  # their value is the rest of this argument, or the next one
                if position == len(arg):
                    next(args, None)
                break
    return None


def is_process_script(script: str, orig_argv: Sequence[str], executable: str) -> bool:
    """Whether this process was started as ``executable [options] script ...``: only then is
    re-executing that command line running ``script`` again, and nothing else."""
    if not orig_argv or not executable:
        return False
    started = process_script(orig_argv)
    interpreter = shutil.which(orig_argv[0]) or orig_argv[0]
    return (started is not None and os.path.realpath(started) == os.path.realpath(script)
            and os.path.realpath(interpreter) == os.path.realpath(executable))


_set_at_run_time = False


def set_at_run_time(settings: Mapping[int, int]) -> bool:
    """``mallopt`` each ``{parameter: value}``; whether all took effect."""
    global _set_at_run_time
    if not settings:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _set_at_run_time = all([mallopt(parameter, value) == 1 for parameter, value in settings.items()])
    return _set_at_run_time


def restart_with_tuned_malloc(script: str) -> None:
    """Replace this process by the same command with the tunables set, when they are not yet and
    ``script`` (main.py's ``__file__``) is the process's own script; else set what ``mallopt`` can."""
    glibc = uses_glibc()
    try:
        environ = tuned_environment(os.environ, glibc)
        settings = run_time_settings(os.environ, glibc)
    except UerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if environ is not None and is_process_script(script, sys.orig_argv, sys.executable):
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
        except OSError:  # cannot re-execute (unusual sandboxes): set what can be set here
            pass
    set_at_run_time(settings)


def describe() -> str:
    """One line for the run's log."""
    if os.environ.get(SWITCH) == "applied":
        return f"glibc malloc tuned for training memory (tcache off; {SWITCH}=0 keeps the defaults)"
    if _set_at_run_time:
        return ("glibc malloc thresholds fixed at run time; its thread cache is as the process started "
                "(main.py turns it off, by restarting itself, only when run as `python main.py`)")
    return "glibc malloc at its defaults"
