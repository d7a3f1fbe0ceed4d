"""Assemble embedding + encoder (the backbone) and a target into a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uer.config.compat import check_model
from uer.errors import UerError
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.layers import init_bert_weights
from uer.models.targets import TARGETS, ModelDims, Stats
from uer.registry import Registry


class Backbone(nn.Module):
    """Embedding + encoder: ``(src, seg)`` -> hidden states (B, L, hidden_size).

    Shared by pre-training (``PretrainModel``) and fine-tuning heads.
    """

    def __init__(self, embedding: nn.Module, encoder: nn.Module):
        super().__init__()
        self.embedding = embedding
        self.encoder = encoder

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embedding(src, seg), seg)


@dataclass
class ModelOutput:
    loss: torch.Tensor
    stats: Stats


class PretrainModel(nn.Module):
    def __init__(self, backbone: Backbone, target: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.target = target

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        hidden = self.backbone(batch["src"], batch["seg"])
        loss, stats = self.target(hidden, batch)
        return ModelOutput(loss, stats)


def _lookup(registry: Registry, name: str):
    try:
        return registry.get(name)
    except KeyError as err:
        raise UerError(err.args[0]) from None


def build_backbone(embedding_cfg, encoder_cfg, vocab_size: int) -> Backbone:
    """Build and BERT-initialise a backbone; configs need only attribute access.

    Linear, Embedding and LayerNorm get BERT's initialisation; RNN and convolution weights
    keep torch's.  An embedding x encoder pair that cannot work is a UerError
    (:mod:`uer.config.compat`).
    """
    check_model(embedding_cfg, encoder_cfg)
    embedding = _lookup(EMBEDDINGS, embedding_cfg.type)(embedding_cfg, vocab_size)
    encoder = _lookup(ENCODERS, encoder_cfg.type)(encoder_cfg, embedding_cfg.emb_size)
    backbone = Backbone(embedding, encoder)
    backbone.apply(init_bert_weights)
    return backbone


def build_model(embedding_cfg, encoder_cfg, target_cfg, vocab_size: int) -> PretrainModel:
    """Build a pre-training model.  The target's activation and LayerNorm epsilon are the encoder's."""
    check_model(embedding_cfg, encoder_cfg, target_cfg)
    backbone = build_backbone(embedding_cfg, encoder_cfg, vocab_size)
    dims = ModelDims(
        vocab_size=vocab_size,
        emb_size=embedding_cfg.emb_size,
        hidden_size=encoder_cfg.hidden_size,
        hidden_act=getattr(encoder_cfg, "hidden_act", "gelu"),
        layernorm_eps=getattr(encoder_cfg, "layernorm_eps", 1e-6),
    )
    target = _lookup(TARGETS, target_cfg.type)(target_cfg, dims, backbone.embedding.word_embedding)
    target.apply(init_bert_weights)
    return PretrainModel(backbone, target)
