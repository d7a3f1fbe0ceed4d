"""The ``model`` node: the sizes embedding, encoder and target share (``size=`` presets fill it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from uer.config.fields import FRACTION, at_least, setting


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
