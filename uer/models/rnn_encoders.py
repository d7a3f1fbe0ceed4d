"""Recurrent encoders: ``lstm``, ``gru`` (one stack, optionally ``bidirectional``) and
``bilstm``, ``bigru`` (ELMo-style: separate forward and backward stacks).

Inputs are right-padded (``seg == 0`` marks padding).  Padding never reaches a real
position:

* a forward pass reads the real tokens before the padding, so it needs nothing;
* ``bidirectional`` stacks run on packed sequences, so the reverse direction starts at
  each row's last real token;
* the separate backward stack of ``bilstm``/``bigru`` reads each row reversed within its
  own length (the padding stays at the end) and the result is reversed back.

Sizes follow UER: ``hidden_size`` is the width of the output, so a bidirectional stack
or a forward/backward pair has ``hidden_size / 2`` units per direction, and the output is
``[forward; backward]`` along the last dimension.  Module names equal UER's (``rnn``;
``rnn_forward``/``rnn_backward``), with torch's parameter names inside, so UER-format
files load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from uer.config.fields import setting
from uer.errors import UerError
from uer.models.context import BIDIRECTIONAL, CAUSAL, STACKS
from uer.models.dropout import Dropout
from uer.models.encoders import ENCODERS, EncoderConfig


@dataclass
class RnnEncoderConfig(EncoderConfig):
    """``encoder=lstm`` / ``gru`` (and ``rcnn``/``crnn``'s LSTM): one stack."""

    bidirectional: bool = setting(False, "one stack reading both ways (hidden_size/2 units per direction)")


def rnn_context(cfg) -> str:
    return BIDIRECTIONAL if cfg.bidirectional else CAUSAL

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def make_rnn(kind: str, input_size: int, hidden_size: int, layers_num: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first torch LSTM/GRU (inter-layer dropout only where there are several layers)."""
    return CELLS[kind](input_size=input_size, hidden_size=hidden_size, num_layers=layers_num,
                       dropout=dropout if layers_num > 1 else 0.0, batch_first=True,
                       bidirectional=bidirectional)


def direction_size(cfg: EncoderConfig, directions: int) -> int:
    """Units per direction: ``hidden_size`` split evenly over ``directions``."""
    if cfg.hidden_size % directions:
        raise UerError(f"hidden_size {cfg.hidden_size} must be even for encoder {cfg.type} "
                       f"(hidden_size/2 units per direction); use an even model.hidden_size")
    return cfg.hidden_size // directions


def real_lengths(seg: torch.Tensor) -> torch.Tensor:
    """Real (non-padding) tokens per row, (B,)."""
    return (seg != 0).sum(dim=1)


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """``rnn``'s outputs (B, L, directions * units), padding kept out of the reverse direction."""
    lengths = real_lengths(seg)
    if not rnn.bidirectional or bool((lengths == x.size(1)).all()):
        return rnn(x)[0]
    # A fully padded row still gets one step, so packing never sees a zero length.
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    output, _ = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.size(1))
    return output


def reverse_within_length(x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """Each row's real positions in reverse order, padding left in place; its own inverse."""
    length = x.size(1)
    lengths = real_lengths(seg)
    if bool((lengths == length).all()):
        return x.flip(1)
    positions = torch.arange(length, device=x.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    index = torch.where(positions <= last, last - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class RnnEncoder(nn.Module):
    """One LSTM/GRU stack (UER's ``lstm``/``gru`` encoders); see the module docstring."""

    kind = ""
    needs_positions = False
    variants = ("encoder.bidirectional=true",)
    context = staticmethod(rnn_context)

    def __init__(self, cfg: RnnEncoderConfig, emb_size: int):
        super().__init__()
        self.bidirectional = bool(cfg.bidirectional)
        self.hidden_size = cfg.hidden_size
        units = direction_size(cfg, 2) if self.bidirectional else cfg.hidden_size
        self.rnn = make_rnn(self.kind, emb_size, units, cfg.layers_num, cfg.dropout, self.bidirectional)
        self.drop = Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.drop(run_rnn(self.rnn, emb, seg))


@ENCODERS.register("lstm", config=RnnEncoderConfig)
class LstmEncoder(RnnEncoder):
    kind = "lstm"


@ENCODERS.register("gru", config=RnnEncoderConfig)
class GruEncoder(RnnEncoder):
    kind = "gru"


class BiRnnEncoder(nn.Module):
    """Separate forward and backward stacks (ELMo; UER's ``bilstm``/``bigru``).

    Neither stack sees the other's states, so the forward half of the output at position
    ``i`` depends on tokens ``0..i`` only and the backward half on ``i..end`` only: the
    two halves can be trained as a forward and a backward language model (target
    ``bilm``) without seeing the token they predict.
    """

    kind = ""
    needs_positions = False
    variants: tuple[str, ...] = ()

    def __init__(self, cfg: EncoderConfig, emb_size: int):
        super().__init__()
        self.hidden_size = cfg.hidden_size
        units = direction_size(cfg, 2)
        self.rnn_forward = make_rnn(self.kind, emb_size, units, cfg.layers_num, cfg.dropout)
        self.rnn_backward = make_rnn(self.kind, emb_size, units, cfg.layers_num, cfg.dropout)
        self.drop = Dropout(cfg.dropout)

    @staticmethod
    def context(cfg) -> str:
        return STACKS

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        forward = self.rnn_forward(emb)[0]
        backward = reverse_within_length(self.rnn_backward(reverse_within_length(emb, seg))[0], seg)
        return self.drop(torch.cat([forward, backward.to(forward.dtype)], dim=-1))


@ENCODERS.register("bilstm", config=EncoderConfig)
class BiLstmEncoder(BiRnnEncoder):
    kind = "lstm"


@ENCODERS.register("bigru", config=EncoderConfig)
class BiGruEncoder(BiRnnEncoder):
    kind = "gru"
