"""tool=generate: continue text with a left-to-right language model (``encoder=gpt target=lm``).

    python main.py stage=tool tool=generate tool.input_path=gpt.pt tool.text="这本书" tool.max_new_tokens=64

Prompts come from ``tool.text`` or the lines of ``tool.test_path``; each is encoded as
``[CLS] prompt`` (the way lm pre-training instances begin) and continued one token at a
time until ``[SEP]`` (not written), ``tool.max_new_tokens`` new tokens, or the model's
``max_seq_length`` positions.  Choosing the next token:

* ``tool.temperature=0``: greedy (the most likely token);
* else sample from softmax(logits / temperature), keeping only the ``tool.top_k`` most
  likely tokens (0 = no limit; ``top_k=1`` is greedy) and the smallest set of most likely
  tokens whose probabilities reach ``tool.top_p`` (1.0 = no limit); the generator is
  seeded with ``seed``, so a run is reproducible.

With ``tool.use_cache=true`` (default) each step encodes only the new token, reusing the
earlier positions' attention keys/values (``TransformerEncoder.forward_incremental``);
``false`` re-encodes the whole sequence every step (same tokens, much slower).  Output: one
line per prompt, the prompt followed by its continuation, at ``tool.output_path``
(default ``generated.txt`` in the run directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from uer.errors import UerError
from uer.models.generation import filter_logits, sample
from uer.runtime import autocast
from uer.config.fields import NON_NEGATIVE, at_least, Bounds, setting
from uer.tools import TOOLS, ModelToolConfig, TextInputs
from uer.tokenizers.detokenize import decode_ids
from uer.tools.model_loading import inputs, load_model, logger, output_file, write_text

Picker = Callable[[torch.Tensor], int]


def token_picker(temperature: float, top_k: int, top_p: float, generator: Optional[torch.Generator]) -> Picker:
    """A function logits (V,) -> next token id, as ``tool.temperature``/``top_k``/``top_p`` say."""
    if temperature < 0:
        raise UerError(f"tool.temperature={temperature} must be 0 (greedy) or more")
    if top_k < 0:
        raise UerError(f"tool.top_k={top_k} must be 0 (no limit) or more")
    if not 0 < top_p <= 1:
        raise UerError(f"tool.top_p={top_p} must lie in (0, 1]")

    def pick(logits: torch.Tensor) -> int:
        if temperature == 0:
            return int(logits.argmax())
        return int(sample(filter_logits(logits[None], temperature, top_k, top_p), generator))

    return pick


def generate_ids(backbone, lm_head, prompt: list[int], max_new_tokens: int, pick: Picker, *, use_cache: bool = True,
                 stop_id: Optional[int] = None, max_length: Optional[int]) -> list[int]:
    """The ids generated after ``prompt`` (``stop_id`` ends it and is not returned).

    ``backbone``: embedding + causal encoder; ``lm_head``: hidden (N, H) -> logits (N, V).
    A next token needs the hidden state of the last position, so generation also ends once
    the sequence fills ``max_length`` positions (None: a model without a position embedding,
    which reads any length).
    """
    device = next(backbone.parameters()).device
    src = torch.tensor([prompt], dtype=torch.long, device=device)
    longest = len(prompt) + max_new_tokens if max_length is None else min(len(prompt) + max_new_tokens, max_length)
    cache = backbone.encoder.new_cache(longest) if use_cache else None
    new: list[int] = []
    with torch.no_grad():
        while len(new) < max_new_tokens and (max_length is None or src.size(1) <= max_length):
            seg = torch.ones_like(src)
            if cache is None:
                hidden = backbone(src, seg)[:, -1]
            else:  # the embedding is position-wise: embed the sequence, encode only what the cache lacks
                emb = backbone.embedding(src, seg)[:, cache.length:]
                hidden = backbone.encoder.forward_incremental(emb, cache)[:, -1]
            token = pick(lm_head(hidden)[0])
            if token == stop_id:
                break
            new.append(token)
            src = torch.cat([src, src.new_tensor([[token]])], dim=1)
    return new


@dataclass
class GenerateConfig(TextInputs, ModelToolConfig):
    """``tool=generate``."""

    max_new_tokens: int = setting(64, "tokens generated after each prompt (fewer if the model's positions end)",
                                  bounds=at_least(1))
    temperature: float = setting(1.0, "divides the logits; 0 = greedy", bounds=NON_NEGATIVE)
    top_k: int = setting(40, "sample among the k most likely tokens; 0 = all", bounds=NON_NEGATIVE)
    top_p: float = setting(1.0, "sample among the most likely tokens whose probabilities sum to p",
                           bounds=Bounds(low=0, high=1, low_open=True))
    use_cache: bool = setting(True, "keep earlier positions' keys and values instead of re-encoding the prompt")


@TOOLS.register("generate", config=GenerateConfig)
def generate(cfg) -> str:
    t = cfg.tool
    if t.max_new_tokens < 1:
        raise UerError(f"tool.max_new_tokens={t.max_new_tokens} must be at least 1")
    prompts = inputs(cfg)
    loaded = load_model(cfg)
    target = loaded.require_target(("lm",), "generate")  # target=lm is only built on left-to-right encoders
    if t.use_cache and not hasattr(loaded.backbone.encoder, "forward_incremental"):
        raise UerError(f"encoder {loaded.config['encoder'].get('type')} of {loaded.path} has no key/value cache; "
                       "add tool.use_cache=false")
    generator = torch.Generator(device=loaded.device).manual_seed(cfg.seed)
    pick = token_picker(t.temperature, t.top_k, t.top_p, generator)
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    positions = loaded.max_length
    texts = []
    for where, prompt in prompts:
        ids = [vocab.cls_id, *tokenizer.encode(prompt)]
        if positions is not None and len(ids) > positions:
            raise UerError(f"{where}: the prompt has {len(ids)} tokens with [CLS] but the model has {positions} "
                           "positions; shorten it")
        with autocast(loaded.device, cfg.hardware.precision):
            new = generate_ids(loaded.backbone, target.output_layer, ids, t.max_new_tokens, pick,
                               use_cache=t.use_cache, stop_id=vocab.sep_id, max_length=positions)
        text = decode_ids(tokenizer, new, prompt)
        logger.info("%s: %d new tokens: %s", where, len(new), text)
        texts.append(text)
    out = output_file(cfg, "generated.txt")
    write_text(out, "".join(text.replace("\n", " ") + "\n" for text in texts))
    logger.info("wrote %d generated texts to %s", len(texts), out)
    return str(out)
