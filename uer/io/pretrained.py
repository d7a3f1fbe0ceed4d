"""Start a model from earlier weights: this project's checkpoint (``.pt``) or an original UER ``.bin``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from uer.io.checkpoint import load_checkpoint
from uer.io.uer_format import LoadReport, from_uer_state_dict, load_into_model, load_uer_bin


def load_pretrained_weights(model: nn.Module, path) -> LoadReport:
    """Partial load: missing/unexpected keys are reported, a shape clash is an error naming the key."""
    path = Path(path)
    if path.suffix == ".bin":
        state = from_uer_state_dict(load_uer_bin(path))
    else:
        state = load_checkpoint(path)["model"]
    return load_into_model(model, state, source=str(path))
