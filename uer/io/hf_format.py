"""Hugging Face BERT state dicts (``BertForPreTraining`` / ``BertModel``) <-> UER names, and the file handling
every Hugging Face family shares.

The BERT parameter table here is the one place that pairs UER's BERT names with Hugging
Face's and Google TensorFlow's (``uer/io/tf_format.py`` uses the same table; the Hugging Face
families, BERT's included, are declared in ``uer/io/hf_families.py``, whose RoBERTa, XLM-R and
ELECTRA tables are this one renamed), so every converter maps through the UER layout (see
shared FORMATS.md):

* One :class:`Param` per tensor: UER name, Hugging Face name, TF variable name, whether
  the TF ``kernel`` is stored transposed ``(in, out)``, and the part it belongs to:
  ``backbone`` (always present), ``pooler`` (BERT's pooler = UER ``target.nsp_linear_1``),
  ``mlm`` (the masked-LM head) and ``nsp`` (``cls.seq_relationship`` =
  ``target.nsp_linear_2``).  A head is either complete or absent.
* Segment embedding: UER has 3 rows (0 = padding, 1 = first, 2 = second segment), HF/TF
  ``token_type_embeddings`` has 2 (= UER rows 1 and 2).  Converting in, UER's padding row
  is zeros; converting out, it is dropped (it only ever reaches padded positions).  The
  Hugging Face families (:mod:`uer.io.hf_families`) keep a padding row that is not zeros, as
  a third token type; this table's converters (the TF layout's) drop it.
* The MLM output matrix: UER ``target.mlm_linear_2.weight`` is HF's
  ``cls.predictions.decoder.weight``; both are usually tied to the word embedding, and a
  file without the decoder weight means tied.  UER ``target.mlm_linear_2.bias`` is HF's
  ``cls.predictions.bias`` (also ``cls.predictions.decoder.bias``, the same tensor).
* ``BertModel`` files have no ``bert.`` prefix and no heads; ``BertForPreTraining`` (and
  ``BertForMaskedLM``) files have it.  Reading accepts both, plus the old ``LayerNorm``
  ``gamma``/``beta`` names; writing uses ``BertForPreTraining`` names when the model has an
  MLM or NSP head, ``BertModel`` names otherwise.

Files: ``.safetensors`` (recognised by content, whatever the suffix), torch ``.bin``
(``torch.load(weights_only=True)``), sharded ``*.index.json`` and a directory holding one
of ``model.safetensors``/``pytorch_model.bin`` (and their ``.index.json``).  Writes are
atomic (temporary file + rename).
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file, save_file

from uer.errors import UerError, reason
from uer.io.atomic import replacing

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

PARTS = ("backbone", "pooler", "mlm", "nsp")
SEGMENT = "embedding.segment_embedding.weight"
WORD = "embedding.word_embedding.weight"
DECODER = "target.mlm_linear_2.weight"
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")
HF_CONFIG = "config.json"


@dataclass(frozen=True)
class Param:
    uer: str
    hf: str
    tf: Optional[str]  # None: no variable of its own in Google's layout (tied decoder)
    part: str
    transpose: bool = False  # TF kernel is (in, out), torch Linear.weight is (out, in)


def _module(params: list, part: str, uer: str, hf: str, tf: str, kind: str) -> None:
    if kind == "embedding":
        params.append(Param(f"{uer}.weight", f"{hf}.weight", tf, part))
    elif kind == "linear":
        params.append(Param(f"{uer}.weight", f"{hf}.weight", f"{tf}/kernel", part, transpose=True))
        params.append(Param(f"{uer}.bias", f"{hf}.bias", f"{tf}/bias", part))
    elif kind == "layer_norm":
        params.append(Param(f"{uer}.gamma", f"{hf}.weight", f"{tf}/gamma", part))
        params.append(Param(f"{uer}.beta", f"{hf}.bias", f"{tf}/beta", part))
    else:  # pragma: no cover - table typo
        raise ValueError(kind)


def bert_params(layers_num: int) -> list[Param]:
    """Every BERT tensor, in a fixed order, with its name in the three layouts."""
    p: list[Param] = []
    _module(p, "backbone", "embedding.word_embedding", "bert.embeddings.word_embeddings",
            "bert/embeddings/word_embeddings", "embedding")
    _module(p, "backbone", "embedding.position_embedding", "bert.embeddings.position_embeddings",
            "bert/embeddings/position_embeddings", "embedding")
    p.append(Param(SEGMENT, "bert.embeddings.token_type_embeddings.weight", "bert/embeddings/token_type_embeddings",
                   "backbone"))
    _module(p, "backbone", "embedding.layer_norm", "bert.embeddings.LayerNorm", "bert/embeddings/LayerNorm",
            "layer_norm")
    for layer in range(layers_num):
        uer, hf, tf = f"encoder.transformer.{layer}", f"bert.encoder.layer.{layer}", f"bert/encoder/layer_{layer}"
        for index, name in enumerate(("query", "key", "value")):
            _module(p, "backbone", f"{uer}.self_attn.linear_layers.{index}", f"{hf}.attention.self.{name}",
                    f"{tf}/attention/self/{name}", "linear")
        _module(p, "backbone", f"{uer}.self_attn.final_linear", f"{hf}.attention.output.dense",
                f"{tf}/attention/output/dense", "linear")
        _module(p, "backbone", f"{uer}.layer_norm_1", f"{hf}.attention.output.LayerNorm",
                f"{tf}/attention/output/LayerNorm", "layer_norm")
        _module(p, "backbone", f"{uer}.feed_forward.linear_1", f"{hf}.intermediate.dense",
                f"{tf}/intermediate/dense", "linear")
        _module(p, "backbone", f"{uer}.feed_forward.linear_2", f"{hf}.output.dense", f"{tf}/output/dense", "linear")
        _module(p, "backbone", f"{uer}.layer_norm_2", f"{hf}.output.LayerNorm", f"{tf}/output/LayerNorm",
                "layer_norm")
    _module(p, "pooler", "target.nsp_linear_1", "bert.pooler.dense", "bert/pooler/dense", "linear")
    _module(p, "mlm", "target.mlm_linear_1", "cls.predictions.transform.dense", "cls/predictions/transform/dense",
            "linear")
    _module(p, "mlm", "target.layer_norm", "cls.predictions.transform.LayerNorm",
            "cls/predictions/transform/LayerNorm", "layer_norm")
    p.append(Param(DECODER, "cls.predictions.decoder.weight", None, "mlm"))
    p.append(Param("target.mlm_linear_2.bias", "cls.predictions.bias", "cls/predictions/output_bias", "mlm"))
    # Already (2, H) in TF: not transposed.
    p.append(Param("target.nsp_linear_2.weight", "cls.seq_relationship.weight", "cls/seq_relationship/output_weights",
                   "nsp"))
    p.append(Param("target.nsp_linear_2.bias", "cls.seq_relationship.bias", "cls/seq_relationship/output_bias", "nsp"))
    return p


_UER_LAYER = re.compile(r"^encoder\.transformer\.(\d+)\.")
LAYER_PATTERNS = {"hf": re.compile(r"^bert\.encoder\.layer\.(\d+)\."), "tf": re.compile(r"^bert/encoder/layer_(\d+)/"),
                  "uer": _UER_LAYER}
LAYOUT_NAMES = {"hf": "Hugging Face", "tf": "TensorFlow", "uer": "UER"}


def count_layers(names, layout: str, source: str) -> int:
    """Number of transformer layers named in ``names``; indices must be 0..N-1."""
    indices = {int(m.group(1)) for name in names if (m := LAYER_PATTERNS[layout].match(name))}
    if indices and indices != set(range(len(indices))):
        absent = min(set(range(max(indices) + 1)) - indices)
        raise UerError(f"{source}: transformer layer {absent} is missing (found layers {sorted(indices)})")
    return len(indices)


def to_uer(named: dict, layout: str, source: str, fetch: Callable = lambda t: t) -> tuple[StateDict, list[str]]:
    """``named`` (HF names, or TF names with ``fetch`` giving torch tensors) -> (UER state dict, unused names).

    Missing backbone tensors and half-present heads are a :class:`UerError` naming ``source``.
    """
    key = "hf" if layout == "hf" else "tf"
    layers = count_layers(named, layout, source)
    if not layers:
        raise UerError(f"{source} has no transformer layers ({LAYER_PATTERNS[layout].pattern[1:]}...)")
    params = bert_params(layers)
    uer: StateDict = {}
    used: set[str] = set()
    for part in PARTS:
        group = [p for p in params if p.part == part and p.uer != DECODER]  # the decoder: below
        present = [p for p in group if getattr(p, key) in named]
        if part != "backbone" and not present:
            continue
        absent = [p for p in group if getattr(p, key) not in named]
        if absent:
            what = "" if part == "backbone" else f" (the {part} head is incomplete)"
            raise UerError(f"{source} has no {getattr(absent[0], key)}{what}; it is not a complete BERT checkpoint")
        for p in group:
            name = getattr(p, key)
            tensor = fetch(name)
            if layout == "tf" and p.transpose:
                tensor = tensor.t().contiguous()
            if p.uer == SEGMENT:
                if tensor.dim() != 2 or tensor.size(0) != 2:
                    raise UerError(f"{source}: {name} has shape {tuple(tensor.shape)}; "
                                   "a BERT token type embedding has 2 rows (UER segments 1 and 2)")
                tensor = torch.cat([tensor.new_zeros(1, tensor.size(1)), tensor])
            uer[p.uer] = tensor
            used.add(name)
        if part == "mlm":
            decoder = "cls.predictions.decoder.weight"
            if layout == "hf" and decoder in named:
                uer[DECODER] = fetch(decoder)
                used.add(decoder)
            else:  # tied to the word embedding
                uer[DECODER] = uer[WORD]
    return uer, sorted(set(named) - used)


def from_uer(uer: StateDict, layout: str, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """UER state dict -> (tensors under HF or TF names, UER keys with no place there).

    TF tensors come back as torch tensors already transposed to TF's orientation.
    """
    check_bert_layout(uer, source, LAYOUT_NAMES[layout])
    key = "hf" if layout == "hf" else "tf"
    params = bert_params(count_layers(uer, "uer", source))
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for part in PARTS:
        group = [p for p in params if p.part == part]
        present = [p for p in group if p.uer in uer]
        if part != "backbone" and not present:
            continue
        absent = [p for p in group if p.uer not in uer]
        if absent:
            raise UerError(f"{source} has no {absent[0].uer}; the {part} part is incomplete")
        for p in group:
            tensor = uer[p.uer]
            used.add(p.uer)
            if p.uer == SEGMENT:
                if tensor.dim() != 2 or tensor.size(0) != 3:
                    raise UerError(f"{source}: {SEGMENT} has shape {tuple(tensor.shape)}; "
                                   "BERT's segment embedding has 3 rows (padding, first, second)")
                tensor = tensor[1:]
            if getattr(p, key) is None:  # TF: the decoder must be the word embedding
                if not torch.equal(tensor, uer[WORD]):
                    raise UerError(f"{source}: {DECODER} differs from the word embedding; Google's TF layout "
                                   "ties them and has no place for a separate output matrix")
                continue
            if layout == "tf" and p.transpose:
                tensor = tensor.t()
            out[getattr(p, key)] = tensor.detach().contiguous().clone()
    return out, sorted(set(uer) - used)


class NotBertLayout(UerError):
    """A model the BERT layout of Hugging Face and Google files cannot hold."""


def check_bert_layout(uer: StateDict, source: str, target_name: str) -> None:
    """A :class:`NotBertLayout` unless ``uer`` holds a BERT (word+position+segment embedding, layer list)."""
    if "encoder.linear.weight" in uer or any(k.startswith("encoder.transformer.self_attn.") for k in uer):
        raise NotBertLayout(f"{source} holds an ALBERT-style model (factorised embedding or one shared layer); "
                            f"the {target_name} BERT layout cannot represent it")
    if SEGMENT not in uer:
        raise NotBertLayout(f"{source} has no {SEGMENT} (a GPT-style model?); the {target_name} BERT layout needs one")
    if "target.output_layer.weight" in uer:
        raise NotBertLayout(f"{source} holds a language-model (lm) target; the {target_name} BERT layout has no "
                            "place for target.output_layer")
    if "encoder.layer_norm.gamma" in uer:
        raise NotBertLayout(f"{source} normalises before each sub-layer (encoder.layernorm_positioning=pre); the "
                            f"{target_name} BERT layout normalises after each residual sum")
    if "embedding.layer_norm.gamma" not in uer:
        raise NotBertLayout(f"{source} has no embedding LayerNorm (embedding.remove_layernorm=true); the "
                            f"{target_name} BERT layout has one")


# --- Hugging Face files -----------------------------------------------------------------

def is_hf_state(state: dict) -> bool:
    return any(k.endswith("embeddings.word_embeddings.weight") for k in state)


def hf_to_uer(state: StateDict, source: str) -> tuple[StateDict, list[str]]:
    """A ``BertForPreTraining``/``BertModel`` (or ``BertFor*``) state dict -> (UER state dict, unused keys)."""
    named: StateDict = {}
    for key, tensor in state.items():
        if key.endswith("position_ids") or key == "cls.predictions.decoder.bias":
            continue  # a buffer; the MLM bias again (== cls.predictions.bias)
        if key.startswith(("embeddings.", "encoder.", "pooler.")):
            key = "bert." + key  # BertModel names
        key = re.sub(r"\.LayerNorm\.gamma$", ".LayerNorm.weight", key)
        key = re.sub(r"\.LayerNorm\.beta$", ".LayerNorm.bias", key)
        named[key] = tensor
    if "cls.predictions.bias" not in named and "cls.predictions.decoder.bias" in state:
        named["cls.predictions.bias"] = state["cls.predictions.decoder.bias"]
    return to_uer(named, "hf", source, fetch=named.__getitem__)


def uer_to_hf(uer: StateDict, source: str) -> tuple[StateDict, list[str]]:
    """UER state dict -> (``BertForPreTraining`` names, or ``BertModel`` names without heads; dropped UER keys)."""
    hf, dropped = from_uer(uer, "hf", source)
    if "cls.predictions.bias" in hf:
        hf["cls.predictions.decoder.bias"] = hf["cls.predictions.bias"]
    if not any(k.startswith("cls.") for k in hf):
        hf = {k.removeprefix("bert."): v for k, v in hf.items()}
    return hf, dropped


def is_safetensors(path: Path) -> bool:
    """Recognise a safetensors file by its header (8-byte length, then a JSON object)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
            size = path.stat().st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + length <= size


def hf_weight_file(path: Path) -> Path:
    """The weights file for ``path``: itself, or the usual file inside a directory."""
    if not path.is_dir():
        return path
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise UerError(f"directory {path} holds none of {', '.join(HF_WEIGHT_FILES)}; give the weights file itself")


def load_tensor_file(path: Path) -> StateDict:
    """A flat name -> tensor dict from a safetensors or torch file; unreadable files are a :class:`UerError`."""
    try:
        if is_safetensors(path):
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, not a torch file, unsafe pickle
        message = str(err).strip()
        reason = message.splitlines()[0] if message else type(err).__name__
        raise UerError(f"{path} cannot be read ({reason[:200]}); it is corrupt or not a torch/safetensors file") \
            from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UerError(f"{path} is not a state dict (a flat dict of name -> tensor)")
    return state


def load_hf_weights(path) -> StateDict:
    """Tensors of a HF weights file, a sharded ``*.index.json`` or a model directory."""
    path = hf_weight_file(Path(path))
    if not path.name.endswith(".index.json"):
        return load_tensor_file(path)
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UerError(f"{path} is not a sharded-weights index (a JSON object with weight_map): {reason(err)}") from None
    state: StateDict = {}
    for shard in shards:
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise UerError(f"{path} lists shard {shard}, which is not in {path.parent}")
        state.update(load_tensor_file(shard_path))
    return state


def read_json_beside(path: Path, name: str) -> tuple[Optional[dict], Optional[Path]]:
    """The JSON object in file ``name`` next to ``path`` (or inside it, for a directory)."""
    config = (path if path.is_dir() else path.parent) / name
    if not config.is_file():
        return None, None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UerError(f"{config} is not valid JSON ({reason(err)}); fix or remove it") from None
    if not isinstance(data, dict):
        raise UerError(f"{config} is not a JSON object; fix or remove it")
    return data, config


# HF/Google ``hidden_act`` -> ours (see uer/models/layers.py ACTIVATIONS).
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_new": "gelu_fast", "gelu_pytorch_tanh": "gelu_fast",
                    "gelu_fast": "gelu_fast", "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATION_OUT = {"gelu": "gelu", "gelu_fast": "gelu_new", "relu": "relu", "silu": "silu"}


def hints_from_config(config: Optional[dict], config_path: Optional[Path]) -> dict:
    """Heads, LayerNorm epsilon and activation from a ``config.json``/``bert_config.json``."""
    if config is None:
        return {}
    hints: dict = {"config_path": str(config_path)}
    if isinstance(config.get("num_attention_heads"), int):
        hints["heads_num"] = config["num_attention_heads"]
    if isinstance(config.get("layer_norm_eps"), (int, float)):
        hints["layernorm_eps"] = float(config["layer_norm_eps"])
    act = config.get("hidden_act")
    if act is not None:
        if act not in ACTIVATION_NAMES:
            raise UerError(f"{config_path}: hidden_act {act!r} is not supported; "
                           f"supported: {', '.join(sorted(ACTIVATION_NAMES))}")
        hints["hidden_act"] = ACTIVATION_NAMES[act]
    return hints


def bert_config(arch: dict, google: bool = False) -> dict:
    """A ``config.json`` (HF) or ``bert_config.json`` (Google) describing ``arch``."""
    config = {
        "attention_probs_dropout_prob": arch["dropout"],
        "hidden_act": ACTIVATION_OUT[arch["hidden_act"]],
        "hidden_dropout_prob": arch["dropout"],
        "hidden_size": arch["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": arch["feedforward_size"],
        "max_position_embeddings": arch["max_seq_length"],
        "num_attention_heads": arch["heads_num"],
        "num_hidden_layers": arch["layers_num"],
        "type_vocab_size": 2,
        "vocab_size": arch["vocab_size"],
    }
    if not google:
        architecture = {"bert": "BertForPreTraining", "mlm": "BertForMaskedLM"}.get(arch.get("target"), "BertModel")
        config.update({"architectures": [architecture],
                       "model_type": "bert", "layer_norm_eps": arch["layernorm_eps"], "pad_token_id": 0,
                       "tie_word_embeddings": bool(arch.get("tie_weights", True))})
    return config


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp_name)`` into a temporary file beside ``path``, then rename it to ``path``."""
    with replacing(path) as tmp:
        write(str(tmp))


def save_hf_weights(state: StateDict, path) -> None:
    """``.safetensors`` -> safetensors (with ``{"format": "pt"}`` metadata), anything else -> ``torch.save``."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in state.items()}
    if path.suffix == ".safetensors":
        # safetensors refuses tensors that share memory (the tied decoder): store copies.
        atomic_write(path, lambda tmp: save_file({k: v.contiguous().clone() for k, v in state.items()}, tmp,
                                                 metadata={"format": "pt"}))
    else:
        atomic_write(path, lambda tmp: torch.save(state, tmp))


def write_json_beside(path: Path, name: str, data: dict) -> Optional[Path]:
    """Write ``data`` as ``name`` next to ``path`` unless such a file exists (it is never overwritten)."""
    target = path.parent / name
    if target.exists():
        try:
            existing = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            existing = None
        keys = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                            "intermediate_size", "n_embd", "n_layer", "n_head", "n_inner") if k in data]
        if not isinstance(existing, dict) or any(existing.get(k) != data[k] for k in keys):
            logger.warning("%s already exists and does not describe the converted model; left unchanged "
                           "(the model's values: %s)", target, {k: data[k] for k in keys})
        return None
    atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
    return target


def input_names(token_types: bool) -> list[str]:
    """What the tokenizer returns: token types only for a model that adds them (GPT-2 would embed them as words)."""
    return ["input_ids", "token_type_ids", "attention_mask"] if token_types else ["input_ids", "attention_mask"]


def tokenizer_files(tokens: list[str], do_lower_case: bool, max_length: int,
                    token_types: bool = True) -> dict[str, str]:
    """``vocab.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json`` of a classic ``BertTokenizer``."""
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case, "tokenize_chinese_chars": True,
              "strip_accents": None, "model_max_length": max_length, "model_input_names": input_names(token_types),
              **specials}
    return {"vocab.txt": "".join(f"{token}\n" for token in tokens),
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(specials, indent=2) + "\n"}


def fast_tokenizer_files(tokenizer_json: str, special_tokens: dict[str, str], max_length: int,
                         token_types: bool = True) -> dict[str, str]:
    """``tokenizer.json`` (as given), ``tokenizer_config.json`` and ``special_tokens_map.json`` of a
    fast tokenizer whose roles are ``special_tokens`` (``{"pad_token": ..., ...}``)."""
    # A BERT takes segments: without token_type_ids among its inputs the tokenizer would not return them.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
              "model_input_names": input_names(token_types), **special_tokens}
    return {"tokenizer.json": tokenizer_json,
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(special_tokens, indent=2) + "\n"}


def save_hf_directory(state: StateDict, directory: Path, config: dict, texts: dict[str, str]) -> list[str]:
    """A model directory ``from_pretrained`` reads: ``model.safetensors``, ``config.json`` and ``texts``
    (file name -> content, e.g. :func:`tokenizer_files`); each file written atomically.  The names written."""
    directory.mkdir(parents=True, exist_ok=True)
    save_hf_weights(state, directory / "model.safetensors")
    texts = {HF_CONFIG: json.dumps(config, indent=2) + "\n", **texts}
    for name, text in texts.items():
        atomic_write(directory / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    return ["model.safetensors", *texts]

