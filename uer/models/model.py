"""Assemble embedding + encoder (the backbone) and a target into a model.

The builders take each part's schema instance (or a config node / plain dict with
``type``, e.g. what a checkpoint recorded: :meth:`uer.registry.Registry.build_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from uer.errors import UerError
from uer.models.compat import check_model
from uer.models.decoders import DECODERS, DecoderState
from uer.models.embeddings import EMBEDDINGS
from uer.models.encoders import ENCODERS
from uer.models.layers import init_bert_weights
from uer.models.targets import TARGETS, ModelDims, Stats


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


class Seq2seqModel(nn.Module):
    """Embedding + encoder (the backbone) + decoder + ``target=seq2seq``.

    ``forward(batch)``: ``src``/``seg`` (the source, padding id 0 / segment 0), ``tgt_in`` (the decoder's
    input, starting with :attr:`decoder_start_id`) and ``tgt_out`` (the labels, 0 = padding) -> token-level
    cross-entropy.  Generation (:mod:`uer.models.generation`) runs :meth:`start_generation` once, then
    :meth:`step` a token at a time, :meth:`reorder` selecting rows between steps (beam search).
    """

    def __init__(self, backbone: Backbone, decoder: nn.Module, target: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.target = target

    @property
    def decoder_start_id(self) -> int:
        if self.decoder.start_id is None:
            raise UerError("decoder.start_id is not set; set decoder.start_id= (the token the decoder's input "
                           "starts with)")
        return self.decoder.start_id

    @property
    def max_target_positions(self) -> Optional[int]:
        """The longest target the decoder can read (its position embedding); None: unlimited (T5)."""
        return self.decoder.max_positions

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        memory = self.backbone(batch["src"], batch["seg"])
        hidden = self.decoder(batch["tgt_in"], memory, batch["seg"])
        loss, stats = self.target(hidden, batch)
        return ModelOutput(loss, stats)

    def logits(self, src: torch.Tensor, seg: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced vocabulary logits (B, L_tgt, V)."""
        return self.target.logits(self.decoder(tgt_in, self.backbone(src, seg), seg))

    def start_generation(self, src: torch.Tensor, seg: torch.Tensor) -> DecoderState:
        """Encode ``src`` once; the state :meth:`step` and :meth:`reorder` work on."""
        return self.decoder.start(self.backbone(src, seg), seg)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Logits (N, V), float32, of the token after ``tokens`` (N,), the last of each row."""
        return self.target.step_logits(self.decoder.step(tokens, state)).float()

    def reorder(self, state: DecoderState, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) of the state, in that order."""
        state.reorder(index)


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
                tokens: Optional[Sequence[str]] = None, decoder_cfg=None) -> nn.Module:
    """Build a pre-training model (a :class:`Seq2seqModel` with ``decoder_cfg``).  The target's activation and
    LayerNorm (epsilon, formula) are the encoder's (the embedding's LayerNorm formula for encoders without a
    LayerNorm)."""
    embedding_cfg, encoder_cfg = EMBEDDINGS.build_config(embedding_cfg), ENCODERS.build_config(encoder_cfg)
    target_cfg = TARGETS.build_config(target_cfg)
    decoder_cfg = DECODERS.build_config(decoder_cfg) if decoder_cfg is not None else None
    check_model(embedding_cfg, encoder_cfg, target_cfg, decoder_cfg)
    backbone = build_backbone(embedding_cfg, encoder_cfg, vocab_size, tokens=tokens)
    word_embedding = backbone.embedding.word_embedding
    decoder = None
    if decoder_cfg is not None:
        decoder_embedding = EMBEDDINGS.lookup(embedding_cfg.type)(embedding_cfg, vocab_size, tokens)
        if decoder_cfg.shared_embedding:
            decoder_embedding.word_embedding = word_embedding
        decoder = DECODERS.lookup(decoder_cfg.type)(decoder_cfg, decoder_embedding)
        decoder.apply(init_bert_weights)
        word_embedding = decoder_embedding.word_embedding
    dims = ModelDims(
        vocab_size=vocab_size,
        emb_size=embedding_cfg.emb_size,
        hidden_size=encoder_cfg.hidden_size,
        hidden_act=getattr(encoder_cfg, "hidden_act", "gelu"),
        layernorm_eps=getattr(encoder_cfg, "layernorm_eps", 1e-6),
        layernorm=getattr(encoder_cfg, "layernorm", embedding_cfg.layernorm),
    )
    target = TARGETS.lookup(target_cfg.type)(target_cfg, dims, word_embedding)
    target.apply(init_bert_weights)
    return PretrainModel(backbone, target) if decoder is None else Seq2seqModel(backbone, decoder, target)
