"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each group's YAML files extend the schema named in their defaults list, so an unknown
key or a value of the wrong type fails at composition, with Hydra naming the key.
Sizes shared by several parts live once under ``model`` (filled by the ``size`` group)
and are interpolated into the parts (``${model.hidden_size}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from uer.config.tool_schema import ToolConfig


@dataclass
class ModelSizeConfig:
    """Sizes shared by embedding, encoder and target (one ``size=`` preset)."""

    emb_size: int = 768
    hidden_size: int = 768
    feedforward_size: int = 3072
    heads_num: int = 12
    layers_num: int = 12
    dropout: float = 0.1
    hidden_act: str = "gelu"
    max_seq_length: int = 512
    parameter_sharing: bool = False
    kernel_size: int = 3  # cnn, gatedcnn, rcnn, crnn: convolution width
    block_size: int = 2  # cnn, gatedcnn: a residual connection every block_size layers


@dataclass
class TokenizerConfig:
    type: str = "bert"  # bert | char | space
    vocab_path: Optional[str] = "models/google_zh_vocab.txt"
    spm_model_path: Optional[str] = None
    do_lower_case: bool = True


@dataclass
class EmbeddingConfig:
    type: str = "word_pos_seg"  # word_pos_seg | word_pos | word (no position: RNN/CNN encoders)
    emb_size: int = "${model.emb_size}"  # type: ignore[assignment]
    max_seq_length: int = "${model.max_seq_length}"  # type: ignore[assignment]
    dropout: float = "${model.dropout}"  # type: ignore[assignment]
    layernorm_eps: float = 1e-6


@dataclass
class EncoderConfig:
    type: str = "transformer"
    mask: str = "fully_visible"  # fully_visible | causal
    hidden_size: int = "${model.hidden_size}"  # type: ignore[assignment]
    feedforward_size: int = "${model.feedforward_size}"  # type: ignore[assignment]
    heads_num: int = "${model.heads_num}"  # type: ignore[assignment]
    layers_num: int = "${model.layers_num}"  # type: ignore[assignment]
    dropout: float = "${model.dropout}"  # type: ignore[assignment]
    hidden_act: str = "${model.hidden_act}"
    parameter_sharing: bool = "${model.parameter_sharing}"  # type: ignore[assignment]
    layernorm_eps: float = 1e-6
    # lstm, gru, rcnn, crnn: one stack reading both ways (hidden_size/2 per direction)
    bidirectional: bool = False
    kernel_size: int = "${model.kernel_size}"  # type: ignore[assignment]
    block_size: int = "${model.block_size}"  # type: ignore[assignment]
    synt_type: str = "dense"  # synt: dense | random
    max_seq_length: int = "${model.max_seq_length}"  # type: ignore[assignment]  # synt: attention width


@dataclass
class TargetConfig:
    type: str = "mlm"  # mlm | bert | albert | lm | bilm | cls
    tie_weights: bool = True
    pooling: str = "first"  # cls: first | mean | max | last
    labels_num: Optional[int] = None  # cls: null = from the pre-training dataset


@dataclass
class HardwareConfig:
    """Where and how the numbers are crunched; the same run scales by changing ``hardware=``."""

    device: str = "cpu"  # cpu | cuda | cuda:N | auto (CUDA when visible)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA, with a grad scaler)
    compile: bool = False  # torch.compile the model
    # Recompute each transformer layer in backward instead of keeping its activations:
    # about a third more compute for a fraction of the activation memory.
    activation_checkpointing: bool = False
    num_threads: int = 0  # intra-op CPU threads; 0 = torch's default
    # Processes: nproc_per_node workers on each of nnodes machines.  main.py starts the
    # workers itself (torchrun-compatible rendezvous) unless it already runs as one.
    nproc_per_node: int = 1
    nnodes: int = 1
    backend: Optional[str] = None  # gloo | nccl; null = nccl on CUDA, gloo on CPU
    rdzv_endpoint: str = "127.0.0.1:0"  # host:port of the rendezvous; port 0 = pick a free one (single node)
    rdzv_id: str = "uer"  # the same on every node of one run
    rdzv_timeout: int = 300  # seconds to wait for all nodes to join
    max_restarts: int = 0  # restart failed workers this many times; they resume from the last checkpoint
    timeout: int = 1800  # seconds a collective may wait before the run is declared hung


@dataclass
class PreprocessConfig:
    corpus_path: Optional[str] = None
    dataset_path: str = "outputs/data/dataset"
    seq_length: int = 128
    dup_factor: int = 1
    short_seq_prob: float = 0.1
    full_sentences: bool = False
    docs_buffer_size: int = 100000
    processes_num: int = 1
    dynamic_masking: bool = False
    span_masking: bool = False
    span_geo_prob: float = 0.2
    span_max_length: int = 10


@dataclass
class PretrainConfig:
    dataset_path: str = "outputs/data/dataset"
    total_steps: int = 100000
    save_checkpoint_steps: int = 10000
    report_steps: int = 100
    accumulation_steps: int = 1
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup: float = 0.1  # fraction of total_steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    # End this run after this many optimizer steps (leaving a checkpoint to resume from),
    # for clusters with per-job time limits; null = run to total_steps.
    stop_after_steps: Optional[int] = None
    keep_checkpoints: int = 0  # keep only the newest N step checkpoints; 0 = keep all
    # Batch rows of similar length together (less padding; see uer/data/sampler.py).
    length_bucketing: bool = True
    # Processes that build batches ahead while the model trains (uer/data/prefetch.py); 0 = between
    # steps in the training process, right on a CPU.  On a GPU, 1-2 keep it from waiting (bench/data_pipeline.py).
    data_workers: int = 0


@dataclass
class TaskConfig:
    """What is fine-tuned (one ``task=`` file); each field says which tasks read it."""

    type: str = "classifier"  # a name in uer.tasks.TASKS
    pooling: str = "first"  # classifier, dbqa, mt_classifier: first | mean | max | last
    labels_num: Optional[int] = None  # classifier: null = max label in train_path + 1
    # classifier distillation: train on a `logits` column (teacher) mixed with the labels
    soft_targets: bool = False
    soft_alpha: float = 0.5  # weight of the MSE on teacher logits; 1 - soft_alpha on cross-entropy
    label2id_path: Optional[str] = None  # ner: JSON {tag: id}; null = tags collected from train_path
    doc_stride: int = 128  # cmrc: step between overlapping document windows
    max_answer_length: int = 30  # cmrc: longest answer span considered, in tokens
    max_choices_num: int = 4  # c3: choices per question (fewer are padded)
    folds_num: int = 5  # classifier_cv: number of folds
    train_features_path: Optional[str] = None  # classifier_cv: out-of-fold probabilities (.npy)
    dataset_paths: list[str] = field(default_factory=list)  # mt_classifier: folders with train.tsv/dev.tsv


@dataclass
class FinetuneConfig:
    train_path: Optional[str] = None
    dev_path: Optional[str] = None
    test_path: Optional[str] = None  # optional: evaluated once, with the best model, at the end
    epochs_num: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-5
    warmup: float = 0.1  # fraction of all steps with linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    accumulation_steps: int = 1
    seq_length: int = 128
    report_steps: int = 100
    # The dev metric that picks the best epoch and that run() returns (for sweepers);
    # null = the task's first metric (accuracy for the classifier).
    metric: Optional[str] = None
    skip_bad_rows: bool = False  # skip malformed rows (and count them) instead of failing
    length_bucketing: bool = True  # batch rows of similar length together (less padding)


@dataclass
class InferConfig:
    load_model_path: Optional[str] = None  # a best.pt written by stage=finetune
    test_path: Optional[str] = None
    prediction_path: Optional[str] = None  # null = predictions.tsv in the run directory
    batch_size: int = 64
    seq_length: Optional[int] = None  # null = the seq_length the model was fine-tuned with
    output_logits: bool = False
    output_prob: bool = False


@dataclass
class Config:
    stage: str = "pretrain"
    seed: int = 7
    output_model_path: Optional[str] = None
    pretrained_model_path: Optional[str] = None
    resume: bool = False
    model: ModelSizeConfig = field(default_factory=ModelSizeConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    tool: ToolConfig = field(default_factory=ToolConfig)


def register_configs() -> None:
    """Store the schemas so ``conf/config.yaml`` can extend ``uer_schema``."""
    cs = ConfigStore.instance()
    cs.store(name="uer_schema", node=Config)
