"""Start a model from earlier weights: this project's checkpoint or an original UER model file."""

from __future__ import annotations

from torch import nn

from uer.io.formats import CHECKPOINT, read_model_file
from uer.io.uer_format import LoadReport, from_uer_state_dict, load_into_model


def load_pretrained_weights(model: nn.Module, path) -> LoadReport:
    """Partial load: missing/unexpected keys are reported, a shape clash is an error naming the key."""
    kind, content = read_model_file(path, "pretrained_model_path")
    state = content["model"] if kind == CHECKPOINT else from_uer_state_dict(content)
    return load_into_model(model, state, source=str(path))
