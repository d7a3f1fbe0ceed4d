"""This project's parameter names <-> the original UER-py layout's (the mapping :mod:`uer.io.uer_format`
describes), as pure functions of a state dict: every converter maps through the UER layout, and this
module imports no reader, so the readers of every format can use it."""

from __future__ import annotations

import re

import torch

from uer.errors import UerError

BACKBONE_PREFIX = "backbone."
BACKBONE_PARTS = ("embedding.", "encoder.")  # a decoder's names ("decoder.") are the model's own

_FUSED_QKV = re.compile(r"^(?P<attn>(?:.*\.)?(?:self|context)_attn(?:\.\d+)?)\.qkv\.(?P<kind>weight|bias)$")
_SPLIT_QKV = re.compile(
    r"^(?P<attn>(?:.*\.)?(?:self|context)_attn(?:\.\d+)?)\.linear_layers\.(?P<index>[012])\.(?P<kind>weight|bias)$")
_OUR_LAYER_NORM = re.compile(r"^(?P<module>(?:.*\.)?layer_norm(?:_\d+)?)\.(?P<kind>weight|bias)$")
_UER_LAYER_NORM = re.compile(r"^(?P<module>.*)\.(?P<kind>gamma|beta)$")
_TO_UER_LN = {"weight": "gamma", "bias": "beta"}
_FROM_UER_LN = {"gamma": "weight", "beta": "bias"}

StateDict = dict[str, torch.Tensor]


def to_uer_state_dict(state_dict: StateDict, backbone_prefix: str = BACKBONE_PREFIX) -> StateDict:
    """Our parameter names -> UER names (see the module docstring)."""
    uer: StateDict = {}
    for key, tensor in state_dict.items():
        if backbone_prefix and key.startswith(backbone_prefix):
            key = key[len(backbone_prefix):]
        if match := _FUSED_QKV.match(key):
            for index, part in enumerate(tensor.chunk(3, dim=0)):
                uer[f"{match['attn']}.linear_layers.{index}.{match['kind']}"] = part.clone()
        elif match := _OUR_LAYER_NORM.match(key):
            uer[f"{match['module']}.{_TO_UER_LN[match['kind']]}"] = tensor
        else:
            uer[key] = tensor
    return uer


def from_uer_state_dict(uer_state_dict: StateDict, backbone_prefix: str = BACKBONE_PREFIX) -> StateDict:
    """UER names -> our parameter names; the inverse of :func:`to_uer_state_dict`."""
    ours: StateDict = {}
    projections: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for key, tensor in uer_state_dict.items():
        if match := _SPLIT_QKV.match(key):
            projections.setdefault((match["attn"], match["kind"]), {})[int(match["index"])] = tensor
            continue
        if match := _UER_LAYER_NORM.match(key):
            key = f"{match['module']}.{_FROM_UER_LN[match['kind']]}"
        ours[_with_prefix(key, backbone_prefix)] = tensor
    for (attn, kind), parts in projections.items():
        names = [f"{attn}.linear_layers.{index}.{kind}" for index in range(3)]
        absent = [name for index, name in enumerate(names) if index not in parts]
        if absent:
            raise UerError(f"{absent[0]} is missing; query, key and value projections must all be present")
        shapes = [tuple(parts[index].shape) for index in range(3)]
        if len(set(shapes)) > 1:
            raise UerError(f"{attn}.linear_layers.{{0,1,2}}.{kind} have different shapes {shapes}")
        ours[_with_prefix(f"{attn}.qkv.{kind}", backbone_prefix)] = torch.cat([parts[index] for index in range(3)])
    return ours


def _with_prefix(key: str, backbone_prefix: str) -> str:
    return backbone_prefix + key if key.startswith(BACKBONE_PARTS) else key
