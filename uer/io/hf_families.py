"""Hugging Face model families <-> the UER layout: one :class:`Family` per ``config.json`` ``model_type``.

Every converter maps through the UER layout (the original toolkit's names: split query, key
and value projections, LayerNorm ``gamma``/``beta``; :mod:`uer.io.uer_format` turns them into
this project's module names).  A family declares, as data:

* its parameter table: one :class:`Rule` per UER tensor, with its Hugging Face name and the
  part it belongs to (``backbone``, ``pooler``, or a head: ``mlm``, ``nsp``, ``sop``, ``lm``);
  ``conv1d`` for GPT-2's ``Conv1D`` weights, stored ``(in, out)``; ``chunk`` for one of the
  query/key/value thirds of GPT-2's fused ``c_attn``;
* what the table cannot say as a name: the segment rows (UER has 3: padding, first, second;
  Hugging Face ``token_type_embeddings`` 2, or RoBERTa's 1, used for both segments; a padding
  row that is not zeros goes out as a third token type, after the two), the
  position offset (RoBERTa and XLM-R number positions from ``pad_token_id + 1``: the rows
  before it are dropped coming in and zero-filled going out), ALBERT's always-present
  embedding projection;
* how its ``config.json`` becomes the hints the UER side needs (heads, LayerNorm epsilon and
  placement, activation, mask) and how an architecture becomes a ``config.json`` again;
* the ``architectures`` class for each target, and the exact reason a model is refused
  (:class:`NotExpressible`), both ways.

The BERT table is :func:`uer.io.hf_format.bert_params`, the one Google's TF layout shares;
RoBERTa's, XLM-R's and ELECTRA's are that table renamed.  A tokenizer whose padding token is
not id 0 in its file (RoBERTa's ``<pad>`` = 1) is used inside uer with ids 0 and ``pad_id``
swapped (:mod:`uer.tokenizers.hf`); :func:`swap_vocab_rows` swaps the same two rows of every
tensor indexed by token, so files going out are the original ones.

:func:`architecture` reads what a UER state dict is (sizes, LayerNorm placement, target)
from its weights, :func:`family_for` picks the family its shape needs, and
:func:`model_nodes` turns an architecture into this project's config nodes.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch

from uer.errors import UerError
from uer.io.hf_format import ACTIVATION_NAMES, ACTIVATION_OUT, bert_params, count_layers

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

WORD = "embedding.word_embedding.weight"
POSITION = "embedding.position_embedding.weight"
SEGMENT = "embedding.segment_embedding.weight"
EMBEDDING_NORM = "embedding.layer_norm.gamma"
PROJECTION = ("encoder.linear.weight", "encoder.linear.bias")
FINAL_NORM = "encoder.layer_norm.gamma"
DECODER = "target.mlm_linear_2.weight"
LM_OUTPUT = "target.output_layer.weight"
LM_BIAS = "target.output_layer.bias"
# Tensors with one row per token: swapped with the padding token's row (see swap_vocab_rows).
VOCAB_ROWS = (WORD, DECODER, "target.mlm_linear_2.bias", LM_OUTPUT, LM_BIAS, "decoder.embedding.word_embedding.weight")
# Output matrices that a file leaves out when they are the word embedding.
TIED = {DECODER: WORD, LM_OUTPUT: WORD}
# The parts a UER target uses besides the backbone.
TARGET_PARTS = {"bert": ("pooler", "mlm", "nsp"), "albert": ("pooler", "mlm", "sop"), "mlm": ("mlm",),
                "lm": ("lm",), None: ()}
# Buffers and duplicates that are no weights of their own.
IGNORED = re.compile(r"(^|\.)(position_ids|token_type_ids)$|(^|\.)attn\.(masked_)?bias$")
# config.json keys never carried from the file a model came from: they describe a head or a run.
NOT_CARRIED = frozenset({"architectures", "id2label", "label2id", "num_labels", "problem_type", "finetuning_task",
                         "_name_or_path", "transformers_version", "torch_dtype", "dtype"})


class NotExpressible(UerError):
    """A model one side cannot express, with the exact reason."""


class NotTransformer(UerError):
    """UER weights without transformer layers (an RNN or CNN model): no family holds them."""


@dataclass(frozen=True)
class Rule:
    """One UER tensor and where it lives in a Hugging Face state dict."""

    uer: str
    hf: str
    part: str
    conv1d: bool = False  # GPT-2's Conv1D: the Hugging Face weight is (in, out), torch Linear's transposed
    chunk: Optional[int] = None  # one of query/key/value, thirds of a fused Hugging Face tensor (GPT-2 c_attn)


def _linear(rules: list, part: str, uer: str, hf: str, conv1d: bool = False) -> None:
    rules.append(Rule(f"{uer}.weight", f"{hf}.weight", part, conv1d=conv1d))
    rules.append(Rule(f"{uer}.bias", f"{hf}.bias", part))


def _norm(rules: list, part: str, uer: str, hf: str) -> None:
    rules.append(Rule(f"{uer}.gamma", f"{hf}.weight", part))
    rules.append(Rule(f"{uer}.beta", f"{hf}.bias", part))


def _activation_in(value, key: str, path) -> str:
    if value not in ACTIVATION_NAMES:
        raise NotExpressible(f"{path}: {key} {value!r} is not an activation uer computes; supported: "
                             f"{', '.join(sorted(ACTIVATION_NAMES))}")
    return ACTIVATION_NAMES[value]


def _dropout(arch: dict) -> float:
    return float(arch.get("dropout", 0.1))


class Family(ABC):
    """A Hugging Face model family.  Subclasses fill in the class attributes and the table."""

    model_type: str = ""
    title: str = ""
    prefix: str = ""  # the base model's attribute in head classes, with a dot ("bert.")
    roots: tuple[str, ...] = ()  # first names of the bare model's tensors
    classes: dict = {}  # UER target (None: bare) -> (architectures class, its parts besides the backbone)
    fallback: dict = {}  # UER target without a class of its own -> the target whose class is written
    defaults: dict = {}  # transformers' defaults for the config.json keys read (save_pretrained omits them)
    holds: str = ""  # what the family holds, for the messages that list what converts
    layer_name: str = ""  # a layer's names begin so, {} its index
    aliases: dict = {}  # a Hugging Face name -> another name of the same tensor, read if the first is absent
    one_segment_row = False  # config type_vocab_size 1 when the model's two segments are one
    gelu_mlm_head = False  # the masked-LM head applies exact GELU whatever hidden_act says (RoBERTa, ELECTRA)

    # --- the table ---------------------------------------------------------------------------

    @abstractmethod
    def rules(self, layers: int, projection: bool) -> list[Rule]:
        """Every tensor's rule, for ``layers`` layers (with the embedding projection or not)."""

    # --- Hugging Face -> UER -----------------------------------------------------------------

    def setting(self, config: dict, key: str):
        return config.get(key, self.defaults.get(key))

    def check_config(self, config: dict, path) -> None:
        """A :class:`NotExpressible` if the model ``config`` describes has no UER form."""
        for key, expected in (("is_decoder", False), ("add_cross_attention", False),
                              ("position_embedding_type", "absolute")):
            value = config.get(key, expected)
            if value != expected:
                raise NotExpressible(f"{path}: {key}={value!r}; uer builds {self.title} with {key}={expected!r} "
                                     f"only")

    def hints(self, config: dict, path) -> dict:
        """What the UER side needs that the weights do not say (see :func:`architecture`)."""
        hints = {"config_path": str(path), "mask": "fully_visible", "layernorm_positioning": "post",
                 "heads_num": self.setting(config, "num_attention_heads"),
                 "layernorm_eps": float(self.setting(config, "layer_norm_eps")),
                 "hidden_act": _activation_in(self.setting(config, "hidden_act"), "hidden_act", path),
                 "dropout": float(self.setting(config, "hidden_dropout_prob"))}
        return hints

    def position_offset(self, pad_id: int) -> int:
        return 0

    def normalise(self, state: StateDict) -> StateDict:
        """Prefixed (head-class) names, LayerNorm ``weight``/``bias`` names, no buffers."""
        prefixed = any(key.startswith(self.prefix) for key in state)
        named: StateDict = {}
        for key, tensor in state.items():
            if IGNORED.search(key):
                continue
            if not prefixed and key.startswith(self.roots):
                key = self.prefix + key
            key = re.sub(r"\.LayerNorm\.gamma$", ".LayerNorm.weight", key)
            key = re.sub(r"\.LayerNorm\.beta$", ".LayerNorm.bias", key)
            named[key] = tensor
        for name, alias in self.aliases.items():
            if name not in named and alias in named:
                named[name] = named[alias]
        return named

    def layers(self, named: StateDict, config: dict, source: str) -> int:
        pattern = re.compile("^" + re.escape(self.layer_name).replace(r"\{\}", r"(\d+)"))
        indices = {int(m.group(1)) for name in named if (m := pattern.match(name))}
        if indices and indices != set(range(len(indices))):
            absent = min(set(range(max(indices) + 1)) - indices)
            raise UerError(f"{source}: transformer layer {absent} is missing (found layers {sorted(indices)})")
        return len(indices)

    def target_of(self, parts: set[str]) -> Optional[str]:
        """The UER target whose head parts ``parts`` (found in a file) hold, None for a bare model."""
        for target, (_, used) in self.classes.items():
            heads = {part for part in used if part != "pooler"}
            if target is not None and heads and heads <= parts:
                return target
        return None

    def segment_in(self, tensor: torch.Tensor, name: str, source: str) -> torch.Tensor:
        """Hugging Face token types -> UER's 3 segment rows (0 padding, 1 first, 2 second): 1 row (both segments)
        or 2 (first, second), the padding row zeros; 3 rows are first, second and the padding row
        (:meth:`segment_out` writes them so)."""
        if tensor.dim() != 2 or tensor.size(0) not in (1, 2, 3):
            raise NotExpressible(f"{source}: {name} has shape {tuple(tensor.shape)}; uer has two segments and a "
                                 "padding row, so a token type embedding of 1 or 2 rows (3: the padding row last)")
        if tensor.size(0) == 3:
            return torch.cat([tensor[2:], tensor[:2]])
        return torch.cat([tensor.new_zeros(1, tensor.size(1)), tensor[:1], tensor[-1:]])

    def token_types(self, arch: dict) -> int:
        """Token types a tokenizer gives ``arch``: one where the family has one and the model's two segments
        agree, else two."""
        return 1 if self.one_segment_row and arch.get("type_vocab_size") == 1 else 2

    def type_vocab_size(self, arch: dict) -> int:
        """Rows of the token type embedding written for ``arch``: its token types, or 3 when its padding row is
        not zeros (see :meth:`segment_out`)."""
        return 3 if arch.get("padding_segment") else self.token_types(arch)

    def segment_out(self, tensor: torch.Tensor, arch: dict) -> torch.Tensor:
        """UER's segment rows -> token types: rows 1 and 2 (or row 1 alone: :meth:`token_types`); a padding row
        that is not zeros (a model trained here) follows them as a third token type, which no tokenizer gives,
        so that converting back gives it again."""
        if arch.get("padding_segment"):
            return torch.cat([tensor[1:], tensor[:1]])
        return tensor[1:1 + self.token_types(arch)]

    def check_heads_in(self, target: Optional[str], config: dict, path) -> None:
        """A head the file holds that uer computes otherwise is a :class:`NotExpressible`."""
        act = self.setting(config, "hidden_act")
        if self.gelu_mlm_head and target == "mlm" and act != "gelu":
            raise NotExpressible(f"{path}: hidden_act={act!r}, but {self.title}'s masked-LM head applies exact GELU, "
                                 "which uer's head (it applies the encoder's hidden_act) cannot follow")

    # --- UER -> Hugging Face -----------------------------------------------------------------

    @abstractmethod
    def check_uer(self, arch: dict) -> None:
        """A :class:`NotExpressible` naming the first thing of ``arch`` this family cannot hold."""

    def class_for(self, target: Optional[str]) -> tuple[str, tuple[str, ...]]:
        target = target if target in self.classes else self.fallback.get(target, target)
        if target not in self.classes:
            raise NotExpressible(f"{self.title} has no class for target {target}")
        return self.classes[target]

    @abstractmethod
    def config_json(self, arch: dict, architecture: str) -> dict:
        """The ``config.json`` of ``arch`` as class ``architecture``."""

    # --- shared checks -----------------------------------------------------------------------

    def _require(self, arch: dict, segments: bool, pre: bool, causal: bool, shared: bool,
                 projection: Optional[bool], targets: tuple) -> None:
        """The shape every model of this family has; ``projection`` None: either."""
        name, has = self.title, arch["segment"]
        if has != segments:
            family = "adds token type embeddings (a segment embedding)" if segments else "has no token type embedding"
            model = "one (embedding=word_pos_seg)" if has else "none (embedding=word_pos)"
            raise NotExpressible(f"{name} {family}; this model has {model}")
        if arch["embedding_layernorm"] == pre:
            model = "has one" if arch["embedding_layernorm"] else "has none (embedding.remove_layernorm=true)"
            raise NotExpressible(f"{name} {'has no' if pre else 'normalises its'} embedding LayerNorm; this model "
                                 f"{model}")
        positioning = "pre" if pre else "post"
        if arch["layernorm_positioning"] != positioning:
            where = "before each sub-layer" if pre else "after each residual sum"
            raise NotExpressible(f"{name} puts its LayerNorms {where} (encoder.layernorm_positioning={positioning}); "
                                 f"this model's are {arch['layernorm_positioning']}")
        mask = "causal" if causal else "fully_visible"
        if arch["mask"] != mask:
            raise NotExpressible(f"{name} is {'left to right' if causal else 'bidirectional'} "
                                 f"(encoder.mask={mask}); this model's mask is {arch['mask']}")
        if arch["parameter_sharing"] != shared:
            family = "one layer shared by the stack" if shared else "a weight set per layer"
            model = "shares one layer" if arch["parameter_sharing"] else "has one per layer"
            raise NotExpressible(f"{name} has {family}; this model {model} "
                                 f"(model.parameter_sharing={str(arch['parameter_sharing']).lower()})")
        if projection is False and arch["emb_size"] != arch["hidden_size"]:
            raise NotExpressible(f"{name} has no embedding projection; this model's emb_size {arch['emb_size']} "
                                 f"differs from its hidden_size {arch['hidden_size']}")
        target = arch["target"]
        if target not in targets and self.fallback.get(target) not in targets:
            shown = ", ".join(t or "none" for t in targets)
            raise NotExpressible(f"{name} has no place for target {target} (it holds target {shown})")

    def _mlm_activation(self, arch: dict) -> None:
        if self.gelu_mlm_head and arch["target"] in ("mlm", "bert", "albert") and arch["hidden_act"] != "gelu":
            raise NotExpressible(f"{self.title}'s masked-LM head applies exact GELU whatever hidden_act says; this "
                                 f"model's head applies its hidden_act {arch['hidden_act']}")

    def _common_config(self, arch: dict, architecture: str) -> dict:
        return {"architectures": [architecture], "model_type": self.model_type, "vocab_size": arch["vocab_size"],
                "initializer_range": 0.02, "tie_word_embeddings": bool(arch.get("tie_weights", True)),
                "pad_token_id": int(arch.get("pad_id", 0))}

    def _bert_config(self, arch: dict, architecture: str) -> dict:
        return {**self._common_config(arch, architecture),
                "hidden_size": arch["hidden_size"], "num_hidden_layers": arch["layers_num"],
                "num_attention_heads": arch["heads_num"], "intermediate_size": arch["feedforward_size"],
                "hidden_act": ACTIVATION_OUT[arch["hidden_act"]], "hidden_dropout_prob": _dropout(arch),
                "attention_probs_dropout_prob": _dropout(arch),
                "max_position_embeddings": arch["max_seq_length"] + self.position_offset(int(arch.get("pad_id", 0))),
                "type_vocab_size": self.type_vocab_size(arch), "layer_norm_eps": arch["layernorm_eps"]}


# --- BERT and its renamings ----------------------------------------------------------------

def _bert_rules(layers: int) -> list[Rule]:
    return [Rule(p.uer, p.hf, p.part) for p in bert_params(layers)]


class Bert(Family):
    model_type = "bert"
    title = "BERT"
    prefix = "bert."
    roots = ("embeddings.", "encoder.", "pooler.")
    classes = {"bert": ("BertForPreTraining", ("pooler", "mlm", "nsp")), "mlm": ("BertForMaskedLM", ("mlm",)),
               None: ("BertModel", ("pooler",))}
    fallback = {"albert": "mlm"}
    defaults = {"num_attention_heads": 12, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                "pad_token_id": 0, "type_vocab_size": 2}
    layer_name = "bert.encoder.layer.{}."
    aliases = {"cls.predictions.bias": "cls.predictions.decoder.bias"}
    holds = ("word, position and segment embeddings with a LayerNorm, post-LN bidirectional layers with a weight "
             "set each, emb_size = hidden_size; target bert, mlm or none")
    renames: tuple = ()  # (BERT name prefix, this family's) applied to the BERT table, in order
    dropped_parts: tuple = ()

    def rules(self, layers: int, projection: bool) -> list[Rule]:
        rules = []
        for rule in _bert_rules(layers):
            if rule.part in self.dropped_parts:
                continue
            hf = rule.hf
            for old, new in self.renames:
                if hf.startswith(old):
                    hf = new + hf[len(old):]
                    break
            rules.append(Rule(rule.uer, hf, rule.part))
        if projection:
            _linear(rules, "backbone", "encoder.linear", f"{self.prefix}embeddings_project")
        return rules

    def check_uer(self, arch: dict) -> None:
        self._require(arch, segments=True, pre=False, causal=False, shared=False, projection=False,
                      targets=tuple(self.classes))

    def config_json(self, arch: dict, architecture: str) -> dict:
        return self._bert_config(arch, architecture)


class Roberta(Bert):
    model_type = "roberta"
    title = "RoBERTa"
    prefix = "roberta."
    classes = {"mlm": ("RobertaForMaskedLM", ("mlm",)), None: ("RobertaModel", ("pooler",))}
    fallback = {"bert": "mlm", "albert": "mlm"}
    defaults = {**Bert.defaults, "pad_token_id": 1, "type_vocab_size": 2}
    layer_name = "roberta.encoder.layer.{}."
    aliases = {"lm_head.bias": "lm_head.decoder.bias"}
    renames = (("bert.", "roberta."), ("cls.predictions.transform.dense.", "lm_head.dense."),
               ("cls.predictions.transform.LayerNorm.", "lm_head.layer_norm."),
               ("cls.predictions.decoder.", "lm_head.decoder."), ("cls.predictions.bias", "lm_head.bias"))
    dropped_parts = ("nsp",)
    holds = ("the BERT layout with positions counted from pad_token_id + 1 and one token type; target mlm or none "
             "(exact GELU in the masked-LM head)")
    one_segment_row = True
    gelu_mlm_head = True

    def position_offset(self, pad_id: int) -> int:
        return pad_id + 1

    def check_uer(self, arch: dict) -> None:
        super().check_uer(arch)
        self._mlm_activation(arch)

    def config_json(self, arch: dict, architecture: str) -> dict:
        return {**self._bert_config(arch, architecture), "bos_token_id": arch.get("bos_id"),
                "eos_token_id": arch.get("eos_id")}


class XlmRoberta(Roberta):
    model_type = "xlm-roberta"
    title = "XLM-RoBERTa"
    classes = {"mlm": ("XLMRobertaForMaskedLM", ("mlm",)), None: ("XLMRobertaModel", ("pooler",))}
    holds = "the RoBERTa layout"


class Electra(Bert):
    model_type = "electra"
    title = "ELECTRA"
    prefix = "electra."
    roots = ("embeddings.", "embeddings_project.", "encoder.")
    classes = {"mlm": ("ElectraForMaskedLM", ("mlm",)), None: ("ElectraModel", ())}
    fallback = {"bert": "mlm", "albert": "mlm"}
    defaults = {**Bert.defaults, "num_attention_heads": 4, "embedding_size": 128}
    layer_name = "electra.encoder.layer.{}."
    aliases = {}
    renames = (("bert.", "electra."), ("cls.predictions.transform.dense.", "generator_predictions.dense."),
               ("cls.predictions.transform.LayerNorm.", "generator_predictions.LayerNorm."),
               ("cls.predictions.decoder.", "generator_lm_head."), ("cls.predictions.bias", "generator_lm_head.bias"))
    dropped_parts = ("nsp", "pooler")
    holds = ("the BERT layout without a pooler, with a projection (embeddings_project = encoder.linear) when "
             "emb_size != hidden_size; target mlm (the generator's head) or none; the discriminator's head has no "
             "place in uer and is dropped with a warning")
    gelu_mlm_head = True

    def check_uer(self, arch: dict) -> None:
        self._require(arch, segments=True, pre=False, causal=False, shared=False, projection=None,
                      targets=tuple(self.classes))
        self._mlm_activation(arch)

    def config_json(self, arch: dict, architecture: str) -> dict:
        return {**self._bert_config(arch, architecture), "embedding_size": arch["emb_size"]}


# --- ALBERT ----------------------------------------------------------------------------------

class Albert(Family):
    model_type = "albert"
    title = "ALBERT"
    prefix = "albert."
    roots = ("embeddings.", "encoder.", "pooler.")
    classes = {"albert": ("AlbertForPreTraining", ("pooler", "mlm", "sop")), "mlm": ("AlbertForMaskedLM", ("mlm",)),
               None: ("AlbertModel", ("pooler",))}
    fallback = {"bert": "mlm"}
    defaults = {"num_attention_heads": 64, "layer_norm_eps": 1e-12, "hidden_act": "gelu_new",
                "hidden_dropout_prob": 0.0, "pad_token_id": 0, "type_vocab_size": 2, "num_hidden_layers": 12,
                "num_hidden_groups": 1, "inner_group_num": 1, "embedding_size": 128}
    aliases = {"predictions.bias": "predictions.decoder.bias"}
    holds = ("word, position and segment embeddings with a LayerNorm, a projection to hidden_size, one post-LN "
             "layer shared by the stack; target albert, mlm or none")
    LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0"
    layer_name = LAYER + "."

    def rules(self, layers: int, projection: bool) -> list[Rule]:
        rules: list[Rule] = []
        for uer, hf in (("word", "word"), ("position", "position")):
            rules.append(Rule(f"embedding.{uer}_embedding.weight", f"albert.embeddings.{hf}_embeddings.weight",
                              "backbone"))
        rules.append(Rule(SEGMENT, "albert.embeddings.token_type_embeddings.weight", "backbone"))
        _norm(rules, "backbone", "embedding.layer_norm", "albert.embeddings.LayerNorm")
        _linear(rules, "backbone", "encoder.linear", "albert.encoder.embedding_hidden_mapping_in")
        layer, uer = self.LAYER, "encoder.transformer"
        for index, name in enumerate(("query", "key", "value")):
            _linear(rules, "backbone", f"{uer}.self_attn.linear_layers.{index}", f"{layer}.attention.{name}")
        _linear(rules, "backbone", f"{uer}.self_attn.final_linear", f"{layer}.attention.dense")
        _norm(rules, "backbone", f"{uer}.layer_norm_1", f"{layer}.attention.LayerNorm")
        _linear(rules, "backbone", f"{uer}.feed_forward.linear_1", f"{layer}.ffn")
        _linear(rules, "backbone", f"{uer}.feed_forward.linear_2", f"{layer}.ffn_output")
        _norm(rules, "backbone", f"{uer}.layer_norm_2", f"{layer}.full_layer_layer_norm")
        _linear(rules, "pooler", "target.sop_linear_1", "albert.pooler")
        _linear(rules, "mlm", "target.mlm_linear_1", "predictions.dense")
        _norm(rules, "mlm", "target.layer_norm", "predictions.LayerNorm")
        rules.append(Rule(DECODER, "predictions.decoder.weight", "mlm"))
        rules.append(Rule("target.mlm_linear_2.bias", "predictions.bias", "mlm"))
        _linear(rules, "sop", "target.sop_linear_2", "sop_classifier.classifier")
        return rules

    def check_config(self, config: dict, path) -> None:
        super().check_config(config, path)
        for key in ("num_hidden_groups", "inner_group_num"):
            if self.setting(config, key) != 1:
                raise NotExpressible(f"{path}: {key}={self.setting(config, key)}; uer's ALBERT applies one shared "
                                     "layer (num_hidden_groups=1, inner_group_num=1)")

    def hints(self, config: dict, path) -> dict:
        return {**super().hints(config, path), "layers_num": int(self.setting(config, "num_hidden_layers"))}

    def layers(self, named: StateDict, config: dict, source: str) -> int:
        return int(self.setting(config, "num_hidden_layers"))

    def check_uer(self, arch: dict) -> None:
        self._require(arch, segments=True, pre=False, causal=False, shared=True, projection=None,
                      targets=tuple(self.classes))

    def config_json(self, arch: dict, architecture: str) -> dict:
        return {**self._bert_config(arch, architecture), "embedding_size": arch["emb_size"], "num_hidden_groups": 1,
                "inner_group_num": 1, "bos_token_id": arch.get("bos_id"), "eos_token_id": arch.get("eos_id")}


# --- GPT-2 -----------------------------------------------------------------------------------

class Gpt2(Family):
    model_type = "gpt2"
    title = "GPT-2"
    prefix = "transformer."
    roots = ("wte.", "wpe.", "h.", "ln_f.")
    classes = {"lm": ("GPT2LMHeadModel", ("lm",)), None: ("GPT2Model", ())}
    defaults = {"n_head": 12, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "resid_pdrop": 0.1,
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
    layer_name = "transformer.h.{}."
    holds = ("word and position embeddings without a LayerNorm or segments, pre-LN causal layers "
             "(encoder.layernorm_positioning=pre) ending with a LayerNorm; target lm without an output bias "
             "(target.output_bias=false), or none")

    def rules(self, layers: int, projection: bool) -> list[Rule]:
        rules = [Rule(WORD, "transformer.wte.weight", "backbone"), Rule(POSITION, "transformer.wpe.weight", "backbone")]
        for layer in range(layers):
            uer, hf = f"encoder.transformer.{layer}", f"transformer.h.{layer}"
            _norm(rules, "backbone", f"{uer}.layer_norm_1", f"{hf}.ln_1")
            for index in range(3):
                rules.append(Rule(f"{uer}.self_attn.linear_layers.{index}.weight", f"{hf}.attn.c_attn.weight",
                                  "backbone", conv1d=True, chunk=index))
                rules.append(Rule(f"{uer}.self_attn.linear_layers.{index}.bias", f"{hf}.attn.c_attn.bias",
                                  "backbone", chunk=index))
            _linear(rules, "backbone", f"{uer}.self_attn.final_linear", f"{hf}.attn.c_proj", conv1d=True)
            _norm(rules, "backbone", f"{uer}.layer_norm_2", f"{hf}.ln_2")
            _linear(rules, "backbone", f"{uer}.feed_forward.linear_1", f"{hf}.mlp.c_fc", conv1d=True)
            _linear(rules, "backbone", f"{uer}.feed_forward.linear_2", f"{hf}.mlp.c_proj", conv1d=True)
        _norm(rules, "backbone", "encoder.layer_norm", "transformer.ln_f")
        rules.append(Rule(LM_OUTPUT, "lm_head.weight", "lm"))
        return rules

    def check_config(self, config: dict, path) -> None:
        for key in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx", "add_cross_attention"):
            expected = self.defaults[key]
            if self.setting(config, key) != expected:
                raise NotExpressible(f"{path}: {key}={self.setting(config, key)!r}; uer builds GPT-2 with "
                                     f"{key}={expected!r} only")

    def hints(self, config: dict, path) -> dict:
        return {"config_path": str(path), "mask": "causal", "layernorm_positioning": "pre",
                "heads_num": self.setting(config, "n_head"),
                "layernorm_eps": float(self.setting(config, "layer_norm_epsilon")),
                "hidden_act": _activation_in(self.setting(config, "activation_function"), "activation_function",
                                             path),
                "dropout": float(self.setting(config, "resid_pdrop"))}

    def check_uer(self, arch: dict) -> None:
        self._require(arch, segments=False, pre=True, causal=True, shared=False, projection=False,
                      targets=tuple(self.classes))
        if arch["target"] == "lm" and arch["output_bias"]:
            raise NotExpressible("GPT-2's lm_head has no bias; this model's target.output_layer has one "
                                 "(target.output_bias=true)")

    def config_json(self, arch: dict, architecture: str) -> dict:
        dropout = _dropout(arch)
        config = self._common_config(arch, architecture)
        config.update(n_positions=arch["max_seq_length"], n_embd=arch["hidden_size"], n_layer=arch["layers_num"],
                      n_head=arch["heads_num"], n_inner=arch["feedforward_size"],
                      activation_function=ACTIVATION_OUT[arch["hidden_act"]], resid_pdrop=dropout,
                      embd_pdrop=dropout, attn_pdrop=dropout, layer_norm_epsilon=arch["layernorm_eps"],
                      bos_token_id=arch.get("bos_id"), eos_token_id=arch.get("eos_id"))
        return config


FAMILIES: dict[str, Family] = {family.model_type: family for family in
                               (Bert(), Roberta(), XlmRoberta(), Electra(), Albert(), Gpt2())}
# The family a model's shape needs, tried in this order (RoBERTa and XLM-R: recorded or chosen only).
BY_SHAPE = ("bert", "electra", "albert", "gpt2")


def family(model_type, path) -> Family:
    """The family of a ``config.json``'s ``model_type`` (``path`` names the file in the message)."""
    if model_type not in FAMILIES:
        raise NotExpressible(f"{path}: model_type {model_type!r} is not a family uer builds; it builds "
                             f"{', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def describe_families() -> str:
    """What each family holds, for the messages that list what converts."""
    return "; ".join(f"{name} ({FAMILIES[name].holds})" for name in FAMILIES)


# --- Hugging Face -> UER ---------------------------------------------------------------------------

def hf_to_uer(fam: Family, state: StateDict, config: dict, source: str,
              config_path) -> tuple[StateDict, Optional[str], list[str]]:
    """A Hugging Face state dict of family ``fam`` -> (UER state dict, its target, names not converted).

    A missing backbone tensor or a half-present head is a :class:`UerError` naming ``source``;
    names of another family than ``config.json`` says are named as such.
    """
    fam.check_config(config, config_path)
    named = fam.normalise(state)
    layers = fam.layers(named, config, source)
    if not layers:
        raise UerError(f"{source} has no {fam.title} layers ({fam.layer_name.format(0)}*)"
                       f"{_other_family(named, fam, config_path)}")
    projection = f"{fam.prefix}embeddings_project.weight" in named
    rules = fam.rules(layers, projection)
    declared = _declared_parts(fam, config)
    present = set()
    for part in dict.fromkeys(rule.part for rule in rules):
        group = [rule for rule in rules if rule.part == part]
        required = [rule for rule in group if rule.uer not in TIED]  # a tied output matrix may be left out
        if part == "backbone" or any(rule.hf in named for rule in group) or (not required and part in declared):
            absent = [rule for rule in required if rule.hf not in named]
            if absent:
                what = "" if part == "backbone" else f" (the {part} head is incomplete)"
                raise UerError(f"{source} has no {absent[0].hf}{what}; it is not a complete {fam.title} checkpoint"
                               f"{_other_family(named, fam, config_path) if part == 'backbone' else ''}")
            present.add(part)
    target = fam.target_of(present)
    fam.check_heads_in(target, config, config_path)
    keep = {"backbone", "pooler", *TARGET_PARTS[target]}
    uer: StateDict = {}
    used: set[str] = set()
    chunks: dict[str, list[torch.Tensor]] = {}
    for rule in rules:
        if rule.part not in keep or rule.part not in present:
            continue
        if rule.hf not in named:  # a tied output matrix left out of the file (the word embedding comes first)
            uer[rule.uer] = uer[TIED[rule.uer]]
            continue
        tensor = named[rule.hf]
        used.add(rule.hf)
        if rule.conv1d:
            tensor = tensor.t()
        if rule.chunk is not None:
            if rule.hf not in chunks:
                if tensor.size(0) % 3:
                    raise UerError(f"{source}: {rule.hf} has shape {tuple(named[rule.hf].shape)}; query, key and "
                                   "value need three equal parts")
                chunks[rule.hf] = list(tensor.chunk(3, dim=0))
            tensor = chunks[rule.hf][rule.chunk]
        if rule.uer == SEGMENT:
            tensor = fam.segment_in(tensor, rule.hf, source)
        elif rule.uer == POSITION:
            offset = fam.position_offset(int(fam.setting(config, "pad_token_id") or 0))
            if tensor.size(0) <= offset:
                raise UerError(f"{source}: {rule.hf} has {tensor.size(0)} rows, none after the {offset} that "
                               f"{fam.title} reserves (pad_token_id + 1)")
            tensor = tensor[offset:]
        uer[rule.uer] = tensor.contiguous()
    if isinstance(fam, Albert):
        _albert_projection_in(uer, source)
    unused = sorted(name for name in named if name not in used and fam.aliases.get(name) not in used
                    and name not in fam.aliases.values())
    return uer, target, unused


def _declared_parts(fam: Family, config: dict) -> set[str]:
    """The parts of the class ``config.json``'s ``architectures`` names (GPT-2's tied lm_head is in no file)."""
    named = set(config.get("architectures") or ())
    return {part for name, parts in fam.classes.values() if name in named for part in parts}


def _albert_projection_in(uer: StateDict, source: str) -> None:
    """ALBERT projects embeddings even when emb_size == hidden_size; uer only when they differ."""
    weight, bias = uer[PROJECTION[0]], uer[PROJECTION[1]]
    if weight.size(0) != weight.size(1):
        return
    if torch.equal(weight, torch.eye(weight.size(0), dtype=weight.dtype)) and not bias.any():
        del uer[PROJECTION[0]], uer[PROJECTION[1]]
        return
    raise NotExpressible(f"{source}: embedding_size equals hidden_size ({weight.size(0)}), but ALBERT's "
                         "embedding_hidden_mapping_in is not the identity; uer's encoder projects only when the sizes "
                         "differ")


def _other_family(named, fam: Family, config_path) -> str:
    """`` (its names are X's, not ...)`` when the names belong to another family than config.json says."""
    for other in FAMILIES.values():
        if other is fam or other.prefix == fam.prefix:
            continue
        if any(name.startswith(other.prefix) for name in named):
            said = f"{config_path} says model_type {fam.model_type}" if config_path else f"read as {fam.model_type}"
            return (f"; its names are those of {other.title} ({other.prefix}*), but {said}: give the config.json "
                    "that belongs to these weights")
    return ""


# --- UER -> Hugging Face ---------------------------------------------------------------------------

def uer_to_hf(fam: Family, uer: StateDict, arch: dict, source: str,
              task_head: bool = False) -> tuple[StateDict, str, list[str]]:
    """UER state dict -> (Hugging Face names of ``fam``'s class for the target, that class, UER keys not written).

    Raises :class:`NotExpressible` when ``fam`` cannot hold the model ``arch`` describes.  ``task_head``: the
    backbone of a fine-tuned model whose head (:mod:`uer.io.hf_heads`) brings its own pooler or has none.
    """
    fam.check_uer(arch)
    architecture, parts = fam.class_for(arch["target"])
    projection = PROJECTION[0] in uer
    uer = dict(uer)
    if isinstance(fam, Albert) and not projection:  # emb_size == hidden_size: the identity
        size = arch["hidden_size"]
        dtype = uer[WORD].dtype
        uer[PROJECTION[0]], uer[PROJECTION[1]] = torch.eye(size, dtype=dtype), torch.zeros(size, dtype=dtype)
        projection = True
    rules = fam.rules(arch["layers_num"], projection)
    out: StateDict = {}
    used: set[str] = set()
    chunked: dict[str, list[tuple[int, torch.Tensor, bool]]] = {}
    for part in ("backbone", *parts):
        group = [rule for rule in rules if rule.part == part]
        absent = [rule for rule in group if rule.uer not in uer]
        if part == "pooler" and len(absent) == len(group):
            if task_head:
                continue
            logger.warning("%s has no pooler (%s); %s initialises one when it loads %s", source, group[0].uer,
                           "transformers", architecture)
            continue
        if absent:
            raise UerError(f"{source} has no {absent[0].uer}; the {part} part of {fam.title}'s {architecture} is "
                           "incomplete")
        for rule in group:
            tensor = uer[rule.uer]
            used.add(rule.uer)
            if rule.uer == SEGMENT:
                tensor = fam.segment_out(tensor, arch)
            elif rule.uer == POSITION:
                offset = fam.position_offset(int(arch.get("pad_id", 0)))
                tensor = torch.cat([tensor.new_zeros(offset, tensor.size(1)), tensor]) if offset else tensor
            if rule.chunk is not None:
                chunked.setdefault(rule.hf, []).append((rule.chunk, tensor, rule.conv1d))
                continue
            if rule.conv1d:
                tensor = tensor.t()
            out[rule.hf] = tensor.detach().contiguous().clone()
    for name, pieces in chunked.items():
        tensor = torch.cat([piece for _, piece, _ in sorted(pieces, key=lambda item: item[0])], dim=0)
        out[name] = (tensor.t() if pieces[0][2] else tensor).detach().contiguous().clone()
    for name, alias in fam.aliases.items():  # the same tensor under both names, as the class's state_dict has it
        if name in out:
            out[alias] = out[name]
    if not set(parts) - {"pooler"}:  # the bare model: its own names, without the prefix head classes add
        out = {key.removeprefix(fam.prefix): tensor for key, tensor in out.items()}
    generated = {PROJECTION[0], PROJECTION[1]} if isinstance(fam, Albert) and PROJECTION[0] not in uer else set()
    dropped = sorted(key for key in uer if key not in used and key not in generated)
    return out, architecture, dropped


# --- what a UER model is ---------------------------------------------------------------------------

TARGET_KEYS = (("target.nsp_linear_2.weight", "bert"), ("target.sop_linear_2.weight", "albert"),
               ("target.mlm_linear_1.weight", "mlm"), (LM_OUTPUT, "lm"))


def _tensor(state: StateDict, key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise UerError(f"{source} has no {key}; it is not a complete model")
    return state[key]


def architecture(state: StateDict, source: str, hints: dict, fallback: dict) -> dict:
    """What the UER state dict ``state`` is: sizes from the weights; heads, epsilon, activation, mask and
    LayerNorm placement from ``hints`` (what the input's config said), else ``fallback``."""
    vocab_size, emb_size = _tensor(state, WORD, source).shape
    layers = count_layers(state, "uer", source)
    shared = any(key.startswith("encoder.transformer.self_attn.") for key in state)
    if not layers and not shared:
        raise NotTransformer(f"{source} has no transformer layers (encoder.transformer.*)")
    prefix = "encoder.transformer.0." if layers else "encoder.transformer."
    hidden_size = _tensor(state, prefix + "self_attn.linear_layers.0.weight", source).shape[0]
    target = hints["target"] if "target" in hints else next((name for key, name in TARGET_KEYS if key in state), None)
    output = LM_OUTPUT if target == "lm" else DECODER
    heads, heads_from = hints.get("heads_num"), hints.get("config_path")
    if heads is None:
        heads, heads_from = fallback["heads_num"], fallback["heads_from"]

    def hint(key):
        return hints[key] if hints.get(key) is not None else fallback[key]

    arch = {
        "vocab_size": int(vocab_size),
        "emb_size": int(emb_size),
        "hidden_size": int(hidden_size),
        "feedforward_size": int(_tensor(state, prefix + "feed_forward.linear_1.weight", source).shape[0]),
        "layers_num": layers or int(hint("layers_num")),
        "parameter_sharing": not layers,
        "max_seq_length": int(_tensor(state, POSITION, source).shape[0]),
        "segment": SEGMENT in state,
        "heads_num": int(heads),
        "heads_from": heads_from,
        "layernorm_eps": float(hint("layernorm_eps")),
        "layernorm": hints.get("layernorm") or fallback.get("layernorm") or "standard",
        "hidden_act": hint("hidden_act"),
        "mask": hint("mask"),
        "dropout": float(hint("dropout")),
        "target": target,
        "tie_weights": output in state and torch.equal(state[output], state[WORD]),
        "layernorm_positioning": "pre" if FINAL_NORM in state else "post",
        "embedding_layernorm": EMBEDDING_NORM in state,
        "output_bias": LM_BIAS in state,
        "hf": hints.get("hf"),
    }
    if SEGMENT in state:
        rows = state[SEGMENT]
        arch["type_vocab_size"] = 1 if rows.size(0) == 3 and torch.equal(rows[1], rows[2]) else 2
        arch["padding_segment"] = bool(rows[0].any())
    if shared and not hints.get("layers_num"):
        logger.warning("%s has one shared layer; layers_num=%d comes from model.layers_num", source,
                       arch["layers_num"])
    return arch


def family_for(arch: dict, chosen: Optional[str] = None) -> Family:
    """The family to write ``arch`` as: ``chosen``, else the one it came from, else the first its shape fits."""
    if chosen:
        fam = family(chosen, "tool.hf_model_type")
        fam.check_uer(arch)
        return fam
    record = arch.get("hf") or {}
    if record.get("model_type") in FAMILIES:
        fam = FAMILIES[record["model_type"]]
        try:
            fam.check_uer(arch)
            return fam
        except NotExpressible as err:
            logger.warning("the model came from %s but %s; choosing the family by its shape", fam.title, err)
    reasons = []
    for name in BY_SHAPE:
        try:
            FAMILIES[name].check_uer(arch)
            return FAMILIES[name]
        except NotExpressible as err:
            reasons.append(f"{name}: {err}")
    raise NotExpressible("no Hugging Face family holds this model (" + "; ".join(reasons) + ")")


def config_json(fam: Family, arch: dict, architecture: str) -> dict:
    """The ``config.json`` of ``arch`` written as ``fam``'s ``architecture``; settings of the file the model came
    from that uer does not decide (token ids of roles, ...) are carried over."""
    record = arch.get("hf") or {}
    carried = record.get("config") if record.get("model_type") == fam.model_type else None
    config = fam.config_json(arch, architecture)
    if isinstance(carried, dict):  # what uer decides wins; what it does not know (None) keeps the file's value
        kept = {key: value for key, value in carried.items() if key not in NOT_CARRIED}
        config = {**kept, **{key: value for key, value in config.items() if value is not None or key not in kept}}
    return config


# --- UER config nodes ----------------------------------------------------------------------------

def model_nodes(arch: dict) -> dict:
    """This project's model config nodes (``model``, ``embedding``, ``encoder``, ``target`` when there is one)
    for ``arch``, with every size explicit."""
    sizes = {key: arch[key] for key in ("emb_size", "hidden_size", "feedforward_size", "heads_num", "layers_num",
                                        "max_seq_length", "hidden_act", "parameter_sharing", "layernorm")}
    nodes = {
        "model": {**sizes, "dropout": arch["dropout"]},
        "embedding": {"type": "word_pos_seg" if arch["segment"] else "word_pos", "emb_size": arch["emb_size"],
                      "max_seq_length": arch["max_seq_length"], "dropout": arch["dropout"],
                      "layernorm_eps": arch["layernorm_eps"], "layernorm": arch["layernorm"],
                      "remove_layernorm": not arch["embedding_layernorm"]},
        "encoder": {"type": "transformer", "mask": arch["mask"], "layernorm_eps": arch["layernorm_eps"],
                    "dropout": arch["dropout"], "layernorm_positioning": arch["layernorm_positioning"],
                    **{key: sizes[key] for key in ("hidden_size", "feedforward_size", "heads_num", "layers_num",
                                                   "hidden_act", "parameter_sharing", "layernorm")}},
    }
    if arch["target"]:
        nodes["target"] = {"type": arch["target"], "tie_weights": arch["tie_weights"]}
        if arch["target"] == "lm":
            nodes["target"]["output_bias"] = arch["output_bias"]
    return nodes


# --- the padding row ----------------------------------------------------------------------------

def swap_vocab_rows(uer: StateDict, pad_id: int) -> StateDict:
    """``uer`` with rows 0 and ``pad_id`` of every tensor indexed by token exchanged (its own inverse);
    tensors that were one (a tied output matrix) stay one."""
    if not pad_id:
        return uer
    swapped = dict(uer)
    done: dict[int, torch.Tensor] = {}
    for key in VOCAB_ROWS:
        if key not in uer:
            continue
        tensor = uer[key]
        if id(tensor) in done:
            swapped[key] = done[id(tensor)]
            continue
        if tensor.size(0) <= pad_id:
            raise UerError(f"{key} has {tensor.size(0)} rows; the padding token's id {pad_id} has none")
        order = torch.arange(tensor.size(0))
        order[0], order[pad_id] = pad_id, 0
        done[id(tensor)] = swapped[key] = tensor.index_select(0, order)
    return swapped


# --- encoder-decoder families (T5, BART) -----------------------------------------------------------
#
# Their tables are in the UER layout too (the decoder's names are this project's ``decoder.*`` in the
# original toolkit's form: ``context_attn`` beside ``self_attn``, ``layer_norm_1/2/3``); what a table cannot say
# as a name: BART's positions start at row 2 of its position embeddings, its final_logits_bias is (1, V), and
# T5 keeps one relative position bias per stack in its first layer.  Nodes are this project's config nodes
# (``embedding``, ``encoder``, ``decoder``, ``target``) with every size explicit.

class Seq2seqFamily(ABC):
    """An encoder-decoder Hugging Face family: its table, its config.json <-> this project's config nodes."""

    model_type: str = ""
    title: str = ""
    architecture: str = ""
    embedding: tuple[str, bool] = ("", False)  # the embedding option and whether it has a LayerNorm
    holds: str = ""  # what the family holds, for the reference

    @abstractmethod
    def rules(self, nodes: dict) -> list[Rule]:
        """Every tensor's rule for the model ``nodes`` describe."""

    @abstractmethod
    def nodes(self, config: dict, path) -> dict:
        """This project's config nodes of the model ``config`` (a config.json) describes."""

    @abstractmethod
    def config_json(self, nodes: dict, vocab_size: int) -> dict:
        """The config.json of the model ``nodes`` describe."""

    def tensor_in(self, rule: Rule, tensor: torch.Tensor, uer: StateDict) -> torch.Tensor:
        """The UER tensor of ``rule`` from the Hugging Face ``tensor`` (may keep unused rows in ``uer``)."""
        return tensor

    def tensor_out(self, rule: Rule, tensor: torch.Tensor, uer: StateDict) -> torch.Tensor:
        return tensor


def _attention_rules(rules: list, uer: str, hf: str, names: tuple[str, str, str, str], bias: bool) -> None:
    for index, name in enumerate(names[:3]):
        rules.append(Rule(f"{uer}.linear_layers.{index}.weight", f"{hf}.{name}.weight", "backbone"))
        if bias:
            rules.append(Rule(f"{uer}.linear_layers.{index}.bias", f"{hf}.{name}.bias", "backbone"))
    rules.append(Rule(f"{uer}.final_linear.weight", f"{hf}.{names[3]}.weight", "backbone"))
    if bias:
        rules.append(Rule(f"{uer}.final_linear.bias", f"{hf}.{names[3]}.bias", "backbone"))


def _check_seq2seq(config: dict, path, checks: dict) -> None:
    for key, (value, reason) in checks.items():
        if value:
            raise NotExpressible(f"{path}: {key}={config.get(key)!r}; {reason}")


def _stack_nodes(layers: int, heads: int, width: int, act: str, eps: float, layernorm: str, dropout: float,
                 hidden: int, **extra) -> dict:
    return {"type": "transformer", "hidden_size": hidden, "layers_num": layers, "heads_num": heads,
            "feedforward_size": width, "hidden_act": act, "layernorm_eps": eps, "layernorm": layernorm,
            "dropout": dropout, **extra}


class T5(Seq2seqFamily):
    """T5 (v1.0: ReLU, output tied to the word embedding and scaled by d_model**-0.5; v1.1: gated GELU, the
    output not scaled): pre-RMS-norm layers without biases or score scaling, relative position bias."""

    model_type = "t5"
    title = "T5"
    architecture = "T5ForConditionalGeneration"
    embedding = ("word", False)
    holds = ("word embedding alone (embedding=word, remove_layernorm), pre-LN layers with RMS norm, no biases, "
             "unscaled attention and a relative position bias (encoder and decoder); v1.0: ReLU, the output tied "
             "and scaled by d_model**-0.5 (target.scale_output); v1.1: gated GELU, the output its own")

    def rules(self, nodes: dict) -> list[Rule]:
        gated = nodes["encoder"]["feedforward"] == "gated"
        rules = [Rule(WORD, "shared.weight", "backbone"),
                 Rule("encoder.relative_pos_emb.relative_attention_bias.weight",
                      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "backbone"),
                 Rule("decoder.relative_pos_emb.relative_attention_bias.weight",
                      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "backbone")]
        stacks = (("encoder", nodes["encoder"]["layers_num"], ("SelfAttention",)),
                  ("decoder", nodes["decoder"]["layers_num"], ("SelfAttention", "EncDecAttention")))
        for stack, layers, attentions in stacks:
            for layer in range(layers):
                uer, hf = f"{stack}.transformer.{layer}", f"{stack}.block.{layer}.layer"
                for index, (ours, theirs) in enumerate(zip(("self_attn", "context_attn"), attentions)):
                    _attention_rules(rules, f"{uer}.{ours}", f"{hf}.{index}.{theirs}", ("q", "k", "v", "o"), False)
                    rules.append(Rule(f"{uer}.layer_norm_{index + 1}.gamma", f"{hf}.{index}.layer_norm.weight",
                                      "backbone"))
                ff = len(attentions)
                dense = f"{hf}.{ff}.DenseReluDense"
                if gated:
                    rules.append(Rule(f"{uer}.feed_forward.linear_gate.weight", f"{dense}.wi_0.weight", "backbone"))
                rules.append(Rule(f"{uer}.feed_forward.linear_1.weight", f"{dense}.wi_1.weight" if gated else
                                  f"{dense}.wi.weight", "backbone"))
                rules.append(Rule(f"{uer}.feed_forward.linear_2.weight", f"{dense}.wo.weight", "backbone"))
                rules.append(Rule(f"{uer}.layer_norm_{ff + 1}.gamma", f"{hf}.{ff}.layer_norm.weight", "backbone"))
            rules.append(Rule(f"{stack}.layer_norm.gamma", f"{stack}.final_layer_norm.weight", "backbone"))
        rules.append(Rule(LM_OUTPUT, "lm_head.weight", "lm"))
        return rules

    def nodes(self, config: dict, path) -> dict:
        d_model, heads = config["d_model"], config["num_heads"]
        projection = config.get("feed_forward_proj", "relu")
        gated = projection.startswith("gated-")
        act_name = "gelu_new" if projection == "gated-gelu" else projection.removeprefix("gated-")
        _check_seq2seq(config, path, {
            "d_kv": (config.get("d_kv", 64) * heads != d_model,
                     f"uer's attention heads split d_model ({d_model}) evenly, so d_kv must be d_model / num_heads"),
        })
        act = _activation_in(act_name, "feed_forward_proj", path)
        eps, dropout = float(config.get("layer_norm_epsilon", 1e-6)), float(config.get("dropout_rate", 0.1))
        t5 = {"layernorm_positioning": "pre", "feedforward": "gated" if gated else "dense", "bias": False,
              "scaled_attention": False, "relative_position_buckets": config.get("relative_attention_num_buckets", 32),
              "relative_max_distance": config.get("relative_attention_max_distance", 128)}
        decoder_layers = config.get("num_decoder_layers") or config["num_layers"]
        return {
            "embedding": {"type": "word", "emb_size": d_model, "dropout": dropout, "layernorm_eps": eps,
                          "layernorm": "rms", "remove_layernorm": True, "scale_embedding": False},
            "encoder": _stack_nodes(config["num_layers"], heads, config["d_ff"], act, eps, "rms", dropout, d_model,
                                    mask="fully_visible", parameter_sharing=False, **t5),
            "decoder": _stack_nodes(decoder_layers, heads, config["d_ff"], act, eps, "rms", dropout, d_model,
                                    shared_embedding=True, start_id=config.get("decoder_start_token_id", 0), **t5),
            "target": {"type": "seq2seq", "tie_weights": False, "output_bias": False,
                       "scale_output": bool(config.get("scale_decoder_outputs",
                                                       config.get("tie_word_embeddings", True) is not False)),
                       "label_smoothing": 0.0},
        }

    def config_json(self, nodes: dict, vocab_size: int) -> dict:
        encoder, decoder = nodes["encoder"], nodes["decoder"]
        gated = encoder["feedforward"] == "gated"
        act = ACTIVATION_OUT[encoder["hidden_act"]]
        return {"architectures": [self.architecture], "model_type": self.model_type, "vocab_size": vocab_size,
                "d_model": encoder["hidden_size"], "d_kv": encoder["hidden_size"] // encoder["heads_num"],
                "d_ff": encoder["feedforward_size"], "num_layers": encoder["layers_num"],
                "num_decoder_layers": decoder["layers_num"], "num_heads": encoder["heads_num"],
                "relative_attention_num_buckets": encoder["relative_position_buckets"],
                "relative_attention_max_distance": encoder["relative_max_distance"],
                "dropout_rate": encoder["dropout"], "layer_norm_epsilon": encoder["layernorm_eps"],
                "feed_forward_proj": ("gated-gelu" if act == "gelu_new" else f"gated-{act}") if gated else act,
                "tie_word_embeddings": bool(nodes["target"]["scale_output"]), "pad_token_id": 0,
                "decoder_start_token_id": decoder["start_id"], "is_encoder_decoder": True}

    def check_nodes(self, nodes: dict) -> None:
        """A :class:`NotExpressible` unless ``nodes`` describe a model of T5's form."""
        expected = {"layernorm_positioning": "pre", "bias": False, "scaled_attention": False, "layernorm": "rms"}
        for stack in ("encoder", "decoder"):
            for key, value in expected.items():
                if nodes[stack].get(key) != value:
                    raise NotExpressible(f"T5 has {stack}.{key}={value}; this model's is {nodes[stack].get(key)}")
        for key in ("heads_num", "feedforward_size", "hidden_act", "feedforward", "relative_position_buckets",
                    "relative_max_distance"):
            if nodes["encoder"].get(key) != nodes["decoder"].get(key):
                raise NotExpressible(f"T5's config.json gives the encoder and the decoder one {key}; this model has "
                                     f"encoder.{key}={nodes['encoder'].get(key)} and decoder.{key}="
                                     f"{nodes['decoder'].get(key)}")


class Bart(Seq2seqFamily):
    """BART: learned positions from row 2, a LayerNorm on the embeddings, post-LN layers, final_logits_bias."""

    model_type = "bart"
    title = "BART"
    architecture = "BartForConditionalGeneration"
    embedding = ("word_pos", True)
    holds = ("word and learned position embeddings (from row 2) with a LayerNorm, scale_embedding as "
             "embedding.scale_embedding, post-LN layers with biases; the output tied, final_logits_bias its bias")
    OFFSET = 2  # BartLearnedPositionalEmbedding's first two rows are never used

    def rules(self, nodes: dict) -> list[Rule]:
        rules = [Rule(WORD, "model.shared.weight", "backbone")]
        for stack, ours in (("encoder", "embedding"), ("decoder", "decoder.embedding")):
            rules.append(Rule(f"{ours}.position_embedding.weight", f"model.{stack}.embed_positions.weight",
                              "backbone"))
            _norm(rules, "backbone", f"{ours}.layer_norm", f"model.{stack}.layernorm_embedding")
        names = ("q_proj", "k_proj", "v_proj", "out_proj")
        for stack in ("encoder", "decoder"):
            for layer in range(nodes[stack]["layers_num"]):
                uer, hf = f"{stack}.transformer.{layer}", f"model.{stack}.layers.{layer}"
                _attention_rules(rules, f"{uer}.self_attn", f"{hf}.self_attn", names, True)
                _norm(rules, "backbone", f"{uer}.layer_norm_1", f"{hf}.self_attn_layer_norm")
                if stack == "decoder":
                    _attention_rules(rules, f"{uer}.context_attn", f"{hf}.encoder_attn", names, True)
                    _norm(rules, "backbone", f"{uer}.layer_norm_2", f"{hf}.encoder_attn_layer_norm")
                _linear(rules, "backbone", f"{uer}.feed_forward.linear_1", f"{hf}.fc1")
                _linear(rules, "backbone", f"{uer}.feed_forward.linear_2", f"{hf}.fc2")
                _norm(rules, "backbone", f"{uer}.layer_norm_{3 if stack == 'decoder' else 2}",
                      f"{hf}.final_layer_norm")
        rules.append(Rule(LM_OUTPUT, "lm_head.weight", "lm"))
        rules.append(Rule(LM_BIAS, "final_logits_bias", "lm"))
        return rules

    def tensor_in(self, rule: Rule, tensor: torch.Tensor, uer: StateDict) -> torch.Tensor:
        """Positions from row 2 on; rows 0 and 1, never read, are kept beside them (``reserved_rows``: a tensor
        the model does not use, so that converting back gives the file's own)."""
        if rule.uer.endswith("position_embedding.weight"):
            uer[self.reserved(rule)] = tensor[:self.OFFSET].contiguous()
            return tensor[self.OFFSET:]
        return tensor[0] if rule.uer == LM_BIAS else tensor

    def tensor_out(self, rule: Rule, tensor: torch.Tensor, uer: StateDict) -> torch.Tensor:
        """Rows 0 and 1 of the positions: the kept ones, else zeros."""
        if rule.uer.endswith("position_embedding.weight"):
            reserved = uer.get(self.reserved(rule), tensor.new_zeros(self.OFFSET, tensor.size(1)))
            return torch.cat([reserved, tensor])
        return tensor[None] if rule.uer == LM_BIAS else tensor

    @staticmethod
    def reserved(rule: Rule) -> str:
        return rule.uer.replace(".weight", ".reserved_rows")

    def nodes(self, config: dict, path) -> dict:
        d_model = config["d_model"]
        _check_seq2seq(config, path, {
            "d_model": (d_model % config["encoder_attention_heads"] or d_model % config["decoder_attention_heads"],
                        "the attention heads must divide d_model"),
            "max_position_embeddings": (config.get("max_position_embeddings", 1024) <= 0, "BART needs positions"),
        })
        if config.get("encoder_ffn_dim") != config.get("decoder_ffn_dim") or \
                config.get("encoder_attention_heads") != config.get("decoder_attention_heads"):
            logger.info("%s: the encoder's and decoder's sizes differ; each stack keeps its own", path)
        act = _activation_in(config.get("activation_function", "gelu"), "activation_function", path)
        dropout, positions = float(config.get("dropout", 0.1)), int(config.get("max_position_embeddings", 1024))
        eps = 1e-5
        return {
            "embedding": {"type": "word_pos", "emb_size": d_model, "max_seq_length": positions, "dropout": dropout,
                          "layernorm_eps": eps, "layernorm": "standard", "remove_layernorm": False,
                          "scale_embedding": bool(config.get("scale_embedding", False))},
            "encoder": _stack_nodes(config["encoder_layers"], config["encoder_attention_heads"],
                                    config["encoder_ffn_dim"], act, eps, "standard", dropout, d_model,
                                    mask="fully_visible", parameter_sharing=False, layernorm_positioning="post"),
            "decoder": _stack_nodes(config["decoder_layers"], config["decoder_attention_heads"],
                                    config["decoder_ffn_dim"], act, eps, "standard", dropout, d_model,
                                    layernorm_positioning="post", shared_embedding=True,
                                    start_id=config.get("decoder_start_token_id", 2)),
            "target": {"type": "seq2seq", "tie_weights": True, "output_bias": True, "scale_output": False,
                       "label_smoothing": 0.0},
        }

    def config_json(self, nodes: dict, vocab_size: int) -> dict:
        encoder, decoder = nodes["encoder"], nodes["decoder"]
        return {"architectures": [self.architecture], "model_type": self.model_type, "vocab_size": vocab_size,
                "d_model": encoder["hidden_size"], "encoder_layers": encoder["layers_num"],
                "decoder_layers": decoder["layers_num"], "encoder_attention_heads": encoder["heads_num"],
                "decoder_attention_heads": decoder["heads_num"], "encoder_ffn_dim": encoder["feedforward_size"],
                "decoder_ffn_dim": decoder["feedforward_size"],
                "activation_function": ACTIVATION_OUT[encoder["hidden_act"]],
                "max_position_embeddings": nodes["embedding"]["max_seq_length"], "dropout": encoder["dropout"],
                "scale_embedding": bool(nodes["embedding"]["scale_embedding"]), "tie_word_embeddings": True,
                "decoder_start_token_id": decoder["start_id"], "is_encoder_decoder": True}

    def check_nodes(self, nodes: dict) -> None:
        for stack in ("encoder", "decoder"):
            node = nodes[stack]
            if node.get("relative_position_buckets") or node["layernorm_positioning"] != "post" or \
                    not node.get("bias", True) or node.get("feedforward", "dense") != "dense":
                raise NotExpressible(f"BART's {stack} has post-LN layers with biases, a dense feed-forward part and "
                                     "learned positions; this model's differs")


SEQ2SEQ_FAMILIES: dict[str, Seq2seqFamily] = {family.model_type: family for family in (T5(), Bart())}


def seq2seq_hf_to_uer(fam: Seq2seqFamily, state: StateDict, config: dict, source: str,
                      config_path) -> tuple[StateDict, dict]:
    """A Hugging Face encoder-decoder state dict -> (UER state dict, this project's config nodes)."""
    nodes = fam.nodes(config, config_path)
    uer: StateDict = {}
    for rule in fam.rules(nodes):
        if rule.hf not in state:
            if rule.part == "lm":  # an output layer left out of the file is the word embedding (no bias)
                continue
            raise UerError(f"{source} has no {rule.hf}; it is not a complete {fam.title} checkpoint")
        uer[rule.uer] = fam.tensor_in(rule, state[rule.hf], uer).contiguous()
    target = nodes["target"]
    output = uer.get(LM_OUTPUT)
    target["tie_weights"] = output is None or torch.equal(output, uer[WORD])
    if target["tie_weights"]:
        uer.pop(LM_OUTPUT, None)
    if LM_BIAS not in uer and target["output_bias"]:
        uer[LM_BIAS] = uer[WORD].new_zeros(uer[WORD].size(0))
    uer["decoder.embedding.word_embedding.weight"] = uer[WORD]
    if target["tie_weights"]:
        uer[LM_OUTPUT] = uer[WORD]
    return uer, nodes


def seq2seq_uer_to_hf(fam: Seq2seqFamily, uer: StateDict, nodes: dict) -> tuple[StateDict, dict]:
    """A UER encoder-decoder state dict and its config nodes -> (Hugging Face state dict, config.json)."""
    kind, normed = fam.embedding
    embedding = nodes["embedding"]
    if embedding["type"] != kind or embedding.get("remove_layernorm", False) == normed:
        raise NotExpressible(f"{fam.title} embeds with embedding={kind} {'with' if normed else 'without'} a LayerNorm; "
                             f"this model's is embedding={embedding['type']} "
                             f"{'without' if embedding.get('remove_layernorm') else 'with'} one")
    fam.check_nodes(nodes)
    if not nodes["decoder"].get("shared_embedding", True):
        raise NotExpressible(f"{fam.title} shares one word embedding between encoder and decoder; this model's "
                             "decoder has its own (decoder.shared_embedding=false)")
    out: StateDict = {}
    for rule in fam.rules(nodes):
        key = rule.uer if rule.uer in uer or rule.uer != LM_OUTPUT else WORD
        if key not in uer:
            raise UerError(f"the model has no {rule.uer}; it is not a complete {fam.title} model")
        out[rule.hf] = fam.tensor_out(rule, uer[key], uer).detach().contiguous().clone()
    return out, fam.config_json(nodes, int(uer[WORD].size(0)))
