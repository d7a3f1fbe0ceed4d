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

glibc reads them only at start-up (``GLIBC_TUNABLES``), so ``main.py`` restarts itself
once with them set (:func:`restart_with_tuned_malloc`, the same process id, arguments and
interpreter).  ``UER_MALLOC_TUNING=0`` keeps glibc's defaults; tunables the user has set
already win over these.  Nothing happens on systems without glibc.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Optional

from uer.errors import UerError

SWITCH = "UER_MALLOC_TUNING"  # off: leave malloc alone; "applied": set by the restart
OFF = ("0", "off", "false", "no")
ON = ("", "1", "on", "true", "yes")

TUNABLES = {
    "glibc.malloc.tcache_count": "0",
    "glibc.malloc.mmap_threshold": str(32 * 2**20),
    "glibc.malloc.trim_threshold": str(4 * 2**30),
}

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


def tuned_environment(environ: Mapping[str, str], glibc: bool) -> Optional[dict[str, str]]:
    """``environ`` with the tunables added, or None when nothing needs to change."""
    switch = environ.get(SWITCH, "").strip().lower()
    if switch not in OFF + ON + ("applied",):
        raise UerError(f"environment variable {SWITCH}={environ[SWITCH]!r} is not understood; "
                       f"set it to 0 to keep glibc's malloc defaults, or unset it")
    if not glibc or switch in OFF or switch == "applied":
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    named = {item.split("=", 1)[0] for item in current.split(":") if item}
    missing = [f"{name}={value}" for name, value in TUNABLES.items()
               if name not in named and LEGACY_NAMES[name] not in environ]
    if not missing:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join([current, *missing] if current else missing), SWITCH: "applied"}


def restart_with_tuned_malloc() -> None:
    """Replace this process by the same command with the tunables set, if they are not yet."""
    try:
        environ = tuned_environment(os.environ, uses_glibc())
    except UerError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if environ is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)
    except OSError:  # cannot re-execute (unusual sandboxes): run with glibc's defaults
        return


def describe() -> str:
    """One line for the run's log."""
    if os.environ.get(SWITCH) == "applied":
        return f"glibc malloc tuned for training memory (tcache off; {SWITCH}=0 keeps the defaults)"
    return "glibc malloc at its defaults"
