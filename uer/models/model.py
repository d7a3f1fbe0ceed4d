"""Assemble embedding + encoder (the backbone) and a target into a model.

The builders take each part's schema instance (or a config node / plain dict with
``type``, e.g. what a checkpoint recorded: :meth:`uer.registry.Registry.build_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from uer.config.fields import FRACTION, at_least, setting
from uer.errors import UerError
from uer.models.compat import check_model
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.layers import init_bert_weights
from uer.models.targets import TARGETS, ModelDims, Stats


@dataclass
class ModelSizeConfig:
    """``size=``: the sizes embedding, encoder and target share (``${model.KEY}`` in their schemas)."""

    emb_size: int = setting(768, "embedding width (smaller than hidden_size: ALBERT's factorized embedding)",
                            bounds=at_least(1))
    hidden_size: int = setting(768, "encoder width", bounds=at_least(1))
    feedforward_size: int = setting(3072, "transformer feed-forward width", bounds=at_least(1))
    heads_num: int = setting(12, "attention heads", bounds=at_least(1))
    layers_num: int = setting(12, "encoder layers", bounds=at_least(1))
    dropout: float = setting(0.1, "dropout probability everywhere", tunable=True, bounds=FRACTION)
    hidden_act: str = setting("gelu", "feed-forward activation: gelu | gelu_fast | relu | silu")
    max_seq_length: int = setting(512, "positions of the position embedding: the longest input", bounds=at_least(1))
    parameter_sharing: bool = setting(False, "one layer shared across the stack (ALBERT)")
    kernel_size: int = setting(3, "cnn, gatedcnn, rcnn, crnn: convolution width", bounds=at_least(1))
    block_size: int = setting(2, "cnn, gatedcnn: a residual connection every block_size layers", bounds=at_least(1))
    config_path: Optional[str] = setting(
        None, "an original toolkit's model config (JSON, e.g. models/bert_base_config.json): its sizes replace "
              "this node's, as the original's --config_path (uer/config/config_path.py)")
    layernorm: Optional[str] = setting(
        None, "LayerNorm formula everywhere: standard (torch, BERT, Hugging Face) | uer (the original UER-py's: "
              "unbiased std, eps outside the square root) | null (uer when the starting weights are an original UER "
              "file, else standard)")


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


def build_backbone(embedding_cfg, encoder_cfg, vocab_size: int, *, tokens: Optional[Sequence[str]] = None) -> Backbone:
    """Build and BERT-initialise a backbone.

    ``tokens`` (the vocabulary, ``vocab_size`` of them) is needed by an embedding with a
    character sub-encoder (``embedding.subencoder``), which reads how each token is written.

    Linear, Embedding and LayerNorm get BERT's initialisation; RNN and convolution weights
    keep torch's.  An embedding x encoder pair that cannot work is a UerError
    (:mod:`uer.models.compat`).
    """
    embedding_cfg, encoder_cfg = EMBEDDINGS.build_config(embedding_cfg), ENCODERS.build_config(encoder_cfg)
    check_model(embedding_cfg, encoder_cfg)
    if tokens is not None and len(tokens) != vocab_size:
        raise UerError(f"the vocabulary has {len(tokens)} tokens but the model {vocab_size} word embedding rows")
    embedding = EMBEDDINGS.lookup(embedding_cfg.type)(embedding_cfg, vocab_size, tokens)
    encoder = ENCODERS.lookup(encoder_cfg.type)(encoder_cfg, embedding_cfg.emb_size)
    backbone = Backbone(embedding, encoder)
    backbone.apply(init_bert_weights)
    return backbone


def build_model(embedding_cfg, encoder_cfg, target_cfg, vocab_size: int, *,
                tokens: Optional[Sequence[str]] = None) -> PretrainModel:
    """Build a pre-training model.  The target's activation and LayerNorm (epsilon, formula) are the
    encoder's (the embedding's LayerNorm formula for encoders without a LayerNorm)."""
    embedding_cfg, encoder_cfg = EMBEDDINGS.build_config(embedding_cfg), ENCODERS.build_config(encoder_cfg)
    target_cfg = TARGETS.build_config(target_cfg)
    check_model(embedding_cfg, encoder_cfg, target_cfg)
    backbone = build_backbone(embedding_cfg, encoder_cfg, vocab_size, tokens=tokens)
    dims = ModelDims(
        vocab_size=vocab_size,
        emb_size=embedding_cfg.emb_size,
        hidden_size=encoder_cfg.hidden_size,
        hidden_act=getattr(encoder_cfg, "hidden_act", "gelu"),
        layernorm_eps=getattr(encoder_cfg, "layernorm_eps", 1e-6),
        layernorm=getattr(encoder_cfg, "layernorm", embedding_cfg.layernorm),
    )
    target = TARGETS.lookup(target_cfg.type)(target_cfg, dims, backbone.embedding.word_embedding)
    target.apply(init_bert_weights)
    return PretrainModel(backbone, target)
