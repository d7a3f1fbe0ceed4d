"""Convolutional encoders: ``cnn``, ``gatedcnn`` and the mixed ``rcnn`` (RNN then CNN) and
``crnn`` (CNN then RNN).

Every convolution is causal, as in UER: the input is padded with ``kernel_size - 1``
zeros on the left, so output ``i`` depends on positions ``i - kernel_size + 1 .. i`` and a
stack of them on nothing after ``i``.  Such an encoder is a left-to-right model (it can
be trained with the ``lm`` target), and right padding never reaches a real position.

* ``cnn``: ``layers_num`` convolutions with ReLU; from the second layer on, a residual
  connection every ``block_size`` layers.
* ``gatedcnn``: gated linear units (Dauphin et al., 2017): ``a * sigmoid(b)`` where one
  convolution with ``2 * hidden_size`` channels gives ``a`` and ``b``; residual
  connections as in ``cnn``.
* ``rcnn``: an LSTM (``layers_num`` layers, ``bidirectional`` optional), then
  ``layers_num`` ReLU convolutions.
* ``crnn``: ``layers_num`` ReLU convolutions, then an LSTM.

Module names are UER's (``conv_1`` for the first convolution, ``conv.L`` for the others,
``rnn``), but the weights are ``Conv1d``'s ``(out, in, kernel_size)`` -- UER used
``Conv2d`` -- and the gated unit's two halves are one convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import II
from torch import nn

from uer.config.fields import at_least, setting
from uer.errors import UerError
from uer.models.context import CAUSAL
from uer.models.dropout import Dropout
from uer.models.encoders import ENCODERS, EncoderConfig
from uer.models.rnn_encoders import RnnEncoderConfig, direction_size, make_rnn, rnn_context, run_rnn


@dataclass
class CnnEncoderConfig(EncoderConfig):
    """``encoder=cnn`` / ``gatedcnn``: causal convolutions with residual blocks."""

    kernel_size: int = setting(II("model.kernel_size"), "convolution width", bounds=at_least(1))
    block_size: int = setting(II("model.block_size"), "a residual connection every block_size layers",
                              bounds=at_least(1))


@dataclass
class RcnnEncoderConfig(RnnEncoderConfig):
    """``encoder=rcnn`` / ``crnn``: an LSTM and causal convolutions."""

    kernel_size: int = setting(II("model.kernel_size"), "convolution width", bounds=at_least(1))


def _check(cfg, keys) -> None:
    for key in ("layers_num", *keys):
        value = getattr(cfg, key)
        if value < 1:
            raise UerError(f"encoder.{key}={value} must be at least 1 (model.{key})")


class CausalConvs(nn.Module):
    """Owns ``conv_1`` and ``conv.L`` (UER's names): ``layers_num`` causal convolutions,
    (B, C, L) -> (B, hidden, L).

    ``gated``: each layer is a gated linear unit; otherwise ReLU.  ``block_size`` > 0 adds
    the output of every ``block_size``-th layer after the first to the input of that block.
    Subclasses are the encoders, which put their other parts beside the convolutions.
    """

    def init_convs(self, in_size: int, hidden_size: int, layers_num: int, kernel_size: int, gated: bool,
                   block_size: int = 0) -> None:
        width = 2 * hidden_size if gated else hidden_size
        self.kernel_size = kernel_size
        self.gated = gated
        self.block_size = block_size
        self.conv_1 = nn.Conv1d(in_size, width, kernel_size)
        self.conv = nn.ModuleList(nn.Conv1d(hidden_size, width, kernel_size) for _ in range(layers_num - 1))

    def conv_layer(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        x = conv(F.pad(x, (self.kernel_size - 1, 0)))
        return F.glu(x, dim=1) if self.gated else F.relu(x)

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, hidden)."""
        hidden = self.conv_layer(self.conv_1, x.transpose(1, 2))
        block_input = hidden
        for index, conv in enumerate(self.conv):
            hidden = self.conv_layer(conv, hidden)
            if self.block_size and (index + 1) % self.block_size == 0:
                hidden = hidden + block_input
                block_input = hidden
        return hidden.transpose(1, 2)


class ConvEncoder(CausalConvs):
    gated = False
    needs_positions = False
    variants: tuple[str, ...] = ()

    def __init__(self, cfg: CnnEncoderConfig, emb_size: int):
        super().__init__()
        _check(cfg, ("kernel_size", "block_size"))
        self.hidden_size = cfg.hidden_size
        self.init_convs(emb_size, cfg.hidden_size, cfg.layers_num, cfg.kernel_size, self.gated, cfg.block_size)
        self.drop = Dropout(cfg.dropout)

    @staticmethod
    def context(cfg) -> str:
        return CAUSAL

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.drop(self.convolve(emb))


@ENCODERS.register("cnn", config=CnnEncoderConfig)
class CnnEncoder(ConvEncoder):
    gated = False


@ENCODERS.register("gatedcnn", config=CnnEncoderConfig)
class GatedCnnEncoder(ConvEncoder):
    gated = True


class MixedEncoder(CausalConvs):
    """What ``rcnn`` and ``crnn`` share: their context is their LSTM's."""

    needs_positions = False
    variants = ("encoder.bidirectional=true",)
    context = staticmethod(rnn_context)


@ENCODERS.register("rcnn", config=RcnnEncoderConfig)
class RcnnEncoder(MixedEncoder):
    """LSTM, then causal ReLU convolutions (UER's ``rcnn``)."""

    def __init__(self, cfg: RcnnEncoderConfig, emb_size: int):
        super().__init__()
        _check(cfg, ("kernel_size",))
        self.hidden_size = cfg.hidden_size
        self.bidirectional = bool(cfg.bidirectional)
        units = direction_size(cfg, 2) if self.bidirectional else cfg.hidden_size
        self.rnn = make_rnn("lstm", emb_size, units, cfg.layers_num, cfg.dropout, self.bidirectional)
        self.drop = Dropout(cfg.dropout)
        self.init_convs(cfg.hidden_size, cfg.hidden_size, cfg.layers_num, cfg.kernel_size, gated=False)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.convolve(self.drop(run_rnn(self.rnn, emb, seg)))


@ENCODERS.register("crnn", config=RcnnEncoderConfig)
class CrnnEncoder(MixedEncoder):
    """Causal ReLU convolutions, then an LSTM (UER's ``crnn``)."""

    def __init__(self, cfg: RcnnEncoderConfig, emb_size: int):
        super().__init__()
        _check(cfg, ("kernel_size",))
        self.hidden_size = cfg.hidden_size
        self.bidirectional = bool(cfg.bidirectional)
        self.init_convs(emb_size, cfg.hidden_size, cfg.layers_num, cfg.kernel_size, gated=False)
        units = direction_size(cfg, 2) if self.bidirectional else cfg.hidden_size
        self.rnn = make_rnn("lstm", cfg.hidden_size, units, cfg.layers_num, cfg.dropout, self.bidirectional)
        self.drop = Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.drop(run_rnn(self.rnn, self.convolve(emb), seg))
