"""A Hugging Face model directory read as this project's checkpoint payload.

A directory as ``save_pretrained`` writes it -- ``config.json``, ``model.safetensors`` or
``pytorch_model.bin`` (or their sharded ``*.index.json``), tokenizer files -- is what users
hold.  :func:`read_hf_directory` turns it into the payload a uer checkpoint gives
(:mod:`uer.io.checkpoint`), so ``pretrained_model_path=DIR`` and the tools need no other flag:

* the weights, in this project's names, through the family ``config.json``'s ``model_type``
  names (:mod:`uer.io.hf_families`);
* the model config nodes (``model``, ``embedding``, ``encoder``, ``target`` when the file holds
  a head uer has) from ``config.json`` and the weights' shapes, and an ``hf`` record of the
  family and its ``config.json``, so that converting back gives the same family;
* an encoder-decoder family (T5, BART: ``SEQ2SEQ_FAMILIES``) gives the ``decoder`` node too, its
  start id from ``decoder_start_token_id`` (:func:`read_seq2seq_directory`, which ``tool=convert``
  reads with as well);
* the tokenizer: ``tokenizer.json`` -> ``tokenizer=hf`` (its roles from the directory's
  ``tokenizer_config.json`` / ``special_tokens_map.json``); else ``vocab.txt`` ->
  ``tokenizer=bert`` with ``do_lower_case`` from ``tokenizer_config.json``.  A padding token
  that is not id 0 in ``tokenizer.json`` (RoBERTa) is swapped with id 0 in the tokenizer and in
  the weights alike (:func:`uer.io.hf_families.swap_vocab_rows`).

A process reads a directory's weights once while its files stay as they are (a run's checks and its loading
share that read: :func:`read_hf_directory`).

A directory without ``config.json``, weights of another family than it says, a tokenizer
whose vocabulary does not match the word embedding, or a family uer cannot build is one
:class:`UerError` line naming the file and what to do.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from uer.errors import UerError
from uer.io.checkpoint import FORMAT, VERSION
from uer.io.hf_families import (
    SEQ2SEQ_FAMILIES,
    TARGET_PARTS,
    WORD,
    architecture,
    family,
    hf_to_uer,
    model_nodes,
    seq2seq_hf_to_uer,
    swap_vocab_rows,
)
from uer.io.hf_format import HF_CONFIG, HF_WEIGHT_FILES, hf_weight_file, load_hf_weights, read_json_beside
from uer.io.uer_names import from_uer_state_dict
from uer.tokenizers import build_tokenizer, tokenizer_state
from uer.tokenizers.hf import TOKENIZER_FILE, swap_pad

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
SAVE_TOKENIZER = "AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)"
# What a directory's model is when config.json does not say: the settings transformers' BERT uses.
FALLBACK = {"heads_num": None, "heads_from": HF_CONFIG, "layernorm": "standard", "layers_num": None}


def is_hf_directory(path) -> bool:
    """Whether ``path`` is a directory a Hugging Face model may be read from (config.json or weights in it)."""
    path = Path(path)
    return path.is_dir() and ((path / HF_CONFIG).is_file() or any((path / name).is_file() for name in HF_WEIGHT_FILES))


def hf_record(model_type: str, config: dict) -> dict:
    """What a checkpoint records of the Hugging Face model it came from (see ``uer.io.hf_families.config_json``)."""
    return {"model_type": model_type, "config": config}


# The last directory read: (its key, see _files_key; its payload).  A run reads the directory it starts from in the
# launching process's checks (uer.stages.common.starting_checkpoint) and again where it loads the weights
# (uer.finetuning.setup, uer.stages.pretrain); the later reads are this entry unless a file changed in between.
# One entry, the directory a run starts from, kept while the process lives.
_last_read: list = [None, None]


def read_hf_directory(path) -> dict:
    """The checkpoint payload (format ``uer-checkpoint``) of the Hugging Face model directory ``path``; its weights
    are read once per process while its files stay as they are (each caller gets its own dicts, the tensors
    shared: they are copied into a model, never changed)."""
    directory = Path(path)
    key = _files_key(directory)
    if _last_read[0] != key:
        _last_read[:] = [None, None]  # a failed read keeps nothing
        _last_read[:] = [key, _read_directory(directory)]
    payload = _last_read[1]
    return {name: dict(value) if name == "model" else copy.deepcopy(value) for name, value in payload.items()}


def _files_key(directory: Path) -> tuple:
    """The resolved ``directory`` and the (name, size, mtime_ns) of each file in it: equal while nothing changed."""
    files = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file():
            stat = entry.stat()
            files.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return str(directory.resolve()), tuple(files)


def _read_directory(directory: Path) -> dict:
    """:func:`read_hf_directory` without the cache."""
    config, config_path = read_json_beside(directory, HF_CONFIG)
    if config is None:
        raise UerError(f"{directory} has no {HF_CONFIG}, so its family and sizes are unknown; give the directory "
                       "save_pretrained wrote (it writes config.json), or convert a BERT weights file with "
                       "tool=convert tool.input_format=hf")
    if config.get("model_type") in SEQ2SEQ_FAMILIES:
        uer, nodes, tokenizer, tokenizer_config, _, record = read_seq2seq_directory(directory, config, config_path)
        return _payload(uer, seq2seq_config(nodes, tokenizer_config, record), tokenizer, tokenizer_config)
    fam = family(config.get("model_type"), config_path)
    weights = hf_weight_file(directory)
    state = load_hf_weights(directory)
    uer, target, unused = hf_to_uer(fam, state, config, str(weights), config_path)
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        logger.warning("%s: not used (no place in uer's %s): %s", weights, fam.title, shown)
    tokenizer, tokenizer_config = directory_tokenizer(directory)
    rows = int(uer[WORD].size(0))
    if len(tokenizer.vocab) != rows:
        raise UerError(f"{tokenizer.vocab.path} has {len(tokenizer.vocab)} tokens but {weights} has {rows} word "
                       f"embedding rows (config.json vocab_size {config.get('vocab_size')}): they are not one model's; "
                       "save the model with the tokenizer it was trained with (after model.resize_token_embeddings("
                       "len(tokenizer)) if tokens were added)")
    uer = swap_vocab_rows(uer, getattr(tokenizer, "file_pad_id", 0))
    record = hf_record(fam.model_type, config)
    hints = {**fam.hints(config, config_path), "target": target, "hf": record}
    arch = architecture(uer, str(weights), hints, FALLBACK)
    # A bare model keeps its pooler (tool=convert keeps it too, so that converting back loses nothing); a model
    # with a head keeps what its target uses, so that it loads as strictly as a checkpoint of that target.
    kept = {"backbone", *TARGET_PARTS[target]} if target else {"backbone", "pooler"}
    dropped = [key for key in uer if key.startswith("target.") and not _in_parts(key, kept)]
    if dropped:
        logger.info("%s: %s not used by target %s", weights, ", ".join(sorted(dropped)), target)
    uer = {key: tensor for key, tensor in uer.items() if key not in dropped}
    config_nodes = {**model_nodes(arch), "tokenizer": tokenizer_config, "hf": record}
    return _payload(uer, config_nodes, tokenizer, tokenizer_config)


def _payload(uer: dict, config: dict, tokenizer, tokenizer_config: dict) -> dict:
    """The checkpoint payload of weights ``uer`` (UER names) with their config nodes and tokenizer."""
    return {"format": FORMAT, "version": VERSION, "model": from_uer_state_dict(uer), "config": config,
            "tokenizer": tokenizer_state(tokenizer, tokenizer_config), "vocab": tokenizer.identity(), "trainer": None}


def read_seq2seq_directory(directory: Path, config: dict, config_path) -> tuple:
    """``(UER state dict, config nodes, tokenizer, its config node, weights file, hf record)`` of an encoder-decoder
    directory: padding at id 0 in the weights and the decoder's start id alike."""
    weights = hf_weight_file(directory)
    fam = SEQ2SEQ_FAMILIES[config["model_type"]]
    uer, nodes = seq2seq_hf_to_uer(fam, load_hf_weights(directory), config, str(weights), config_path)
    tokenizer, tokenizer_config = directory_tokenizer(directory)
    rows = int(uer[WORD].size(0))
    if len(tokenizer.vocab) != rows:
        raise UerError(f"{tokenizer.vocab.path} has {len(tokenizer.vocab)} tokens but {weights} has {rows} word "
                       "embedding rows: they are not one model's; save the model with its tokenizer")
    pad = getattr(tokenizer, "file_pad_id", 0)
    nodes["decoder"]["start_id"] = swap_pad([nodes["decoder"]["start_id"]], pad)[0]
    return swap_vocab_rows(uer, pad), nodes, tokenizer, tokenizer_config, str(weights), hf_record(fam.model_type,
                                                                                                   config)


def seq2seq_config(nodes: dict, tokenizer_config: dict | None, hf: dict | None) -> dict:
    """A checkpoint's config of an encoder-decoder: its sizes (``model``), tokenizer and nodes, and the Hugging
    Face model it came from."""
    encoder = nodes["encoder"]
    sizes = {"emb_size": nodes["embedding"]["emb_size"], "max_seq_length": nodes["embedding"].get("max_seq_length",
                                                                                                  512),
             **{key: encoder[key] for key in ("hidden_size", "feedforward_size", "heads_num", "layers_num",
                                              "hidden_act", "layernorm", "dropout")}}
    return {"model": sizes, "tokenizer": tokenizer_config, **nodes, **({"hf": hf} if hf else {})}


POOLERS = ("target.nsp_linear_1.", "target.sop_linear_1.")


def _in_parts(key: str, parts: set[str]) -> bool:
    """Whether the UER head tensor ``key`` belongs to one of ``parts``."""
    if key.startswith(POOLERS):
        return "pooler" in parts
    for part, prefixes in (("mlm", ("target.mlm_", "target.layer_norm.")), ("nsp", ("target.nsp_",)),
                           ("sop", ("target.sop_",)), ("lm", ("target.output_layer.",))):
        if key.startswith(prefixes):
            return part in parts
    return False


def directory_tokenizer(directory: Path):
    """``(tokenizer, its config node)`` of a model directory: ``tokenizer.json``, else ``vocab.txt``."""
    if (directory / TOKENIZER_FILE).is_file():
        config = {"type": "hf", "tokenizer_path": str(directory)}
    elif (directory / VOCAB_FILE).is_file():
        settings, settings_path = read_json_beside(directory, TOKENIZER_CONFIG)
        lower = (settings or {}).get("do_lower_case", True)
        if not isinstance(lower, bool):
            raise UerError(f"{settings_path}: do_lower_case is {lower!r}, not true or false; fix it")
        config = {"type": "bert", "vocab_path": str(directory / VOCAB_FILE), "do_lower_case": lower,
                  "rules": "transformers"}
    else:
        found = ", ".join(sorted(p.name for p in directory.iterdir() if "token" in p.name or "vocab" in p.name
                                 or p.suffix == ".model")) or "no tokenizer files"
        raise UerError(f"{directory} has neither {TOKENIZER_FILE} nor {VOCAB_FILE} ({found}); uer reads a fast "
                       f"tokenizer or a WordPiece vocabulary: save one into the directory, e.g. {SAVE_TOKENIZER}")
    return build_tokenizer(config), config

