"""Hugging Face transformers set up as a competent user would, for the same-run comparisons.

* ``attn_implementation="sdpa"`` (PyTorch's fused attention; the default of recent
  versions, stated anyway);
* ``torch.optim.AdamW(fused=True)`` (what ``TrainingArguments(optim="adamw_torch_fused")``
  gives) over the Trainer's parameter groups, no decay on biases and LayerNorm weights; a
  linear warm-up/decay schedule and gradient clipping at 1.0, the Trainer's defaults;
* padding per batch to its longest row: ``DataCollatorWithPadding`` and
  ``DataCollatorForLanguageModeling``;
* length grouping where the Trainer has it (``group_by_length=True``): transformers' own
  ``get_length_grouped_indices``.

The training step is the Trainer's ``training_step`` written out (forward under autocast,
backward, clip, optimiser and schedule step), so no logging or callback overhead is
counted against it.
"""

from __future__ import annotations

import torch
from torch import nn

from uer.training.process import compiled

SCHEDULE_STEPS = 10_000  # the schedules run far longer than any bench: the rate stays in warm-up


def bert_config(size: dict, vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=size["hidden_size"], num_hidden_layers=size["layers_num"],
                      num_attention_heads=size["heads_num"], intermediate_size=size["feedforward_size"],
                      hidden_dropout_prob=size["dropout"], attention_probs_dropout_prob=size["dropout"],
                      max_position_embeddings=512, type_vocab_size=3, layer_norm_eps=1e-12,
                      attn_implementation="sdpa", **extra)


def masked_lm(size: dict, vocab_size: int) -> nn.Module:
    from transformers import BertForMaskedLM

    return BertForMaskedLM(bert_config(size, vocab_size))


def sequence_classifier(size: dict, vocab_size: int, labels_num: int) -> nn.Module:
    from transformers import BertForSequenceClassification

    return BertForSequenceClassification(bert_config(size, vocab_size, num_labels=labels_num))


def tokenizer(vocab_path: str):
    """transformers' BERT tokenizer over the same vocabulary (used for padding and masking only)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab_path)


def mlm_collator(hf_tokenizer, seed: int = 0):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(hf_tokenizer, mlm_probability=0.15, seed=seed)


def padding_collator(hf_tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(hf_tokenizer)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of row indices in the order ``group_by_length=True`` gives (last partial batch dropped)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    order = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(seed))
    return [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]


class Step:
    """One Trainer-style optimisation step of a transformers model on a batch dict of tensors."""

    def __init__(self, model: nn.Module, learning_rate: float, *, device: torch.device, precision: str = "fp32",
                 weight_decay: float = 0.01, max_grad_norm: float = 1.0, compile_model: bool = False):
        """``compile_model``: train ``model`` under ``torch.compile`` as uer's ``hardware.compile=true`` does."""
        from transformers import get_linear_schedule_with_warmup

        model = model.to(device)
        self.model = compiled(model) if compile_model else model
        self.device = device
        no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
        ids = {id(p) for p in no_decay}
        decay = [p for p in model.parameters() if id(p) not in ids]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate, fused=True)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, SCHEDULE_STEPS // 10, SCHEDULE_STEPS)
        self.precision = precision
        self.max_grad_norm = max_grad_norm

    def __call__(self, inputs: dict) -> None:
        self.model.train()
        inputs = {key: value.to(self.device, non_blocking=True) for key, value in inputs.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.model(**inputs).loss
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
