"""``tool=convert`` for encoder-decoder models: a Hugging Face T5 or BART directory <-> a uer checkpoint with a
decoder, through the tables of :mod:`uer.io.hf_families` (``SEQ2SEQ_FAMILIES``).

A directory whose ``config.json`` names an encoder-decoder family, or a checkpoint that records a ``decoder``,
is read here; other models go the encoder-only way (:mod:`uer.tools.convert`).  A tokenizer whose padding is not
id 0 in its files (BART's ``<pad>`` = 1) is used with ids 0 and ``pad_id`` swapped, and so are the rows of every
tensor indexed by token and the decoder's start id, as for the encoder-only families.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from uer.errors import UerError
from uer.io.checkpoint import checkpoint_tokenizer, load_checkpoint, save_checkpoint
from uer.io.hf_directory import read_seq2seq_directory, seq2seq_config
from uer.io.hf_families import SEQ2SEQ_FAMILIES, NotExpressible, seq2seq_uer_to_hf, swap_vocab_rows
from uer.io.hf_format import HF_CONFIG, fast_tokenizer_files, read_json_beside, save_hf_directory, tokenizer_files
from uer.io.uer_format import from_uer_state_dict, to_uer_state_dict
from uer.models import build_model
from uer.tokenizers.hf import swap_pad

log = logging.getLogger("uer.tools")

NODES = ("embedding", "encoder", "decoder", "target")
# config.json keys of the file a model came from that uer does not decide: the ids of token roles.
CARRIED = ("bos_token_id", "eos_token_id", "forced_bos_token_id", "forced_eos_token_id")


@dataclass
class Seq2seqLoaded:
    """An encoder-decoder model in UER names (padding at id 0), its config nodes, tokenizer and origin."""

    state: dict
    nodes: dict
    tokenizer: object
    tokenizer_config: Optional[dict]
    source: str
    hf: Optional[dict] = None


def read_seq2seq(fmt: str, path: Path) -> Optional[Seq2seqLoaded]:
    """The encoder-decoder model at ``path`` (format ``fmt``); None when it is not one."""
    if fmt == "hf" and path.is_dir():
        config, config_path = read_json_beside(path, HF_CONFIG)
        if not isinstance(config, dict) or config.get("model_type") not in SEQ2SEQ_FAMILIES:
            return None  # the encoder-only way reads it, and says what is wrong with it
        return Seq2seqLoaded(*read_seq2seq_directory(path, config, config_path))
    if fmt == "uer_ckpt" and path.is_file():
        try:
            payload = load_checkpoint(path)
        except UerError:
            return None  # the encoder-only way reads it again, and says what it is instead
        config = payload.get("config") or {}
        if config.get("decoder") is None:
            return None
        return Seq2seqLoaded(to_uer_state_dict(payload["model"]), {node: dict(config[node]) for node in NODES},
                             checkpoint_tokenizer(payload, str(path)), config.get("tokenizer"), str(path),
                             config.get("hf"))
    return None


def write_seq2seq(loaded: Seq2seqLoaded, fmt: str, path: Path, hf_model_type: Optional[str]) -> None:
    """Write ``loaded`` as a uer checkpoint or a Hugging Face directory (checked before anything is written)."""
    if fmt == "uer_ckpt":
        _write_checkpoint(loaded, path)
    elif fmt == "hf":
        _write_hf(loaded, path, hf_model_type)
    else:
        raise UerError(f"{loaded.source} is an encoder-decoder model, which tool.output_format={fmt} has no place for; "
                       "write tool.output_format=uer_ckpt or hf (T5, BART)")


def _write_checkpoint(loaded: Seq2seqLoaded, path: Path) -> None:
    nodes = loaded.nodes
    tokens = loaded.tokenizer.vocab.tokens
    model = build_model(nodes["embedding"], nodes["encoder"], nodes["target"], len(tokens), tokens=tokens,
                        decoder_cfg=nodes["decoder"])
    ours = from_uer_state_dict(loaded.state)
    expected = model.state_dict()
    missing = [key for key in expected if key not in ours]
    if missing:
        raise UerError(f"{loaded.source} has no weights for {missing[0]} (in our names)")
    model.load_state_dict({key: ours[key] for key in expected})
    kept = {key: tensor for key, tensor in ours.items() if key not in expected}  # BART's unused position rows
    config = seq2seq_config(nodes, loaded.tokenizer_config, loaded.hf)
    save_checkpoint(path, model_state={**model.state_dict(), **kept}, config=config, tokenizer=loaded.tokenizer,
                    trainer=None)


def _family(loaded: Seq2seqLoaded, chosen: Optional[str]):
    """The family ``chosen``, else the one the model came from, else by its shape (relative positions: T5)."""
    if chosen:
        if chosen not in SEQ2SEQ_FAMILIES:
            raise UerError(f"tool.hf_model_type={chosen} cannot hold an encoder-decoder model; choose one of "
                           f"{', '.join(SEQ2SEQ_FAMILIES)}")
        return SEQ2SEQ_FAMILIES[chosen]
    recorded = (loaded.hf or {}).get("model_type")
    if recorded in SEQ2SEQ_FAMILIES:
        return SEQ2SEQ_FAMILIES[recorded]
    return SEQ2SEQ_FAMILIES["t5" if loaded.nodes["encoder"].get("relative_position_buckets") else "bart"]


def _generation_ids(tokenizer, pad: int) -> dict:
    """The file ids of the tokens uer's generation uses: it stops at the tokenizer's end of text (eos_token, else
    [SEP]) and forces no token.  Written out, so that transformers' ``generate()`` on the directory does not take
    the family's defaults instead (BART's end id 2, also forced at the last step; T5's 1), which may be other
    tokens of this vocabulary.  A token the tokenizer lacks (T5 has no bos/[CLS]) is written as null."""
    bos, eos = (None if i is None else swap_pad([i], pad)[0] for i in (tokenizer.vocab.bos_id, tokenizer.vocab.eos_id))
    return {"bos_token_id": bos, "eos_token_id": eos, "forced_bos_token_id": None, "forced_eos_token_id": None}


def _write_hf(loaded: Seq2seqLoaded, path: Path, chosen: Optional[str]) -> None:
    if path.suffix:
        raise UerError(f"tool.output_path {path} must be a directory for an encoder-decoder model (config.json, "
                       "weights and tokenizer files)")
    fam = _family(loaded, chosen)
    tokenizer = loaded.tokenizer
    pad = getattr(tokenizer, "file_pad_id", 0)
    nodes = {**loaded.nodes, "decoder": {**loaded.nodes["decoder"]}}
    nodes["decoder"]["start_id"] = swap_pad([nodes["decoder"]["start_id"]], pad)[0]
    try:
        state, config = seq2seq_uer_to_hf(fam, swap_vocab_rows(loaded.state, pad), nodes)
    except NotExpressible as err:
        raise UerError(f"{loaded.source}: {err}") from None
    config["pad_token_id"] = pad
    config.update(_generation_ids(tokenizer, pad))
    carried = (loaded.hf or {}).get("config") or {} if (loaded.hf or {}).get("model_type") == fam.model_type else {}
    config.update({key: carried[key] for key in CARRIED if key in carried})
    length = nodes["embedding"].get("max_seq_length") or 512
    if tokenizer.kind == "hf":
        texts = fast_tokenizer_files(tokenizer.exported_json(0), tokenizer.exported_roles, length,
                                     token_types=False)
    else:
        texts = tokenizer_files(list(tokenizer.vocab.tokens), tokenizer.lowercases, length, token_types=False)
    written = save_hf_directory(state, path, config, texts)
    log.info("wrote the Hugging Face model directory %s (%s): %s", path, config["architectures"][0], ", ".join(written))
