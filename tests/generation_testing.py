"""transformers' encoder-decoders behind uer's generation protocol (uer/models/generation.py), and its generate().

Tiny random BART and T5 models (seeded, no downloads); :class:`HFSeq2Seq` drives one through
``start_generation`` / ``step`` / ``reorder`` with transformers' own key/value cache, so uer's
search and transformers' ``generate()`` see the same model and the same numbers; the
benchmark (bench/generation_speed.py) uses them too.
"""

from __future__ import annotations

import torch
from transformers import (BartConfig, BartForConditionalGeneration, GenerationConfig as HFGenerationConfig,
                          T5Config, T5ForConditionalGeneration)
from transformers.modeling_outputs import BaseModelOutput

from uer.models.generation import GenerationConfig

PAD = 0  # the protocol's padding id, which both models use


def tiny_bart(vocab: int = 40, width: int = 16, layers: int = 2, heads: int = 2, end_bias: float = 1.0,
              seed: int = 0) -> BartForConditionalGeneration:
    """A random BART (pad 0, start and end 2, nothing forced) whose weights are large enough that what it
    generates depends on the input, and ``end_bias`` on the end token's logit so that rows end at varied steps."""
    torch.manual_seed(seed)
    config = BartConfig(vocab_size=vocab, d_model=width, encoder_layers=layers, decoder_layers=layers,
                        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=4 * width,
                        decoder_ffn_dim=4 * width, max_position_embeddings=64, pad_token_id=PAD, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None, forced_eos_token_id=None,
                        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, init_std=0.3)
    model = BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, config.eos_token_id] = end_bias
    return model


def tiny_t5(vocab: int = 40, width: int = 16, layers: int = 2, heads: int = 2, end_bias: float = 4.0,
            seed: int = 0) -> T5ForConditionalGeneration:
    """A random T5 (v1.1 layout: gated GELU, untied head; pad and start 0, end 1) whose head has a bias,
    ``end_bias`` on the end token (the rest 0), so that rows end at varied steps."""
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, d_model=width, d_kv=width // heads, d_ff=4 * width, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, relative_attention_num_buckets=8,
                      feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                      pad_token_id=PAD, eos_token_id=1, decoder_start_token_id=PAD)
    model = T5ForConditionalGeneration(config).eval()
    head = torch.nn.Linear(width, vocab)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[config.eos_token_id] = end_bias
    model.lm_head = head
    return model


class HFSeq2Seq:
    """A transformers encoder-decoder as uer's generation protocol: the encoder runs once, each step feeds one
    token per row through the full model with its ``past_key_values`` (self-attention grows, cross-attention
    keys are computed at the first step and kept)."""

    def __init__(self, model):
        self.model = model
        self.decoder_start_id = model.config.decoder_start_token_id
        positions = getattr(model.config, "max_position_embeddings", None)  # T5's relative positions: no limit
        self.max_target_positions = positions

    def start_generation(self, src: torch.Tensor, seg: torch.Tensor) -> dict:
        mask = src.ne(PAD).long()
        encoded = self.model.get_encoder()(input_ids=src, attention_mask=mask)
        return {"encoded": encoded.last_hidden_state, "mask": mask, "past": None}

    def step(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=state["encoded"]),
                         attention_mask=state["mask"], decoder_input_ids=tokens[:, None],
                         cache=state["past"], use_cache=True)
        state["past"] = out.past_key_values
        return out.logits[:, -1]

    def reorder(self, state: dict, index: torch.Tensor) -> None:
        state["encoded"] = state["encoded"].index_select(0, index)
        state["mask"] = state["mask"].index_select(0, index)
        if state["past"] is not None:
            state["past"].reorder_cache(index)


def hf_generate(model, src: torch.Tensor, config: GenerationConfig, eos_id: int) -> list[list[int]]:
    """transformers' ``generate()`` with the same settings, each row cut as uer returns it (after the start
    token, before the end token)."""
    settings = HFGenerationConfig(
        max_new_tokens=config.max_new_tokens, min_new_tokens=config.min_new_tokens, num_beams=config.num_beams,
        length_penalty=config.length_penalty, no_repeat_ngram_size=config.no_repeat_ngram_size,
        early_stopping={"true": True, "false": False}.get(config.stopping, config.stopping), do_sample=False,
        eos_token_id=eos_id, pad_token_id=PAD, decoder_start_token_id=model.config.decoder_start_token_id,
        bos_token_id=None, forced_bos_token_id=None, forced_eos_token_id=None)
    with torch.no_grad():
        out = model.generate(input_ids=src, attention_mask=src.ne(PAD).long(), generation_config=settings)
    rows = []
    for ids in out[:, 1:].tolist():
        rows.append(ids[:ids.index(eos_id)] if eos_id in ids else ids)
    return rows


def ragged_batch(lengths: list[int], vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, seg) of random rows of these lengths (ids from 3, so no special token), padded with 0."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        src[row, :length] = torch.randint(3, vocab, (length,), generator=generator)
    return src, src.ne(PAD).long()
