"""tool=convert: checkpoints between this project, the original UER, Hugging Face and Google TF.

    python main.py stage=tool tool=convert tool.input_format=hf tool.input_path=bert/model.safetensors \\
        tool.output_format=uer_ckpt tool.output_path=models/bert.pt tokenizer.vocab_path=bert/vocab.txt

Formats (``tool.input_format`` / ``tool.output_format``):

* ``uer``: the original toolkit's ``.bin`` (a flat state dict with UER names).
* ``hf``: a Hugging Face ``BertForPreTraining``/``BertForMaskedLM``/``BertModel`` state dict,
  ``.safetensors`` or torch ``.bin`` (a model directory or sharded ``*.index.json`` too
  when reading).  Written as ``BertForPreTraining`` names when the model has heads,
  ``BertModel`` names otherwise.  ``tool.output_path`` a directory (or a name without a
  suffix): a model directory that ``AutoModel.from_pretrained`` and
  ``AutoTokenizer.from_pretrained`` load offline -- ``model.safetensors``, ``config.json``
  and the vocabulary as a classic ``BertTokenizer`` (``vocab.txt``,
  ``tokenizer_config.json``, ``special_tokens_map.json``; the checkpoint's own vocabulary,
  or for other inputs the composed ``tokenizer.*``), each file replaced.  A weights file
  (``.safetensors``/``.bin``) gets a ``config.json`` beside it if there is none.
* ``tf``: a Google TensorFlow BERT checkpoint, given by its prefix (``.../bert_model.ckpt``);
  needs ``pip install "uer[tf]"``.  Written with a ``bert_config.json`` beside it if none.
* ``uer_ckpt``: this project's self-describing ``.pt`` (weights + model config + vocabulary
  identity, no trainer state): what ``pretrained_model_path`` and the later stages read.

Fine-tuned task heads (the tables: :mod:`uer.io.hf_heads`).  A checkpoint of
``stage=finetune`` converts to ``hf`` as the task's Hugging Face class, with
``architectures``, ``num_labels`` and ``id2label``/``label2id`` in ``config.json``:

* ``task=classifier`` (text or text pair) -> ``BertForSequenceClassification``: uer's
  ``output_layer_1`` + tanh is BERT's pooler (``bert.pooler.dense``), ``output_layer_2`` its
  ``classifier``; only ``task.pooling=first`` is that computation (other poolings are
  refused).  Labels are class ids, named by their ids (``"0"``, ``"1"``, ...) unless the
  checkpoint records names (an imported model's);
* ``task=ner`` -> ``BertForTokenClassification`` (``output_layer`` = ``classifier``), labelled
  with the checkpoint's tags;
* ``task=cmrc`` -> ``BertForQuestionAnswering`` (``output_layer`` = ``qa_outputs``, start
  then end).  ``task.max_answer_length`` and ``doc_stride`` are decoding settings, not
  weights: an imported model gets the defaults.

``c3``, ``mt_classifier``, ``dbqa`` and ``classifier_cv`` checkpoints are refused (each with
its reason), nothing written.  The other way, an ``hf`` input whose ``config.json`` names
one of these classes converts to ``uer_ckpt`` as a fine-tuned checkpoint (task, labels,
``finetune.seq_length`` = its positions) that ``stage=infer`` reads alone; head weights
missing, labels that disagree with them, NER labels that are not BIO tags, or a
``problem_type`` other than single-label classification are refused.  Every tensor crosses
unchanged except the padding row of uer's segment embedding, which a Hugging Face model
has no place for (it only reaches padded positions) and comes back as zeros.

Every conversion goes through the UER layout (X -> UER -> Y), so each format has one
reader and one writer.  Sizes (vocabulary, embedding, hidden, feed-forward, positions,
layers) are read from the weights; the target is ``bert`` when NSP weights exist,
``albert`` for SOP, ``mlm`` for an MLM head alone, ``lm`` for a language-model head, and
absent for a bare encoder (``BertModel``), whose checkpoint then holds the backbone (and
pooler) only.  What the weights cannot tell:

* attention heads: from ``config.json`` (HF) / ``bert_config.json`` (TF) beside the input,
  or the input checkpoint's config (``uer_ckpt``), else ``model.heads_num`` of the composed
  config (pass ``size=...`` or ``model.heads_num=N``);
* LayerNorm epsilon and activation: Hugging Face and Google models use 1e-12 and exact
  GELU (or what their config file says); UER files take the composed config's
  (``encoder.layernorm_eps``, ``model.hidden_act``);
* the LayerNorm formula: Hugging Face and Google models use the standard one; a UER file
  is read with the original toolkit's (``model.layernorm=uer``, unless given otherwise,
  :mod:`uer.config.original_file`).  The formats hold weights only, so converting a model
  to a format whose LayerNorm differs (``uer`` LayerNorm to ``hf``/``tf``, standard to
  ``uer``) gives a model whose outputs are approximate there: a warning says so;
* the vocabulary: a ``uer_ckpt`` records the identity of the composed tokenizer
  (``tokenizer.vocab_path``/``spm_model_path``), which must have as many tokens as the
  word embedding has rows.

A failed conversion writes nothing: every output is written to a temporary file and
renamed into place.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from uer.config.original_file import adopt_original_file
from uer.config.overrides import command_line_overrides
from uer.errors import UerError
from uer.io.checkpoint import FORMAT as CHECKPOINT_FORMAT
from uer.io.checkpoint import (MODEL_NODES, atomic_torch_save, checkpoint_tokenizer, load_checkpoint, refuse_nonfinite,
                               save_checkpoint)
from uer.io.hf_format import (
    DECODER,
    HF_CONFIG,
    HF_WEIGHT_FILES,
    SEGMENT,
    WORD,
    NotBertLayout,
    StateDict,
    bert_config,
    count_layers,
    fast_tokenizer_files,
    hf_to_uer,
    hf_weight_file,
    hints_from_config,
    is_hf_state,
    is_safetensors,
    load_hf_weights,
    read_json_beside,
    save_hf_directory,
    save_hf_weights,
    tokenizer_files,
    uer_to_hf,
    write_json_beside,
)
from uer.io.hf_heads import ExportedHead, ImportedHead, split_head, take_head
from uer.io.tf_format import checkpoint_prefix, load_tf_checkpoint, save_tf_checkpoint, tf_to_uer, uer_to_tf
from uer.io.uer_format import from_uer_state_dict, load_uer_bin, to_uer_state_dict
from uer.models import build_backbone, build_model
from uer.models.subencoders import stored_subencoder
from uer.tasks import TASKS, import_tasks
from uer.tokenizers import build_tokenizer
from uer.config.fields import setting
from uer.tools import TOOLS, ModelInput, ToolConfig, require

log = logging.getLogger("uer.tools")

FORMAT_NAMES = {
    "uer": "UER-format .bin",
    "hf": "Hugging Face BERT state dict",
    "tf": "TensorFlow BERT checkpoint",
    "uer_ckpt": "uer checkpoint (.pt)",
}
GOOGLE_CONFIG = "bert_config.json"
# The target a file holds, by the first of these keys it has.
TARGET_KEYS = (("target.nsp_linear_2.weight", "bert"), ("target.sop_linear_2.weight", "albert"),
               ("target.mlm_linear_1.weight", "mlm"), ("target.output_layer.weight", "lm"))
HF_DEFAULTS = {"layernorm_eps": 1e-12, "hidden_act": "gelu", "mask": "fully_visible", "layernorm": "standard"}
LAYOUTS = {"hf": "Hugging Face", "tf": "Google TensorFlow"}
# What each output format holds: the refusals quote it, so they say what the converter does.
WHAT_CONVERTS = ("tool=convert writes uer_ckpt and uer for every transformer model (BERT; ALBERT with its shared "
                 "layer and factorised embedding; GPT with its lm target), and hf and tf for BERT-layout models "
                 "(word, position and segment embeddings, one weight set per layer, target bert, mlm or none); "
                 "other encoders (lstm, gru, cnn, ...) have no converted form: their uer_ckpt is read as it is by "
                 "pretrained_model_path, stage=infer and the tools")


@dataclass
class Loaded:
    """A model read from any format, in UER names, with what its files said about it."""

    state: StateDict
    source: str
    hints: dict = field(default_factory=dict)  # heads_num, layernorm(_eps), hidden_act, mask, layers_num, config_path
    payload: Optional[dict] = None  # uer_ckpt input: its config and vocabulary identity
    head: Optional[ImportedHead] = None  # hf input: a task model's head (uer/io/hf_heads.py)


@dataclass
class ConvertConfig(ModelInput, ToolConfig):
    """``tool=convert``."""

    input_format: Optional[str] = setting(None, "uer (original .bin) | hf (Hugging Face BERT) | tf (Google TF "
                                                "checkpoint) | uer_ckpt (this project's .pt)")
    output_path: Optional[str] = setting(None, "the converted model's file")
    output_format: Optional[str] = setting(None, "the format to write (as input_format)")


@TOOLS.register("convert", config=ConvertConfig)
def convert(cfg: DictConfig) -> str:
    t = cfg.tool
    require(cfg, "input_path", "input_format", "output_path", "output_format")
    for key in ("input_format", "output_format"):
        if t[key] not in FORMAT_NAMES:
            raise UerError(f"tool.{key}={t[key]} is not a checkpoint format; choose one of: "
                           f"{', '.join(FORMAT_NAMES)}")
    source, target = Path(t.input_path), Path(t.output_path)
    if not source.exists() and not Path(f"{source}.index").is_file():  # a TF checkpoint is a prefix
        raise UerError(f"tool.input_path {source} not found; check the path")
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise UerError(f"tool.output_path {target} is the input file; choose another output path")
    if target.is_dir() and t.output_format != "hf":
        raise UerError(f"tool.output_path {target} is a directory; give a file name "
                       f"(e.g. {target / _example_name(t.output_format)})")

    loaded = _read(t.input_format, source, cfg)
    refuse_nonfinite(loaded.state, loaded.source, cfg.allow_nonfinite_weights)  # every format, HF and TF too
    subencoder = stored_subencoder(loaded.payload)
    if subencoder != "none" and t.output_format != "uer_ckpt":
        raise UerError(f"{loaded.source} composes words from characters (embedding.subencoder={subencoder}), which "
                       f"a {FORMAT_NAMES[t.output_format]} has no place for; keep this project's checkpoint "
                       "(tool.output_format=uer_ckpt)")
    arch = infer_architecture(loaded, cfg)
    log.info("read %s %s: %s", t.input_format, loaded.source, describe(arch))
    try:
        WRITERS[t.output_format](loaded, arch, target, cfg)
    except NotBertLayout as err:
        raise UerError(f"{err}; {WHAT_CONVERTS}") from None
    log.info("wrote %s %s", t.output_format, target)
    return str(target)


def _example_name(fmt: str) -> str:
    return {"uer": "model.bin", "hf": "model.safetensors", "tf": "bert_model.ckpt", "uer_ckpt": "model.pt"}[fmt]


# --- reading -------------------------------------------------------------------------------

def _read(fmt: str, path: Path, cfg: DictConfig) -> Loaded:
    try:
        return READERS[fmt](path, cfg)
    except UerError:
        found, what = identify(path)
        if found is not None and found != fmt:
            raise UerError(f"tool.input_path {path} is not a {FORMAT_NAMES[fmt]}: it is {what}; "
                           f"pass tool.input_format={found}") from None
        raise


def read_uer(path: Path, cfg: DictConfig) -> Loaded:
    state = load_uer_bin(path)
    adopt_original_file(cfg, path, state, command_line_overrides())
    return Loaded(state, str(path), {"layernorm": cfg.model.layernorm})


def read_hf(path: Path, cfg: DictConfig) -> Loaded:
    weights = hf_weight_file(path)
    state = load_hf_weights(path)
    if not is_hf_state(state):
        raise UerError(f"{weights} holds no Hugging Face BERT weights (no embeddings.word_embeddings.weight)")
    config, config_path = read_json_beside(weights, HF_CONFIG)
    state, head = take_head(config, config_path, state, str(weights))
    uer, unused = hf_to_uer(state, str(weights))
    uer.update(head.tensors if head else {})
    _warn_unused(weights, unused)
    if config is not None and config.get("model_type") not in (None, "bert"):
        log.warning("%s says model_type=%s; converting its BERT-named weights as BERT", config_path,
                    config.get("model_type"))
    return Loaded(uer, str(weights), {**HF_DEFAULTS, **hints_from_config(config, config_path)}, head=head)


def read_tf(path: Path, cfg: DictConfig) -> Loaded:
    arrays, prefix = load_tf_checkpoint(path)
    uer, unused = tf_to_uer(arrays, prefix)
    _warn_unused(prefix, unused)
    config, config_path = read_json_beside(Path(prefix), GOOGLE_CONFIG)
    return Loaded(uer, prefix, {**HF_DEFAULTS, **hints_from_config(config, config_path)})


def read_uer_ckpt(path: Path, cfg: DictConfig) -> Loaded:
    payload = load_checkpoint(path)
    model = payload.get("model")
    if not isinstance(model, dict) or not model:
        raise UerError(f"checkpoint {path} holds no model weights")
    encoder = (payload.get("config") or {}).get("encoder") or {}
    hints = {key: encoder[key] for key in ("heads_num", "layernorm_eps", "hidden_act", "mask", "layers_num")
             if key in encoder}
    embedding = (payload.get("config") or {}).get("embedding") or {}
    hints["layernorm"] = encoder.get("layernorm") or embedding.get("layernorm") or "standard"  # null: standard
    hints["config_path"] = f"{path}'s config"
    return Loaded(to_uer_state_dict(model), str(path), hints, payload)


READERS: dict[str, Callable[[Path, DictConfig], Loaded]] = {
    "uer": read_uer, "hf": read_hf, "tf": read_tf, "uer_ckpt": read_uer_ckpt,
}


def _warn_unused(source, unused: list[str]) -> None:
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        log.warning("%s: not converted (no place in the BERT layout): %s", source, shown)


def identify(path: Path) -> tuple[Optional[str], str]:
    """(format name or None, a few words on what ``path`` holds), for error messages."""
    if path.is_dir():
        if any((path / name).is_file() for name in HF_WEIGHT_FILES):
            return "hf", "a Hugging Face model directory"
        if checkpoint_prefix(path):
            return "tf", "a directory holding a TensorFlow checkpoint"
        return None, "a directory without a model file"
    if checkpoint_prefix(path):
        return "tf", "a TensorFlow checkpoint"
    if not path.is_file():
        return None, "missing"
    keys: list[str]
    if is_safetensors(path):
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
        except Exception:
            return None, "a damaged safetensors file"
    else:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None, "not a torch, safetensors or TensorFlow checkpoint file"
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            return "uer_ckpt", "this project's checkpoint (.pt)"
        if not isinstance(payload, dict):
            return None, f"a torch file holding a {type(payload).__name__}"
        keys = [str(key) for key in payload]
    if WORD in keys:
        return "uer", f"a UER-format state dict (keys like {WORD})"
    if any(key.endswith("embeddings.word_embeddings.weight") for key in keys):
        return "hf", "a Hugging Face BERT state dict (keys like bert.embeddings.word_embeddings.weight)"
    return None, f"a state dict with keys like {', '.join(keys[:3]) or '(none)'}"


# --- what the weights say ------------------------------------------------------------------

def _tensor(state: StateDict, key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise UerError(f"{source} has no {key}; it is not a complete model")
    return state[key]


def infer_architecture(loaded: Loaded, cfg: DictConfig) -> dict:
    """Sizes from the weights; heads, epsilon, activation from the input's config or the composed one."""
    state, source, hints = loaded.state, loaded.source, loaded.hints
    vocab_size, emb_size = _tensor(state, WORD, source).shape
    layers = count_layers(state, "uer", source)
    shared = any(key.startswith("encoder.transformer.self_attn.") for key in state)
    if not layers and not shared:
        raise UerError(f"{source} has no transformer layers (encoder.transformer.*); {WHAT_CONVERTS}")
    prefix = "encoder.transformer.0." if layers else "encoder.transformer."
    hidden_size = _tensor(state, prefix + "self_attn.linear_layers.0.weight", source).shape[0]
    target = next((name for key, name in TARGET_KEYS if key in state), None)
    output = "target.output_layer.weight" if target == "lm" else DECODER
    heads, heads_from = hints.get("heads_num"), hints.get("config_path")
    if heads is None:
        heads, heads_from = cfg.model.heads_num, "model.heads_num"
    arch = {
        "vocab_size": int(vocab_size),
        "emb_size": int(emb_size),
        "hidden_size": int(hidden_size),
        "feedforward_size": int(_tensor(state, prefix + "feed_forward.linear_1.weight", source).shape[0]),
        "layers_num": layers or int(hints.get("layers_num", cfg.model.layers_num)),
        "parameter_sharing": not layers,
        "max_seq_length": int(_tensor(state, "embedding.position_embedding.weight", source).shape[0]),
        "segment": SEGMENT in state,
        "heads_num": int(heads),
        "heads_from": heads_from,
        "layernorm_eps": float(hints.get("layernorm_eps", cfg.encoder.layernorm_eps)),
        "layernorm": hints.get("layernorm") or cfg.model.layernorm or "standard",
        "hidden_act": hints.get("hidden_act", cfg.encoder.hidden_act),
        "mask": hints.get("mask", cfg.encoder.mask),
        "dropout": float(cfg.model.dropout),
        "target": target,
        "tie_weights": output in state and torch.equal(state[output], state[WORD]),
    }
    if shared and not hints.get("layers_num"):
        log.warning("%s has one shared layer; layers_num=%d comes from model.layers_num", source, arch["layers_num"])
    return arch


def require_heads(arch: dict) -> int:
    heads, hidden = arch["heads_num"], arch["hidden_size"]
    if heads < 1 or hidden % heads:
        raise UerError(f"heads_num={heads} (from {arch['heads_from']}) does not divide hidden_size {hidden}; "
                       "attention heads are not stored in the weights: pass model.heads_num=N (or size=...) "
                       "with the model's number of heads")
    return heads


def describe(arch: dict) -> str:
    heads = arch["heads_num"] if arch["hidden_size"] % max(arch["heads_num"], 1) == 0 else "?"
    return (f"{arch['layers_num']} layers{' (shared)' if arch['parameter_sharing'] else ''}, "
            f"hidden {arch['hidden_size']}, feed-forward {arch['feedforward_size']}, embedding {arch['emb_size']}, "
            f"vocab {arch['vocab_size']}, {arch['max_seq_length']} positions, {heads} heads "
            f"(from {arch['heads_from']}), {arch['layernorm']} LayerNorm, "
            f"target {arch['target'] or 'none (encoder only)'}")


# --- writing -------------------------------------------------------------------------------

def write_uer(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    if arch["layernorm"] != "uer":
        log.warning("%s uses torch's LayerNorm, which the original UER-py toolkit does not compute: run there, %s "
                    "gives approximate outputs; reading it back here needs model.layernorm=standard to be exact",
                    loaded.source, path)
    atomic_torch_save({key: tensor.detach().cpu() for key, tensor in loaded.state.items()}, path)


def write_hf(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    directory = path.is_dir() or path.suffix == ""
    if not directory and path.suffix not in (".bin", ".safetensors"):
        raise UerError(f"tool.output_path {path} must be a directory (a model directory), or end in .safetensors or "
                       ".bin (the weights alone) for tool.output_format=hf")
    warn_layernorm(loaded, arch, "hf")
    if directory:  # checked before anything is written
        require_heads(arch)
        tokenizer = _tokenizer(loaded, arch, cfg)
    task_model = loaded.head.as_payload() if loaded.head else loaded.payload
    backbone, head = split_head(task_model, loaded.state, loaded.source)  # a fine-tuned task's head
    state, dropped = uer_to_hf(backbone, loaded.source)
    state = head.hf_state(state) if head else state
    _warn_dropped(dropped, "Hugging Face")
    if not directory:
        save_hf_weights(state, path)
        _write_config(path, HF_CONFIG, arch, google=False, head=head)
        return
    texts = {}
    if tokenizer.kind == "spm":
        log.warning("%s tokenizes with a SentencePiece model, which a BertTokenizer cannot read: %s holds no "
                    "tokenizer files, so AutoTokenizer will not load it", loaded.source, path)
    elif tokenizer.kind == "hf":
        texts = fast_tokenizer_files(tokenizer.exported_json(), tokenizer.stored["special_tokens"],
                                     arch["max_seq_length"])
    else:
        if tokenizer.kind != "bert":
            log.warning("%s tokenizes with tokenizer=%s; the exported tokenizer is a BertTokenizer over the same "
                        "vocabulary, which splits text as tokenizer=bert does", loaded.source, tokenizer.kind)
        texts = tokenizer_files(list(tokenizer.vocab.tokens), tokenizer.lowercases,
                                arch["max_seq_length"])
    config = bert_config(arch, google=False)
    config = head.hf_config(config) if head else config
    written = save_hf_directory(state, path, config, texts)
    log.info("wrote the Hugging Face model directory %s (%s): %s", path, config["architectures"][0], ", ".join(written))


def _tokenizer(loaded: Loaded, arch: dict, cfg: DictConfig):
    """The model's tokenizer: a checkpoint's own, else the composed one (checked against the vocabulary size)."""
    if loaded.payload is not None:
        return checkpoint_tokenizer(loaded.payload, loaded.source)
    return vocabulary_tokenizer(cfg, arch, loaded.source)


def write_tf(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    prefix = Path(str(path).removesuffix(".index"))
    warn_layernorm(loaded, arch, "tf")
    arrays, dropped = uer_to_tf(loaded.state, loaded.source)
    _warn_dropped(dropped, "TensorFlow")
    save_tf_checkpoint(arrays, prefix)
    _write_config(prefix, GOOGLE_CONFIG, arch, google=True)


def warn_layernorm(loaded: Loaded, arch: dict, fmt: str) -> None:
    """Hugging Face and Google BERT compute torch's LayerNorm: a model with the original's is approximated there."""
    if arch["layernorm"] == "uer":
        log.warning("%s uses the original UER-py LayerNorm (unbiased std, eps outside the square root); %s BERT "
                    "computes the standard one, so the converted model's outputs are approximate (hidden states "
                    "differ, typically by about 1e-2), not equal to this model's", loaded.source, LAYOUTS[fmt])


def _write_config(path: Path, name: str, arch: dict, google: bool, head: Optional[ExportedHead] = None) -> None:
    try:
        require_heads(arch)
    except UerError as err:
        log.warning("%s not written: %s", path.parent / name, err)
        return
    config = bert_config(arch, google=google)
    written = write_json_beside(path, name, head.hf_config(config) if head else config)
    if written:
        log.info("wrote %s (num_attention_heads=%d from %s)", written, arch["heads_num"], arch["heads_from"])


def _warn_dropped(dropped: list[str], layout: str) -> None:
    if dropped:
        log.warning("not written (no place in the %s BERT layout): %s", layout, ", ".join(dropped))


def write_uer_ckpt(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    if loaded.payload is not None:  # uer_ckpt -> uer_ckpt: keep its config; the vocabulary moves inside
        config, tokenizer = loaded.payload.get("config") or {}, checkpoint_tokenizer(loaded.payload, loaded.source)
    else:
        config, tokenizer = checkpoint_config(cfg, arch), vocabulary_tokenizer(cfg, arch, loaded.source)
    if loaded.head is not None:  # an HF task model: a fine-tuned checkpoint that stage=infer reads
        config.update(task=task_config(loaded.head.task), finetune={"seq_length": arch["max_seq_length"]})
    task_info = loaded.head.task_info if loaded.head else (loaded.payload or {}).get("task_info")
    model = _build(config, tokenizer.vocab.tokens)
    ours = from_uer_state_dict(loaded.state)
    expected = model.state_dict()
    missing = [key for key in expected if key not in ours]
    if missing:
        raise UerError(f"{loaded.source} has no weights for {missing[0]} (in our names), which a "
                       f"{config.get('target', {}).get('type', 'bare')} model needs")
    for key, tensor in expected.items():
        if ours[key].shape != tensor.shape:
            raise UerError(f"{loaded.source}: {key} has shape {tuple(ours[key].shape)} but the inferred model "
                           f"expects {tuple(tensor.shape)}")
    model.load_state_dict({key: ours[key] for key in expected})
    extras = {key: tensor for key, tensor in ours.items() if key not in expected}
    if extras and "task" in config:
        log.info("kept the task=%s head: %s", config["task"]["type"], ", ".join(sorted(extras)))
    elif extras:
        log.info("kept %d tensors the %s model does not use (so converting back loses nothing): %s", len(extras),
                 config.get("target", {}).get("type", "encoder-only"), ", ".join(sorted(extras)))
    state = {**model.state_dict(), **{key: tensor.detach().cpu() for key, tensor in extras.items()}}
    save_checkpoint(path, model_state=state, config=config, tokenizer=tokenizer, trainer=None, task_info=task_info)


def task_config(settings: dict) -> dict:
    """The full ``task`` node (the task's schema defaults plus ``settings``) a fine-tuned checkpoint records."""
    import_tasks()
    return dataclasses.asdict(TASKS.build_config(settings))


def checkpoint_config(cfg: DictConfig, arch: dict) -> dict:
    """The composed model config with everything the weights (and input config) decided filled in."""
    require_heads(arch)
    sizes = {key: arch[key] for key in ("emb_size", "hidden_size", "feedforward_size", "heads_num", "layers_num",
                                        "max_seq_length", "hidden_act", "parameter_sharing", "layernorm")}
    composed = cfg.copy()
    with open_dict(composed):  # set the shared sizes first, so every ${model.*} interpolation follows them
        composed.model.update(sizes)
    config = {node: OmegaConf.to_container(composed[node], resolve=True) for node in MODEL_NODES}
    config["embedding"].update(type="word_pos_seg" if arch["segment"] else "word_pos", emb_size=arch["emb_size"],
                               max_seq_length=arch["max_seq_length"], layernorm_eps=arch["layernorm_eps"],
                               layernorm=arch["layernorm"])
    config["encoder"].update(type="transformer", mask=arch["mask"], layernorm_eps=arch["layernorm_eps"],
                             **{key: sizes[key] for key in ("hidden_size", "feedforward_size", "heads_num",
                                                            "layers_num", "hidden_act", "parameter_sharing",
                                                            "layernorm")})
    if arch["target"]:
        config["target"].update(type=arch["target"], tie_weights=arch["tie_weights"])
    else:
        del config["target"]
    return config


def vocabulary_tokenizer(cfg: DictConfig, arch: dict, source: str):
    """The composed tokenizer, checked to have a token for every word embedding row."""
    tokenizer = build_tokenizer(cfg.tokenizer)
    size = len(tokenizer.vocab)
    if size != arch["vocab_size"]:
        beside = Path(source).parent / "vocab.txt"
        hint = f" (e.g. tokenizer.vocab_path={beside})" if beside.is_file() and str(beside) != tokenizer.vocab.path \
            else ""
        raise UerError(f"tokenizer vocabulary {tokenizer.vocab.path} has {size} tokens but {source} has "
                       f"{arch['vocab_size']} word embedding rows; pass the vocabulary the model was trained with"
                       f"{hint}")
    return tokenizer


def _build(config: dict, tokens) -> nn.Module:
    embedding, encoder = OmegaConf.create(config["embedding"]), OmegaConf.create(config["encoder"])
    if "target" in config:
        return build_model(embedding, encoder, OmegaConf.create(config["target"]), len(tokens), tokens=tokens)
    return nn.ModuleDict({"backbone": build_backbone(embedding, encoder, len(tokens), tokens=tokens)})


WRITERS = {"uer": write_uer, "hf": write_hf, "tf": write_tf, "uer_ckpt": write_uer_ckpt}
