"""Character sub-encoders: a word's vector composed from its characters (``embedding.subencoder``).

The original UER-py (until September 2020) could add to each token's embedding a vector its
*sub-encoder* computed from the token's characters (``--subword_type char --subencoder
avg|lstm|gru|cnn``), which gives words of a word-level vocabulary (``tokenizer=space``) what
they share with other words written with the same characters.  Here, as there, that vector is
added to the embedding layer's output; its width is ``emb_size``.

Differences from the original, on purpose:

* The character vocabulary is derived from the word vocabulary (every character of every token,
  in vocabulary order; ``[CLS]``-style tokens are one symbol, a WordPiece ``##`` prefix is not a
  character), so no ``--sub_vocab_path`` file exists to get out of step with the model: the
  checkpoint's own vocabulary rebuilds it.
* A word is read over its own characters only.  The original padded every word of a batch to the
  batch's longest one and averaged (or max-pooled) over the padding too, so a word's vector
  depended on the other words in its batch.
* Each distinct token of a batch is encoded once.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uer.errors import UerError

SUBENCODERS = ("none", "avg", "lstm", "gru", "cnn")
WORDPIECE_CONTINUATION = "##"


def token_characters(token: str) -> list[str]:
    """The symbols a token is written with: ``[CLS]``-style tokens are one symbol; ``##`` marks no character."""
    if len(token) > 2 and token.startswith("[") and token.endswith("]"):
        return [token]
    if len(token) > len(WORDPIECE_CONTINUATION) and token.startswith(WORDPIECE_CONTINUATION):
        token = token[len(WORDPIECE_CONTINUATION):]
    return list(token)


def spellings(tokens: Sequence[str]) -> list[list[str]]:
    """Each token's symbols; id 0 of the word vocabulary ([PAD]) has none."""
    return [[] if index == 0 else token_characters(token) for index, token in enumerate(tokens)]


def character_vocabulary(tokens: Sequence[str]) -> dict[str, int]:
    """``symbol -> id`` over every symbol of ``tokens``, in the order they first appear; id 0 is padding."""
    character_ids: dict[str, int] = {}
    for symbols in spellings(tokens):
        for symbol in symbols:
            character_ids.setdefault(symbol, len(character_ids) + 1)
    return character_ids


def character_table(tokens: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(ids, lengths, characters)``: row i of ``ids`` holds the character ids of token i (1-based,
    0 = padding), ``lengths[i]`` how many; ``characters`` is the size of the character vocabulary
    (padding included)."""
    spelled, character_ids = spellings(tokens), character_vocabulary(tokens)
    width = max((len(symbols) for symbols in spelled), default=0) or 1
    ids = torch.zeros(len(tokens), width, dtype=torch.long)
    for row, symbols in enumerate(spelled):
        ids[row, :len(symbols)] = torch.tensor([character_ids[symbol] for symbol in symbols], dtype=torch.long)
    lengths = torch.tensor([len(symbols) for symbols in spelled], dtype=torch.long)
    return ids, lengths, len(character_ids) + 1


def stored_subencoder(payload: dict | None) -> str:
    """The sub-encoder a checkpoint payload's config records (``none`` for an original file or an older checkpoint)."""
    return (((payload or {}).get("config") or {}).get("embedding") or {}).get("subencoder", "none")


def check_subencoder(name: str) -> None:
    if name not in SUBENCODERS:
        raise UerError(f"embedding.subencoder={name} is not a sub-encoder; choose one of: {', '.join(SUBENCODERS)}")


class Subencoder(nn.Module):
    """Token ids (any shape) -> (..., emb_size): each token's vector from its characters.

    Subclasses define :meth:`encode`: ``(characters (N, C, emb), mask (N, C))`` -> ``(N, emb)``.
    """

    def __init__(self, tokens: Sequence[str], emb_size: int):
        super().__init__()
        ids, lengths, characters = character_table(tokens)
        # Derived from the vocabulary at every build, so not part of the saved state.
        self.register_buffer("character_ids", ids, persistent=False)
        self.register_buffer("character_counts", lengths, persistent=False)
        self.embedding_layer = nn.Embedding(characters, emb_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        words, where = torch.unique(src, return_inverse=True)
        counts = self.character_counts[words]
        width = max(int(counts.max()), 1)
        characters = self.character_ids[words, :width]
        mask = torch.arange(width, device=src.device) < counts.unsqueeze(1)
        # A token without characters ([PAD]) gets zeros: every encode() pools over the mask alone.
        return self.encode(self.embedding_layer(characters), mask)[where]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(2).to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AvgSubencoder(Subencoder):
    """The mean of the characters' embeddings."""

    def encode(self, characters: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(characters, mask)


class RnnSubencoder(Subencoder):
    """A left-to-right LSTM or GRU over the characters; the mean of its outputs."""

    def __init__(self, tokens: Sequence[str], emb_size: int, cell: type[nn.RNNBase], layers_num: int,
                 dropout: float):
        super().__init__(tokens, emb_size)
        self.rnn = cell(emb_size, emb_size, num_layers=layers_num, dropout=dropout if layers_num > 1 else 0.0,
                        batch_first=True)

    def encode(self, characters: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(characters)  # padding follows the characters: it cannot change their outputs
        return masked_mean(output, mask)


class CnnSubencoder(Subencoder):
    """A convolution over the characters (kernel_size wide, zeros before the first), ReLU, max over them."""

    def __init__(self, tokens: Sequence[str], emb_size: int, kernel_size: int):
        super().__init__(tokens, emb_size)
        self.kernel_size = kernel_size
        self.cnn = nn.Conv1d(emb_size, emb_size, kernel_size)

    def encode(self, characters: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        padded = F.pad(characters.transpose(1, 2), (self.kernel_size - 1, 0))
        output = F.relu(self.cnn(padded))  # (N, emb, C); >= 0, so zeroing the padding keeps the max
        return (output * mask.unsqueeze(1).to(output.dtype)).amax(2)


def build_subencoder(cfg, tokens: Sequence[str] | None) -> Subencoder | None:
    """The sub-encoder ``embedding.subencoder`` names (None for ``none``), over ``tokens``' characters."""
    name, layers_num, kernel_size = cfg.subencoder, cfg.sub_layers_num, cfg.kernel_size
    check_subencoder(name)
    if name == "none":
        return None
    if tokens is None:
        raise UerError(f"embedding.subencoder={name} reads each token's characters, so the model must be built "
                       "with its vocabulary's tokens")
    if name == "avg":
        return AvgSubencoder(tokens, cfg.emb_size)
    if name == "cnn":
        return CnnSubencoder(tokens, cfg.emb_size, kernel_size)
    cell = nn.LSTM if name == "lstm" else nn.GRU
    return RnnSubencoder(tokens, cfg.emb_size, cell, layers_num, cfg.dropout)
