"""TensorBoard event writing without importing TensorFlow.

TensorBoard uses TensorFlow for its file I/O when TensorFlow is importable, which costs
seconds of start-up and a screen of TensorFlow log lines in every run of a machine that
has the ``tf`` extra installed.  Its own switch for the TensorFlow-free stub is the
presence of a module ``tensorboard.compat.notf``; we register an empty one before the
first import, so event files are always written by the stub (same format).
"""

from __future__ import annotations

import sys
import types


def summary_writer(log_dir: str):
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter  # lazy: a second to import, needed by logger=tensorboard only

    return SummaryWriter(log_dir=log_dir)
