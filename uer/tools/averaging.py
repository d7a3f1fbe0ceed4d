"""tool=average_model: the element-wise mean of several models' weights (checkpoint averaging).

    python main.py stage=tool tool=average_model tool.input_paths=[a.pt,b.pt] tool.output_path=avg.pt

Every input must hold the same tensors with the same shapes (the same architecture); the
first mismatch is one error line naming both files and the key.  Inputs may mix our
``.pt`` checkpoints and UER ``.bin`` files (names are compared after mapping ``.bin``
names to ours).  The mean is taken in float64 and cast back to each tensor's dtype.
``tool.output_path`` ending in ``.bin`` writes a UER-format file; anything else writes
our checkpoint, with the first ``.pt`` input's config and vocabulary identity and no
trainer state (a ``.pt`` output needs at least one ``.pt`` input to describe the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uer.errors import UerError
from uer.io.checkpoint import checkpoint_tokenizer, save_checkpoint
from uer.io.uer_format import to_uer_state_dict
from uer.config.fields import setting
from uer.tools import TOOLS, OutputFile, ToolConfig
from uer.tools.model_loading import atomic_write, logger, model_file, output_file, read_state


@dataclass
class AverageConfig(OutputFile, ToolConfig):
    """``tool=average_model``."""

    input_paths: list[str] = setting([], "the models to average (same architecture and vocabulary)")


@TOOLS.register("average_model", config=AverageConfig)
def average_model(cfg) -> str:
    paths = [model_file(path, "tool.input_paths") for path in cfg.tool.input_paths or []]
    if not paths:
        raise UerError("tool=average_model needs tool.input_paths=[a.pt,b.pt,...] (at least one model file)")
    out = output_file(cfg, "average.pt")
    states, payloads = zip(*(read_state(path, cfg.allow_nonfinite_weights) for path in paths))
    average = average_states(list(states), [str(p) for p in paths])
    if out.suffix == ".bin":
        uer_state = to_uer_state_dict(average)
        atomic_write(out, lambda handle: torch.save(uer_state, handle), binary=True)
    else:
        described = [(path, payload) for path, payload in zip(paths, payloads) if payload is not None]
        if not described:
            raise UerError(f"tool.output_path={out} would be a .pt checkpoint, but every input is a UER .bin with no "
                           "config to describe it; give an output path ending in .bin")
        for path, payload in described[1:]:
            if payload.get("vocab") != described[0][1].get("vocab"):
                raise UerError(f"models {described[0][0]} and {path} were trained with different vocabularies; "
                               "average only models of one vocabulary")
        first = described[0][1]
        save_checkpoint(out, model_state=average, config=first.get("config") or {},
                        tokenizer=checkpoint_tokenizer(first, described[0][0]), trainer=None,
                        task_info=first.get("task_info"))
    logger.info("averaged %d models (%d tensors) into %s", len(paths), len(average), out)
    return str(out)


def average_states(states: list[dict[str, torch.Tensor]], names: list[str]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with identical keys and shapes; else one line naming the mismatch."""
    first, first_name = states[0], names[0]
    for state, name in zip(states[1:], names[1:]):
        for key in first:
            if key not in state:
                raise UerError(f"models {first_name} and {name} differ: {key} is in {first_name} but not in {name}; "
                               "average only models of one architecture")
            if state[key].shape != first[key].shape:
                raise UerError(f"models {first_name} and {name} differ at {key}: shape {tuple(first[key].shape)} vs "
                               f"{tuple(state[key].shape)}; average only models of one architecture")
        extra = next((key for key in state if key not in first), None)
        if extra is not None:
            raise UerError(f"models {first_name} and {name} differ: {extra} is in {name} but not in {first_name}; "
                           "average only models of one architecture")
    average: dict[str, torch.Tensor] = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = torch.zeros(tensor.shape, dtype=torch.float64)
            for state in states:
                total += state[key].to(torch.float64)
            average[key] = (total / len(states)).to(tensor.dtype)
        else:  # integer buffers (counters, ids) cannot be averaged: they must agree
            for state, name in zip(states[1:], names[1:]):
                if not torch.equal(state[key], tensor):
                    raise UerError(f"models {first_name} and {name} differ at {key}, a non-float tensor that "
                                   "cannot be averaged")
            average[key] = tensor.clone()
    return average

