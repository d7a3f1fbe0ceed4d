"""tool=generate: continue text with a left-to-right language model (``encoder=gpt target=lm``), or write a
target for each source with an encoder-decoder (``decoder=transformer target=seq2seq``, pre-trained or
fine-tuned by ``task=text2text``).

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

An encoder-decoder checkpoint reads each input as a source, encoded ``[CLS] source [SEP]`` as
``task=text2text`` encodes it, and generates its target with the ``tool.generation`` settings
(:class:`~uer.models.generation.GenerationConfig`: greedy, beam search or sampling, over the
decoder's key/value cache), ``tool.batch_size`` sources at a time batched by length; each output
line is the generated target.  The language model's settings (``tool.max_new_tokens``,
``temperature``, ``top_k``, ``top_p``, ``use_cache``) do not apply to it, nor ``tool.generation``
and ``tool.batch_size`` to a language model: a changed one is refused, naming its counterpart.

    python main.py stage=tool tool=generate tool.input_path=t2t/best.pt tool.test_path=src.txt \\
        tool.generation.num_beams=4
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from uer.errors import UerError
from uer.models.generation import GenerationConfig, filter_logits, generate_rows, generation_config, sample
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
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # an encoder-decoder's settings
    batch_size: int = setting(32, "an encoder-decoder: sources generated for at a time (batched by length)",
                              bounds=at_least(1))


# The settings of one kind of model only, and what the other kind uses instead.
LM_SETTINGS = {"max_new_tokens": "tool.generation.max_new_tokens", "temperature": "tool.generation.do_sample=true "
               "tool.generation.temperature", "top_k": "tool.generation.top_k", "top_p": "tool.generation.top_p",
               "use_cache": "nothing (the decoder always keeps its keys and values)"}
SEQ2SEQ_SETTINGS = {"generation": "tool.max_new_tokens, tool.temperature, tool.top_k and tool.top_p",
                    "batch_size": "nothing (prompts are continued one at a time)"}


def refuse_changed(t, settings: dict[str, str], model: str) -> None:
    """A UerError for the first of ``settings`` that ``t`` (``cfg.tool``) sets to another than its default."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(GenerateConfig)}
    for key, instead in settings.items():
        value = generation_config(t[key]) if key == "generation" else t[key]
        if value != defaults[key]:
            raise UerError(f"tool.{key} does not apply to {model}; use {instead}")


@TOOLS.register("generate", config=GenerateConfig)
def generate(cfg) -> str:
    t = cfg.tool
    if t.max_new_tokens < 1:
        raise UerError(f"tool.max_new_tokens={t.max_new_tokens} must be at least 1")
    prompts = inputs(cfg)
    loaded = load_model(cfg)
    if loaded.seq2seq is not None:
        refuse_changed(t, LM_SETTINGS, f"the encoder-decoder {loaded.path}")
        return generate_targets(cfg, loaded, prompts)
    refuse_changed(t, SEQ2SEQ_SETTINGS, f"the language model {loaded.path} (an encoder-decoder's settings)")
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
        ids = [*tokenizer.framing.prefix, *tokenizer.encode(prompt)]  # [CLS] prompt; GPT-2: the prompt alone
        if not ids:
            raise UerError(f"{where}: the prompt has no tokens and the tokenizer starts a text with none; give a "
                           "prompt")
        if positions is not None and len(ids) > positions:
            raise UerError(f"{where}: the prompt has {len(ids)} tokens (with what the tokenizer starts a text with) "
                           f"but the model has {positions} positions; shorten it")
        with autocast(loaded.device, cfg.hardware.precision):
            new = generate_ids(loaded.backbone, target.output_layer, ids, t.max_new_tokens, pick,
                               use_cache=t.use_cache, stop_id=vocab.eos_id, max_length=positions)
        text = decode_ids(tokenizer, new, prompt)
        logger.info("%s: %d new tokens: %s", where, len(new), text)
        texts.append(text)
    out = output_file(cfg, "generated.txt")
    write_text(out, "".join(text.replace("\n", " ") + "\n" for text in texts))
    logger.info("wrote %d generated texts to %s", len(texts), out)
    return str(out)


def generate_targets(cfg, loaded, sources: list[tuple[str, str]]) -> str:
    """One generated target per source line of an encoder-decoder, in input order."""
    t = cfg.tool
    settings = generation_config(t.generation)
    tokenizer, vocab = loaded.tokenizer, loaded.tokenizer.vocab
    settings.check("tool.generation.", len(vocab))
    positions = loaded.max_length
    rows = []
    for where, source in sources:
        ids = tokenizer.framing.frame(tokenizer.encode(source))[0]  # [CLS] source [SEP]; T5: source </s>
        if positions is not None and len(ids) > positions:
            raise UerError(f"{where}: the source has {len(ids)} tokens with the tokenizer's special tokens but the "
                           f"model has {positions} positions; shorten it")
        rows.append(ids)
    with autocast(loaded.device, cfg.hardware.precision):
        generated = generate_rows(loaded.seq2seq, rows, [[1] * len(ids) for ids in rows], settings,
                                  eos_id=vocab.eos_id, batch_size=t.batch_size, device=loaded.device)
    texts = [decode_ids(tokenizer, ids) for ids in generated]
    for (where, _), text in zip(sources, texts):
        logger.info("%s: %s", where, text)
    out = output_file(cfg, "generated.txt")
    write_text(out, "".join(" ".join(text.splitlines()) + "\n" for text in texts))
    logger.info("wrote %d generated targets to %s", len(texts), out)
    return str(out)
