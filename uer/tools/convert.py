"""tool=convert: checkpoints between this project, the original UER, Hugging Face and Google TF.

    python main.py stage=tool tool=convert tool.input_format=hf tool.input_path=bert/model.safetensors \\
        tool.output_format=uer_ckpt tool.output_path=models/bert.pt tokenizer.vocab_path=bert/vocab.txt

Formats (``tool.input_format`` / ``tool.output_format``):

* ``uer``: the original toolkit's ``.bin`` (a flat state dict with UER names).
* ``hf``: a Hugging Face model of one of the families of :mod:`uer.io.hf_families` -- BERT,
  RoBERTa, XLM-R, ELECTRA, ALBERT, GPT-2 -- ``.safetensors`` or torch ``.bin`` (a model
  directory or sharded ``*.index.json`` too when reading).  The family is ``config.json``'s
  ``model_type`` (beside the weights or inside the directory); weights without a
  ``config.json`` are read as BERT, as before.  A directory's own tokenizer files
  (``tokenizer.json``, else ``vocab.txt``) are the model's tokenizer; otherwise the composed
  ``tokenizer.*``.  Written as the family the model came from (a uer checkpoint converted from
  Hugging Face records it), else ``tool.hf_model_type``, else the first family whose layout
  holds the model (BERT, ELECTRA, ALBERT, GPT-2), with the class of its target
  (``BertForPreTraining``, ``*ForMaskedLM``, ``GPT2LMHeadModel``, or the bare ``*Model``).
  ``tool.output_path`` a directory (or a name without a suffix): a model directory that
  ``AutoModel.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load offline --
  ``model.safetensors``, ``config.json`` and the tokenizer (a ``tokenizer.json`` for
  ``tokenizer=hf``, else a classic ``BertTokenizer``: ``vocab.txt``, ``tokenizer_config.json``,
  ``special_tokens_map.json``; the checkpoint's own tokenizer, or for other inputs the composed
  ``tokenizer.*``), each file replaced.  A weights file (``.safetensors``/``.bin``) gets a
  ``config.json`` beside it if there is none.  Encoder-decoder models (T5 v1.0/v1.1, BART:
  ``SEQ2SEQ_FAMILIES``) go between a model directory and ``uer_ckpt`` both ways
  (:mod:`uer.tools.convert_seq2seq`); a checkpoint with a ``decoder`` is written as one of them.
* ``tf``: a Google TensorFlow BERT checkpoint, given by its prefix (``.../bert_model.ckpt``);
  needs ``pip install "uer[tf]"``.  Written with a ``bert_config.json`` beside it if none.
* ``uer_ckpt``: this project's self-describing ``.pt`` (weights + model config + vocabulary
  identity, no trainer state): what ``pretrained_model_path`` and the later stages read.

Fine-tuned task heads (the tables: :mod:`uer.io.hf_heads`).  A checkpoint of
``stage=finetune`` converts to ``hf`` as the task's Hugging Face class of the family it is
written as (the family it was fine-tuned from: the checkpoint keeps ``config["hf"]`` of an HF
directory it started from), with ``architectures``, ``num_labels`` and
``id2label``/``label2id`` in ``config.json``:

* ``task=classifier`` (text or text pair) -> ``BertForSequenceClassification`` (uer's
  ``output_layer_1`` + tanh is BERT's pooler, ``bert.pooler.dense``, ``output_layer_2`` its
  ``classifier``), ``RobertaForSequenceClassification`` / ``XLMRobertaForSequenceClassification``
  (``classifier.dense``, ``classifier.out_proj``) or ``AlbertForSequenceClassification``
  (``albert.pooler``, ``classifier``), all of ``task.pooling=first task.head=dense_tanh`` (the
  defaults); ``ElectraForSequenceClassification`` of ``task.head=dense_gelu``;
  ``GPT2ForSequenceClassification`` (``score``) of ``task.pooling=last task.head=linear
  task.head_bias=false``.  Other settings are refused, naming the family's.  Labels are class ids,
  named by their ids (``"0"``, ``"1"``, ...) unless the checkpoint records names (an imported
  model's);
* ``task=ner`` -> ``*ForTokenClassification`` (``output_layer`` = ``classifier``), labelled
  with the checkpoint's tags;
* ``task=cmrc`` -> ``*ForQuestionAnswering`` (``output_layer`` = ``qa_outputs``, start
  then end).  ``task.max_answer_length`` and ``doc_stride`` are decoding settings, not
  weights: an imported model gets the defaults.

``c3``, ``mt_classifier``, ``dbqa`` and ``classifier_cv`` checkpoints are refused (each with
its reason), nothing written.  The other way, an ``hf`` input whose ``config.json`` names
one of these classes converts to ``uer_ckpt`` as a fine-tuned checkpoint (task, labels,
``finetune.seq_length`` = its positions) that ``stage=infer`` reads alone; head weights
missing, labels that disagree with them, NER labels that are not BIO tags, or a
``problem_type`` other than single-label classification are refused.  Every tensor crosses
unchanged, uer's padding segment row too (a third token type when it is not zeros:
:meth:`uer.io.hf_families.Family.segment_out`), except RoBERTa's position rows up to its
padding id, which no position reads (zeros coming back).

What converts to what (``WHAT_CONVERTS``, quoted by every refusal): ``uer_ckpt`` and ``uer``
hold every transformer model; ``hf`` the models a family's layout holds (each family's
``holds``); ``tf`` the BERT layout alone; other encoders (lstm, gru, cnn, ...) have no converted
form.  A model no family holds is refused with each family's reason.

Every conversion goes through the UER layout (X -> UER -> Y), so each format has one
reader and one writer.  Sizes (vocabulary, embedding, hidden, feed-forward, positions,
layers) and the LayerNorm placement (a final ``encoder.layer_norm``: pre-LN; no
``embedding.layer_norm``; an lm output without bias) are read from the weights; the target is
``bert`` when NSP weights exist, ``albert`` for SOP, ``mlm`` for an MLM head alone, ``lm`` for
a language-model head (a Hugging Face file: the head its family names), and absent for a bare
encoder (``BertModel``), whose checkpoint then holds the backbone (and pooler) only.  What the
weights cannot tell:

* attention heads: from ``config.json`` (HF) / ``bert_config.json`` (TF) beside the input,
  or the input checkpoint's config (``uer_ckpt``), else ``model.heads_num`` of the composed
  config (pass ``size=...`` or ``model.heads_num=N``);
* LayerNorm epsilon and activation: Hugging Face and Google models use what their config file
  says (or transformers' defaults for the family); UER files take the composed config's
  (``encoder.layernorm_eps``, ``model.hidden_act``);
* the LayerNorm formula: Hugging Face and Google models use the standard one; a UER file
  is read with the original toolkit's (``model.layernorm=uer``, unless given otherwise,
  :mod:`uer.config.original_file`).  The formats hold weights only, so converting a model
  to a format whose LayerNorm differs (``uer`` LayerNorm to ``hf``/``tf``, standard to
  ``uer``) gives a model whose outputs are approximate there: a warning says so;
* the vocabulary: a ``uer_ckpt`` records the identity of the composed tokenizer
  (``tokenizer.vocab_path``/``spm_model_path``/``tokenizer_path``), which must have as many
  tokens as the word embedding has rows.  A ``tokenizer.json`` whose padding token is not id 0
  (RoBERTa) is used with ids 0 and the padding id swapped, and so are the two rows of the
  converted weights (:mod:`uer.tokenizers.hf`): files going out are as they came in.

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
from safetensors import safe_open
from torch import nn

from uer.config.original_file import adopt_original_file
from uer.config.overrides import command_line_overrides
from uer.errors import UerError
from uer.io.checkpoint import FORMAT as CHECKPOINT_FORMAT
from uer.io.checkpoint import (MODEL_NODES, atomic_torch_save, checkpoint_tokenizer, load_checkpoint, refuse_nonfinite,
                               save_checkpoint)
from uer.io.hf_directory import directory_tokenizer, hf_record
from uer.io.hf_families import (
    FAMILIES,
    SEQ2SEQ_FAMILIES,
    NotExpressible,
    NotTransformer,
    architecture,
    config_json,
    describe_families,
    family,
    family_for,
    hf_to_uer,
    model_nodes,
    swap_vocab_rows,
    uer_to_hf,
)
from uer.io.hf_format import (
    HF_CONFIG,
    HF_WEIGHT_FILES,
    WORD,
    NotBertLayout,
    StateDict,
    bert_config,
    fast_tokenizer_files,
    hf_weight_file,
    hints_from_config,
    is_hf_state,
    is_safetensors,
    load_hf_weights,
    read_json_beside,
    save_hf_directory,
    save_hf_weights,
    tokenizer_files,
    write_json_beside,
)
from uer.io.hf_heads import ImportedHead, split_head, take_head
from uer.io.tf_format import checkpoint_prefix, load_tf_checkpoint, save_tf_checkpoint, tf_to_uer, uer_to_tf
from uer.io.uer_format import from_uer_state_dict, load_uer_bin, to_uer_state_dict
from uer.models import TARGETS, build_backbone, build_model
from uer.models.subencoders import stored_subencoder
from uer.tasks import TASKS, import_tasks
from uer.tokenizers import build_tokenizer
from uer.tokenizers.framing import A
from uer.tokenizers.hf import swap_pad
from uer.config.fields import setting
from uer.tools import TOOLS, ModelInput, ToolConfig, require
from uer.tools.convert_seq2seq import read_seq2seq, write_seq2seq

log = logging.getLogger("uer.tools")

FORMAT_NAMES = {
    "uer": "UER-format .bin",
    "hf": "Hugging Face model",
    "tf": "TensorFlow BERT checkpoint",
    "uer_ckpt": "uer checkpoint (.pt)",
}
GOOGLE_CONFIG = "bert_config.json"
# A BERT state dict without config.json: what transformers' BertConfig says (heads: the composed config's).
HF_DEFAULTS = {"layernorm_eps": 1e-12, "hidden_act": "gelu", "mask": "fully_visible", "layernorm": "standard"}
LAYOUTS = {"hf": "Hugging Face", "tf": "Google TensorFlow"}
# What each output format holds: the refusals quote it, so they say what the converter does.
WHAT_CONVERTS = ("tool=convert writes uer_ckpt and uer for every transformer model; hf for the models a Hugging "
                 f"Face family holds: {describe_families()}; tf for the BERT layout alone (word, position and "
                 "segment embeddings, post-LN bidirectional layers with a weight set each, target bert, mlm or none); "
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
    tokenizer: Optional[object] = None  # a Hugging Face input's own tokenizer, or the composed tokenizer=hf
    tokenizer_config: Optional[dict] = None  # ... and its config node


@dataclass
class ConvertConfig(ModelInput, ToolConfig):
    """``tool=convert``."""

    input_format: Optional[str] = setting(None, "uer (original .bin) | hf (Hugging Face: bert, roberta, xlm-roberta, "
                                                "electra, albert, gpt2, t5, bart) | tf (Google TF checkpoint) | "
                                                "uer_ckpt (this project's .pt)")
    output_path: Optional[str] = setting(None, "the converted model's file")
    output_format: Optional[str] = setting(None, "the format to write (as input_format)")
    hf_model_type: Optional[str] = setting(None, "output_format=hf: the family to write (bert | roberta | "
                                                 "xlm-roberta | electra | albert | gpt2 | t5 | bart); null: the family "
                                                 "the model came from, else the first whose layout holds it")


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

    seq2seq = read_seq2seq(t.input_format, source)  # T5, BART, a checkpoint with a decoder
    if seq2seq is not None:
        refuse_nonfinite(seq2seq.state, seq2seq.source, cfg.allow_nonfinite_weights)
        write_seq2seq(seq2seq, t.output_format, target, t.hf_model_type)
        log.info("wrote %s %s", t.output_format, target)
        return str(target)
    loaded = _read(t.input_format, source, cfg)
    refuse_nonfinite(loaded.state, loaded.source, cfg.allow_nonfinite_weights)  # every format, HF and TF too
    subencoder = stored_subencoder(loaded.payload)
    if subencoder != "none" and t.output_format != "uer_ckpt":
        raise UerError(f"{loaded.source} composes words from characters (embedding.subencoder={subencoder}), which "
                       f"a {FORMAT_NAMES[t.output_format]} has no place for; keep this project's checkpoint "
                       "(tool.output_format=uer_ckpt)")
    families = [*FAMILIES, *SEQ2SEQ_FAMILIES]
    if t.hf_model_type is not None and (t.output_format != "hf" or t.hf_model_type not in families):
        raise UerError(f"tool.hf_model_type={t.hf_model_type} names the Hugging Face family tool.output_format=hf "
                       f"writes; choose one of {', '.join(families)} with tool.output_format=hf")
    arch = infer_architecture(loaded, cfg)
    log.info("read %s %s: %s", t.input_format, loaded.source, describe(arch))
    try:
        WRITERS[t.output_format](loaded, arch, target, cfg)
    except (NotBertLayout, NotExpressible) as err:
        raise UerError(f"{loaded.source}: {err}; {WHAT_CONVERTS}" if isinstance(err, NotExpressible)
                       else f"{err}; {WHAT_CONVERTS}") from None
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
    config, config_path = read_json_beside(weights, HF_CONFIG)
    model_type = (config or {}).get("model_type") or "bert"
    state, head = take_head(config, config_path, state, str(weights), model_type)
    if config is None or config.get("model_type") is None:  # BERT names alone, as before families
        if not is_hf_state(state):
            raise UerError(f"{weights} holds no Hugging Face BERT weights (no embeddings.word_embeddings.weight) and "
                           f"no {HF_CONFIG} beside it names its family; put the model's config.json beside it")
        fam, hints = FAMILIES["bert"], {**HF_DEFAULTS, **hints_from_config(config, config_path),
                                        "layernorm_positioning": "post"}
    else:
        fam = family(config["model_type"], config_path)
        fam.check_config(config, config_path)
        hints = {"layernorm": "standard", **fam.hints(config, config_path),
                 "hf": hf_record(fam.model_type, config)}
    uer, target, unused = hf_to_uer(fam, state, config or {}, str(weights), config_path)
    uer.update(head.tensors if head else {})
    _warn_unused(weights, unused, fam.title)
    hints["target"] = target
    tokenizer, tokenizer_config = _input_tokenizer(path, cfg)
    if tokenizer is not None:
        _check_vocabulary(tokenizer, int(uer[WORD].size(0)), str(weights))
        uer = swap_vocab_rows(uer, getattr(tokenizer, "file_pad_id", 0))
    return Loaded(uer, str(weights), hints, head=head, tokenizer=tokenizer, tokenizer_config=tokenizer_config)


def _input_tokenizer(path: Path, cfg: DictConfig) -> tuple:
    """``(tokenizer, its config node)`` of a Hugging Face input: a directory's own files, else the composed one
    when it is ``tokenizer=hf`` (whose padding row may be swapped); ``(None, None)``: the composed one, checked
    when a writer needs it."""
    if path.is_dir() and any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        return directory_tokenizer(path)
    if cfg.get("tokenizer") is not None and cfg.tokenizer.type == "hf":
        return build_tokenizer(cfg.tokenizer), OmegaConf.to_container(cfg.tokenizer, resolve=True)
    return None, None


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
    hints = {key: encoder[key] for key in ("heads_num", "layernorm_eps", "hidden_act", "mask", "layers_num", "dropout")
             if key in encoder}
    embedding = (payload.get("config") or {}).get("embedding") or {}
    hints["layernorm"] = encoder.get("layernorm") or embedding.get("layernorm") or "standard"  # null: standard
    hints["config_path"] = f"{path}'s config"
    hints["hf"] = (payload.get("config") or {}).get("hf")
    return Loaded(to_uer_state_dict(model), str(path), hints, payload)


READERS: dict[str, Callable[[Path, DictConfig], Loaded]] = {
    "uer": read_uer, "hf": read_hf, "tf": read_tf, "uer_ckpt": read_uer_ckpt,
}


def _warn_unused(source, unused: list[str], layout: str = "BERT") -> None:
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        log.warning("%s: not converted (no place in uer's %s layout): %s", source, layout, shown)


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
    if any(key.endswith(("embeddings.word_embeddings.weight", "wte.weight")) for key in keys):
        return "hf", "a Hugging Face state dict (keys like bert.embeddings.word_embeddings.weight)"
    return None, f"a state dict with keys like {', '.join(keys[:3]) or '(none)'}"


# --- what the weights say ------------------------------------------------------------------

def infer_architecture(loaded: Loaded, cfg: DictConfig) -> dict:
    """Sizes from the weights; heads, epsilon, activation from the input's config or the composed one."""
    fallback = {"heads_num": cfg.model.heads_num, "heads_from": "model.heads_num",
                "layernorm_eps": cfg.encoder.layernorm_eps, "layernorm": cfg.model.layernorm,
                "hidden_act": cfg.encoder.hidden_act, "mask": cfg.encoder.mask, "dropout": cfg.model.dropout,
                "layers_num": cfg.model.layers_num}
    try:
        return architecture(loaded.state, loaded.source, loaded.hints, fallback)
    except NotTransformer as err:
        raise UerError(f"{err}; {WHAT_CONVERTS}") from None


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
            f"(from {arch['heads_from']}), {arch['layernorm']} LayerNorm ({arch['layernorm_positioning']}-LN"
            f"{'' if arch['embedding_layernorm'] else ', none on the embedding'}), {arch['mask']} mask, "
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
    fam = family_for(arch, cfg.tool.hf_model_type)  # checked before anything is written
    warn_layernorm(loaded, arch, "hf")
    if directory:
        require_heads(arch)
    tokenizer = _tokenizer(loaded, arch, cfg) if directory else _known_tokenizer(loaded, arch, cfg)
    arch = {**arch, **_token_ids(tokenizer)}
    backbone, head = split_head(task_model(loaded), loaded.state, loaded.source, fam.model_type)  # a task's head
    if head is not None:
        head.check_last_token(_closing_id(tokenizer), loaded.source)
    state, architecture, dropped = uer_to_hf(fam, swap_vocab_rows(backbone, arch["pad_id"]), arch, loaded.source,
                                             task_head=head is not None)
    _warn_dropped(dropped, f"Hugging Face {fam.title}")
    state = head.hf_state(state) if head else state
    config = config_json(fam, arch, architecture)
    config = head.hf_config(config) if head else config
    log.info("writing %s as %s (%s)", loaded.source, config["architectures"][0],
             "tool.hf_model_type" if cfg.tool.hf_model_type else
             "the family it came from" if (arch.get("hf") or {}).get("model_type") == fam.model_type else
             "the first family whose layout holds it")
    if not directory:
        save_hf_weights(state, path)
        _write_config(path, HF_CONFIG, arch, google=False, config=config)
        return
    texts = {}
    segments = fam.token_types(arch) if arch["segment"] else 0
    if tokenizer.kind == "spm":
        log.warning("%s tokenizes with a SentencePiece model, which a BertTokenizer cannot read: %s holds no "
                    "tokenizer files, so AutoTokenizer will not load it", loaded.source, path)
    elif tokenizer.kind == "hf":
        # A task model names the padding uer fell back to (GPT-2: eos), as its config.json's pad_token_id does,
        # so transformers pads a batch as uer did; a bare model's files name the roles as the file it came from.
        roles = tokenizer.roles if head is not None else tokenizer.exported_roles
        texts = fast_tokenizer_files(tokenizer.exported_json(segments), roles,
                                     arch["max_seq_length"], token_types=segments > 0)
    else:
        if tokenizer.kind != "bert":
            log.warning("%s tokenizes with tokenizer=%s; the exported tokenizer is a BertTokenizer over the same "
                        "vocabulary, which splits text as tokenizer=bert does", loaded.source, tokenizer.kind)
        texts = tokenizer_files(list(tokenizer.vocab.tokens), tokenizer.lowercases,
                                arch["max_seq_length"], token_types=segments > 0)
    written = save_hf_directory(state, path, config, texts)
    log.info("wrote the Hugging Face model directory %s (%s): %s", path, config["architectures"][0], ", ".join(written))


def task_model(loaded: Loaded) -> Optional[dict]:
    """What the input records of its fine-tuned task, for :func:`split_head`: the ``task`` node completed by the
    task's schema (a checkpoint written before a key existed computes that key's default)."""
    payload = loaded.head.as_payload() if loaded.head else loaded.payload
    task = ((payload or {}).get("config") or {}).get("task")
    if not task:
        return payload
    return {**payload, "config": {**payload["config"], "task": task_config(task)}}


def _tokenizer(loaded: Loaded, arch: dict, cfg: DictConfig):
    """The model's tokenizer: a checkpoint's or a Hugging Face directory's own, else the composed one (checked
    against the vocabulary size)."""
    if loaded.payload is not None:
        return checkpoint_tokenizer(loaded.payload, loaded.source)
    if loaded.tokenizer is not None:
        return loaded.tokenizer
    return vocabulary_tokenizer(cfg, arch, loaded.source)


def _known_tokenizer(loaded: Loaded, arch: dict, cfg: DictConfig):
    """For the weights alone: the tokenizer whose ids they follow when one is known (its padding row may be
    swapped), else None."""
    if loaded.payload is not None or loaded.tokenizer is not None:
        return _tokenizer(loaded, arch, cfg)
    if cfg.get("tokenizer") is not None and cfg.tokenizer.type == "hf":
        return vocabulary_tokenizer(cfg, arch, loaded.source)
    return None


def _token_ids(tokenizer) -> dict:
    """The file ids of the padding, first (bos_token, else [CLS]) and last (eos_token, else [SEP]) tokens, for
    config.json and the padding row (None: the tokenizer has no such token)."""
    if tokenizer is None:
        return {"pad_id": 0}
    pad = getattr(tokenizer, "file_pad_id", 0)
    bos, eos = (None if i is None else swap_pad([i], pad)[0] for i in (tokenizer.vocab.bos_id, tokenizer.vocab.eos_id))
    return {"pad_id": pad, "bos_id": bos, "eos_id": eos}


def _closing_id(tokenizer) -> Optional[int]:
    """The special token (uer's id) a framed text ends with: [SEP], T5's </s>; None when the text ends it
    (GPT-2) or the tokenizer is unknown."""
    if tokenizer is None:
        return None
    piece, _ = tokenizer.framing.single[-1]
    return None if piece == A else piece


def _check_vocabulary(tokenizer, rows: int, source: str) -> None:
    if len(tokenizer.vocab) != rows:
        raise UerError(f"tokenizer vocabulary {tokenizer.vocab.path} has {len(tokenizer.vocab)} tokens but {source} "
                       f"has {rows} word embedding rows; pass the vocabulary the model was trained with")


def write_tf(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    prefix = Path(str(path).removesuffix(".index"))
    warn_layernorm(loaded, arch, "tf")
    arrays, dropped = uer_to_tf(loaded.state, loaded.source)
    _warn_dropped(dropped, "TensorFlow BERT")
    save_tf_checkpoint(arrays, prefix)
    _write_config(prefix, GOOGLE_CONFIG, arch, google=True)


def warn_layernorm(loaded: Loaded, arch: dict, fmt: str) -> None:
    """Hugging Face and Google BERT compute torch's LayerNorm: a model with the original's is approximated there."""
    if arch["layernorm"] == "uer":
        log.warning("%s uses the original UER-py LayerNorm (unbiased std, eps outside the square root); %s BERT "
                    "computes the standard one, so the converted model's outputs are approximate (hidden states "
                    "differ, typically by about 1e-2), not equal to this model's", loaded.source, LAYOUTS[fmt])


def _write_config(path: Path, name: str, arch: dict, google: bool, config: Optional[dict] = None) -> None:
    try:
        require_heads(arch)
    except UerError as err:
        log.warning("%s not written: %s", path.parent / name, err)
        return
    written = write_json_beside(path, name, config if config is not None else bert_config(arch, google=google))
    if written:
        log.info("wrote %s (num_attention_heads=%d from %s)", written, arch["heads_num"], arch["heads_from"])


def _warn_dropped(dropped: list[str], layout: str) -> None:
    if dropped:
        log.warning("not written (no place in the %s layout): %s", layout, ", ".join(dropped))


def write_uer_ckpt(loaded: Loaded, arch: dict, path: Path, cfg: DictConfig) -> None:
    if loaded.payload is not None:  # uer_ckpt -> uer_ckpt: keep its config; the vocabulary moves inside
        config, tokenizer = loaded.payload.get("config") or {}, checkpoint_tokenizer(loaded.payload, loaded.source)
    else:
        config, tokenizer = checkpoint_config(cfg, arch), _tokenizer(loaded, arch, cfg)
        if loaded.tokenizer_config is not None:  # a Hugging Face directory's own: its settings, not the composed
            config["tokenizer"] = loaded.tokenizer_config
        if arch.get("hf"):
            config["hf"] = arch["hf"]
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
    nodes = model_nodes(arch)
    composed = cfg.copy()
    with open_dict(composed):  # set the shared sizes first, so every ${model.*} interpolation follows them
        composed.model.update(nodes["model"])
    config = {node: OmegaConf.to_container(composed[node], resolve=True) for node in MODEL_NODES
              if composed.get(node) is not None}
    for node in ("embedding", "encoder"):
        config[node].update(nodes[node])
    if arch["target"]:
        names = {f.name for f in dataclasses.fields(TARGETS.config_class(arch["target"]))}
        config["target"] = {key: value for key, value in {**config["target"], **nodes["target"]}.items()
                            if key in names}
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
    if config.get("target") is not None:  # a fine-tuned checkpoint records target: null
        return build_model(embedding, encoder, OmegaConf.create(config["target"]), len(tokens), tokens=tokens)
    return nn.ModuleDict({"backbone": build_backbone(embedding, encoder, len(tokens), tokens=tokens)})


WRITERS = {"uer": write_uer, "hf": write_hf, "tf": write_tf, "uer_ckpt": write_uer_ckpt}
