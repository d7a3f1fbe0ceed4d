"""Pre-training targets: hidden states + batch -> (loss, stats).

``stats`` maps a name to ``(numerator, denominator)``, detached 0-dim float tensors, so
a trainer can report ``sum(numerators) / sum(denominators)`` over any window:
``{task}_loss`` = (summed cross-entropy, count) and ``{task}_acc`` = (correct, count)
for task ``mlm``, ``nsp``, ``sop``, ``lm``, ``prefixlm``, ``lm_forward``/``lm_backward`` (bilm),
``cls``, ``seq2seq``, ``t5`` or ``bart``.  Target ``nsp`` is next-sentence prediction alone (no MLM).

Output logits are computed only where a label exists (masked positions for MLM,
non-ignored positions for LM): the vocabulary projection is the most expensive matmul
of pre-training and most positions carry no loss.

Each target declares which encoder contexts it can train (``contexts``, see
:mod:`uer.models.context`) and why (``needs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import MISSING
from torch import nn

from uer.config.fields import FRACTION, at_least, setting
from uer.errors import UerError
from uer.models.context import ALL_CONTEXTS, BIDIRECTIONAL, CAUSAL, PREFIX, STACKS
from uer.models.cross_entropy import cross_entropy_sum
from uer.models.layer_norm import layer_norm
from uer.models.layers import activation
from uer.models.pooling import check_pooling, pool
from uer.registry import Registry

TARGETS: Registry = Registry("target", group="target")

BOTH_SIDES = "context from both sides at every position"


@dataclass
class LmTargetConfig:
    """``target=mlm`` / ``bert`` / ``albert`` / ``lm`` / ``bilm``: an output layer over the vocabulary."""

    type: str = setting(MISSING, "mlm | bert | albert | lm | prefixlm | bilm | cls | nsp | seq2seq | t5 | bart (pick with target=)")
    tie_weights: bool = setting(True, "share the output projection with the word embedding")


@dataclass
class CausalLmTargetConfig(LmTargetConfig):
    """``target=lm``: next-token prediction over the vocabulary."""

    output_bias: bool = setting(True, "a bias on the output layer (GPT-2's lm_head has none; the original's "
                                      "--has_lmtarget_bias)")


@dataclass
class NspTargetConfig:
    """``target=nsp``: next-sentence prediction alone."""

    type: str = setting(MISSING, "mlm | bert | albert | lm | prefixlm | bilm | cls | nsp | seq2seq | t5 | bart (pick with target=)")


@dataclass
class ClsTargetConfig:
    """``target=cls``: sentence classification as a pre-training target."""

    type: str = setting(MISSING, "mlm | bert | albert | lm | prefixlm | bilm | cls | nsp | seq2seq | t5 | bart (pick with target=)")
    pooling: str = setting("first", "how the sequence becomes one vector: first | mean | max | last")
    labels_num: Optional[int] = setting(None, "classes; null = from the pre-training dataset", bounds=at_least(1))


@dataclass
class Seq2seqTargetConfig:
    """``target=seq2seq`` / ``t5`` / ``bart``: the decoder's states -> the next target token, against ``tgt_out``."""

    type: str = setting(MISSING, "mlm | bert | albert | lm | prefixlm | bilm | cls | nsp | seq2seq | t5 | bart (pick with target=)")
    tie_weights: bool = setting(True, "the output matrix is the decoder's word embedding (T5 v1.0, BART); false: "
                                      "its own (T5 v1.1)")
    output_bias: bool = setting(True, "a bias on the output layer (BART's final_logits_bias; T5 has none)")
    scale_output: bool = setting(False, "multiply the decoder's states by hidden_size**-0.5 before the output layer "
                                        "(T5 v1.0, whose output matrix is the word embedding)")
    label_smoothing: float = setting(0.0, "the share of the target probability spread over the whole vocabulary",
                                     tunable=True, bounds=FRACTION)


IGNORE_INDEX = -100
FEW_ROWS = 16  # Seq2seqTarget.step_logits: up to this many rows, the output matrix is the left operand
Stats = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class ModelDims:
    """The sizes and settings a target needs from the rest of the model."""

    vocab_size: int
    emb_size: int
    hidden_size: int
    hidden_act: str
    layernorm_eps: float
    layernorm: Optional[str] = None  # the LayerNorm formula (uer.models.layer_norm)


def vocabulary_layer(cfg, dims: ModelDims, word_embedding: nn.Embedding) -> nn.Linear:
    """Hidden states -> vocabulary logits, with a bias if ``cfg.output_bias``; its matrix is the word
    embedding's when ``cfg.tie_weights`` and the shapes agree (``emb_size == hidden_size``)."""
    layer = nn.Linear(dims.hidden_size, dims.vocab_size, bias=cfg.output_bias)
    if cfg.tie_weights and dims.emb_size == dims.hidden_size:
        layer.weight = word_embedding.weight
    return layer


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, task: str, label_smoothing: float = 0.0, *,
                        consume_logits: bool = False) -> tuple[torch.Tensor, Stats]:
    """Mean cross-entropy (0 when there are no labels) and its ``{task}_loss``/``{task}_acc`` stats.
    ``consume_logits``: the loss overwrites ``logits`` (see :func:`cross_entropy_sum`)."""
    logits = logits.float()
    correct = (logits.argmax(dim=-1) == labels).sum().float()
    loss_sum = cross_entropy_sum(logits, labels, label_smoothing, consume_logits=consume_logits)
    count = torch.full((), float(labels.numel()), device=logits.device)  # a fill, not a host-to-device copy
    stats = {f"{task}_loss": (loss_sum.detach(), count), f"{task}_acc": (correct.detach(), count)}
    return loss_sum / max(labels.numel(), 1), stats


@TARGETS.register("mlm", config=LmTargetConfig)
class MlmTarget(nn.Module):
    """Masked language model head: linear (H -> E), activation, LayerNorm, linear (E -> V).

    With ``tie_weights`` the output matrix is the word embedding (its bias stays separate).
    """

    contexts = (BIDIRECTIONAL, STACKS)
    needs = BOTH_SIDES

    def __init__(self, cfg: LmTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        self.mlm_linear_1 = nn.Linear(dims.hidden_size, dims.emb_size)
        self.act = activation(dims.hidden_act)
        self.layer_norm = layer_norm(dims.emb_size, dims.layernorm_eps, dims.layernorm)
        self.mlm_linear_2 = nn.Linear(dims.emb_size, dims.vocab_size)
        if cfg.tie_weights:
            self.mlm_linear_2.weight = word_embedding.weight

    def mlm(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        """Loss over ``mlm_positions`` (flat indices into B*L) against ``mlm_labels``."""
        masked = hidden.reshape(-1, hidden.size(-1)).index_select(0, batch["mlm_positions"])
        logits = self.mlm_linear_2(self.layer_norm(self.act(self.mlm_linear_1(masked))))
        return classification_loss(logits, batch["mlm_labels"], "mlm")

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        return self.mlm(hidden, batch)


class MlmSentencePairTarget(MlmTarget):
    """MLM plus a 2-way sentence-pair task on the first ([CLS]) position.

    The head's modules are named ``{task}_linear_1`` (H, H, tanh: BERT's pooler) and
    ``{task}_linear_2`` (2, H) after the task, because UER files name them so.
    """

    task: str  # "nsp" or "sop"

    def __init__(self, cfg: LmTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__(cfg, dims, word_embedding)
        self.add_module(f"{self.task}_linear_1", nn.Linear(dims.hidden_size, dims.hidden_size))
        self.add_module(f"{self.task}_linear_2", nn.Linear(dims.hidden_size, 2))

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        mlm_loss, stats = self.mlm(hidden, batch)
        pooled = torch.tanh(getattr(self, f"{self.task}_linear_1")(hidden[:, 0]))
        logits = getattr(self, f"{self.task}_linear_2")(pooled)
        pair_loss, pair_stats = classification_loss(logits, batch["sentence_labels"], self.task)
        return mlm_loss + pair_loss, {**stats, **pair_stats}


@TARGETS.register("bert", config=LmTargetConfig)
class BertTarget(MlmSentencePairTarget):
    """MLM + next sentence prediction."""

    task = "nsp"


@TARGETS.register("albert", config=LmTargetConfig)
class AlbertTarget(MlmSentencePairTarget):
    """MLM + sentence order prediction."""

    task = "sop"


@TARGETS.register("lm", config=CausalLmTargetConfig)
class LmTarget(nn.Module):
    """Next-token language model (GPT): ``lm_labels`` (B, L), ``-100`` where ignored.

    The output matrix is tied to the word embedding only when ``tie_weights`` and the
    shapes agree (``emb_size == hidden_size``); ``output_bias: false`` drops its bias (GPT-2).
    """

    contexts = (CAUSAL,)
    needs = "a causal encoder (position i must not see token i+1)"
    task = "lm"

    def __init__(self, cfg: CausalLmTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        self.output_layer = vocabulary_layer(cfg, dims, word_embedding)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        labels = batch["lm_labels"].reshape(-1)
        keep = labels != IGNORE_INDEX
        logits = self.output_layer(hidden.reshape(-1, hidden.size(-1))[keep])
        return classification_loss(logits, labels[keep], self.task)


@TARGETS.register("prefixlm", config=CausalLmTargetConfig)
class PrefixLmTarget(LmTarget):
    """Prefix language model on one stack (UniLM's sequence-to-sequence mask): the encoder reads the
    prefix (segment 1, the source) both ways and the rest left to right, and only the tokens after the
    prefix are predicted (``lm_labels`` is -100 over the prefix; :mod:`uer.data.pretrain_dataset`)."""

    contexts = (PREFIX,)
    needs = "an encoder reading the prefix both ways and the rest left to right (encoder.mask=causal_with_prefix)"
    task = "prefixlm"


@TARGETS.register("bilm", config=LmTargetConfig)
class BilmTarget(nn.Module):
    """ELMo's bidirectional language model, on an encoder with separate forward and backward
    stacks whose output is ``[forward; backward]`` (``bilstm``, ``bigru``).

    The forward half of position ``i`` predicts ``lm_labels[i]`` (token ``i + 1``), the
    backward half predicts ``lm_backward_labels[i]`` (token ``i - 1``); ``-100`` where
    ignored.  One output layer (H/2 -> V, UER's ``output_layer``) serves both directions;
    it is tied to the word embedding when ``tie_weights`` and ``emb_size == H/2``.
    """

    contexts = (STACKS,)
    needs = "separate forward and backward stacks (each half must not see the token it predicts)"

    def __init__(self, cfg: LmTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        if dims.hidden_size % 2:
            raise UerError(f"target bilm splits hidden_size {dims.hidden_size} into forward and backward halves; "
                           "use an even model.hidden_size")
        self.half = dims.hidden_size // 2
        self.output_layer = nn.Linear(self.half, dims.vocab_size)
        if cfg.tie_weights and dims.emb_size == self.half:
            self.output_layer.weight = word_embedding.weight

    def direction(self, hidden: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, Stats]:
        labels = labels.reshape(-1)
        keep = labels != IGNORE_INDEX
        logits = self.output_layer(hidden.reshape(-1, hidden.size(-1))[keep])
        return classification_loss(logits, labels[keep], task)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        forward_loss, stats = self.direction(hidden[..., :self.half], batch["lm_labels"], "lm_forward")
        backward_loss, backward_stats = self.direction(hidden[..., self.half:], batch["lm_backward_labels"],
                                                       "lm_backward")
        return forward_loss + backward_loss, {**stats, **backward_stats}


@TARGETS.register("nsp", config=NspTargetConfig)
class NspTarget(nn.Module):
    """Next-sentence prediction alone, as the original toolkit's ``nsp`` target: one linear layer
    (``linear``, H -> 2) on the first ([CLS]) position, against ``sentence_labels`` (0 = the real
    next segment, 1 = a random one).  Unlike BERT's NSP head there is no tanh pooler."""

    contexts = (BIDIRECTIONAL, STACKS)
    needs = "context from both sides at the first position ([CLS])"

    def __init__(self, cfg: NspTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        self.linear = nn.Linear(dims.hidden_size, 2)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        return classification_loss(self.linear(hidden[:, 0]), batch["sentence_labels"], "nsp")


@TARGETS.register("cls", config=ClsTargetConfig)
class ClsTarget(nn.Module):
    """Sentence classification as a pre-training target: pooled hidden states (``pooling``)
    -> ``linear_1`` (H -> H), tanh -> ``linear_2`` (H -> labels_num), against ``cls_labels``."""

    contexts = ALL_CONTEXTS
    needs = "any encoder"

    @staticmethod
    def check_context(cfg: ClsTargetConfig, context: str, encoder_text: str) -> None:
        """``pooling: first`` on a causal encoder would classify ``[CLS]`` alone."""
        if context == CAUSAL and cfg.pooling == "first":
            raise UerError(f"target.pooling=first reads position 0, which the causal {encoder_text} computes from "
                           "[CLS] alone; use target.pooling=mean, max or last")

    def __init__(self, cfg: ClsTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        labels_num = cfg.labels_num
        if not labels_num or labels_num < 1:
            raise UerError("target cls needs target.labels_num (the number of classes; set automatically from "
                           "the dataset by stage=pretrain); e.g. target.labels_num=2")
        self.pooling = check_pooling(cfg.pooling, "target.pooling")
        self.linear_1 = nn.Linear(dims.hidden_size, dims.hidden_size)
        self.linear_2 = nn.Linear(dims.hidden_size, labels_num)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        pooled = pool(hidden, batch["seg"], self.pooling)
        logits = self.linear_2(torch.tanh(self.linear_1(pooled)))
        return classification_loss(logits, batch["cls_labels"], "cls")


@TARGETS.register("seq2seq", config=Seq2seqTargetConfig)
class Seq2seqTarget(nn.Module):
    """Sequence to sequence: the decoder's state at each position (``output_layer``, H -> V) predicts
    ``tgt_out`` there (B, L_tgt; 0 = padding, no loss).  Stats ``{task}_loss``/``{task}_acc``.

    The output matrix is tied to the decoder's word embedding when ``tie_weights`` and the
    shapes agree (``emb_size == hidden_size``).
    """

    contexts = ALL_CONTEXTS
    needs = "any encoder (the decoder attends over its states)"
    needs_decoder = True
    task = "seq2seq"

    def __init__(self, cfg: Seq2seqTargetConfig, dims: ModelDims, word_embedding: nn.Embedding):
        super().__init__()
        self.output_layer = vocabulary_layer(cfg, dims, word_embedding)
        self.scale = dims.hidden_size ** -0.5 if cfg.scale_output else None
        self.label_smoothing = cfg.label_smoothing

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of decoder states (..., H)."""
        return self.output_layer(self._scaled(hidden))

    def step_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """:meth:`logits` of the states (N, H) of one generation step, as (N, V).  Up to
        ``FEW_ROWS`` rows they are computed as ``(W @ hidden^T)^T``, which reads the (V, H) output matrix in
        its own layout: CPU BLAS then runs about 1.7 times as fast as ``hidden @ W^T`` on 8 rows (the vocabulary
        projection is half of a greedy step of a small model); from 16 rows on the two are alike, and the
        transposed result would slow beam search's log-softmax."""
        states = self._scaled(hidden)
        layer = self.output_layer
        if states.size(0) > FEW_ROWS:
            return layer(states)
        if layer.bias is None:
            return torch.mm(layer.weight, states.t()).t()
        return torch.addmm(layer.bias[:, None], layer.weight, states.t()).t()

    def _scaled(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * self.scale if self.scale is not None else hidden

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        labels = batch["tgt_out"].reshape(-1)
        keep = labels != 0
        logits = self.logits(hidden.reshape(-1, hidden.size(-1))[keep])  # the output layer's own tensor
        return classification_loss(logits, labels[keep], self.task, self.label_smoothing, consume_logits=True)


@TARGETS.register("t5", config=Seq2seqTargetConfig)
class T5Target(Seq2seqTarget):
    """T5's span corruption: the model and loss of ``seq2seq``; the noising (sentinel spans in the source,
    the spans after their sentinels as the target) is in the data (:mod:`uer.data.noising`)."""

    task = "t5"


@TARGETS.register("bart", config=Seq2seqTargetConfig)
class BartTarget(Seq2seqTarget):
    """BART's denoising: the model and loss of ``seq2seq``; the noise (masked spans, permuted sentences) is in
    the data (:mod:`uer.data.noising`), the target is the original text."""

    task = "bart"
