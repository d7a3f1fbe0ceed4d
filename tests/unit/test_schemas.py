"""Every option of every component group composes, and its schema holds exactly the keys it reads.

A key the implementation never reads would be accepted and ignored; a key it reads that
the schema lacks could not be set.  Components receive their schema instance through
``Registry.build_config``: here it hands out instances that record which fields are read,
and each option is exercised (built; tasks and tools run end to end on tiny inputs).
The stages' sections and the tools' nodes are read as config nodes: there every value
becomes an interpolation that records its key when it is resolved.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tokenizer_testing import wordpiece_tokenizer
from tool_testing import CHARS, SPECIALS, make_checkpoint, write_vocab
from uer.app import run_stage
from uer.composition import registries
from uer.io.uer_format import save_uer_bin
from uer.models import build_model
from uer.registry import Registry, registry_of
from uer.tokenizers import build_tokenizer
from uer.training import process
from uer.training.optim import build_optimizer, build_scheduler
from uer_testing import ROOT, SMALL, compose_config, synthetic_multilabel_tsv, synthetic_sts

CONF = ROOT / "conf"
DATA = ROOT / "datasets" / "test_data"
FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=8", "finetune.epochs_num=1",
        "size=tiny", *SMALL]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def fields(schema) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


@pytest.fixture
def reads(monkeypatch):
    """``group -> fields read``, recorded from every schema instance a registry builds."""
    seen: dict[str, set[str]] = {}
    build = Registry.build_config

    def recording_build(self, stored):
        instance = build(self, stored)
        names = fields(type(instance))
        record = seen.setdefault(self.group, set())

        class Recording(type(instance)):
            def __getattribute__(self, name):
                if name in names:
                    record.add(name)
                return object.__getattribute__(self, name)

        copy = Recording.__new__(Recording)
        copy.__dict__.update(instance.__dict__)
        return copy

    monkeypatch.setattr(Registry, "build_config", recording_build)
    return seen


def test_every_registered_schema_has_an_option_and_every_option_its_component_s_schema():
    for registry in registries():
        used = set()
        for option in options(registry.group):
            node = compose_config(option_overrides(registry.group, option))[registry.group]
            schema = OmegaConf.get_type(node)
            assert schema is registry.config_class(node.type), f"{registry.group}={option}"
            used.add(node.type)
        assert used == set(registry.configs()), registry.group


def option_overrides(group: str, option: str) -> list[str]:
    stage = {"task": "finetune", "tool": "tool"}.get(group, "pretrain")
    return [f"stage={stage}", f"{group}={option}"]


# --- model parts ---------------------------------------------------------------------------

# A target each encoder can feed, and an encoder each target and embedding can be built with.
TARGET_FOR_CONTEXT = {"causal": "lm", "bidirectional": "mlm", "forward+backward stacks": "bilm"}
ENCODER_FOR = {"mlm": "bert", "bert": "bert", "albert": "bert", "lm": "gpt", "bilm": "bilstm", "cls": "bert",
               "nsp": "bert", "prefixlm": "bert", "seq2seq": "bert", "t5": "bert", "bart": "bert", "word": "lstm",
               "word_pos": "gpt", "word_pos_seg": "bert"}
TARGET_EXTRA = {"cls": ["target.labels_num=2"], "prefixlm": ["encoder.mask=causal_with_prefix"],
                "seq2seq": ["decoder=transformer"], "t5": ["decoder=transformer"], "bart": ["decoder=transformer"]}


def model_overrides(group: str, option: str) -> list[str]:
    from uer.models.compat import encoder_context

    if group == "encoder":
        context = encoder_context(compose_config([f"encoder={option}", *SMALL]).encoder)
        return [f"encoder={option}", f"target={TARGET_FOR_CONTEXT[context]}"]
    if group == "target":
        return [f"target={option}", f"encoder={ENCODER_FOR[option]}", *TARGET_EXTRA.get(option, [])]
    if group == "decoder":
        return [f"decoder={option}", "target=seq2seq"]
    return [f"encoder={ENCODER_FOR[option]}", f"embedding={option}", "target=cls", "target.labels_num=2",
            "target.pooling=mean"]


@pytest.mark.parametrize("group, option", [(group, option) for group in ("embedding", "encoder", "decoder", "target")
                                           for option in options(group)])
def test_model_part_reads_exactly_its_schema(group, option, reads):
    cfg = compose_config([*model_overrides(group, option), *SMALL, "model.max_seq_length=16"])
    build_model(cfg.embedding, cfg.encoder, cfg.target, 50, decoder_cfg=cfg.decoder)
    assert reads[group] == fields(OmegaConf.get_type(cfg[group]))


@pytest.mark.parametrize("option", options("tokenizer"))
def test_tokenizer_reads_exactly_its_schema(option, reads, tmp_path):
    cfg = compose_config([f"tokenizer={option}"])
    if "vocab_path" in cfg.tokenizer:
        cfg.tokenizer.vocab_path = str(ROOT / "models" / "google_zh_vocab.txt")
    elif "tokenizer_path" in cfg.tokenizer:
        wordpiece_tokenizer().save(str(tmp_path / "tokenizer.json"))
        cfg.tokenizer.tokenizer_path = str(tmp_path)
    else:
        cfg.tokenizer.spm_model_path = str(ROOT / "models" / "cluecorpussmall_spm.model")
    build_tokenizer(cfg.tokenizer)
    assert reads["tokenizer"] == fields(OmegaConf.get_type(cfg.tokenizer))


@pytest.mark.parametrize("group", ["optimizer", "lr_scheduler"])
def test_optimization_options_read_exactly_their_schema(group, reads):
    for option in options(group):
        cfg = compose_config([f"{group}={option}"])
        model = torch.nn.Linear(3, 2)
        optimizer = build_optimizer(cfg.optimizer, model, 1e-3)
        build_scheduler(cfg.lr_scheduler, optimizer, 10)
        assert reads[group] == fields(OmegaConf.get_type(cfg[group])), option
        reads.clear()


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options_read_exactly_their_schema(option, reads, tmp_path):
    if option == "mlflow":
        pytest.skip("test_loggers.py checks what logger=mlflow reads with its MLflow run (a store takes seconds)")
    from test_loggers import exercise
    from uer.training.loggers import build_logger

    cfg = compose_config([f"logger={option}"])
    exercise(build_logger(cfg.logger, tmp_path))
    assert reads["logger"] == fields(OmegaConf.get_type(cfg.logger))


# --- tasks: a whole tiny fine-tuning run each ------------------------------------------------

def _c3(tmp: Path) -> list[str]:
    items = json.loads((ROOT / "datasets" / "c3" / "dev.json").read_text(encoding="utf-8"))
    for name, part in (("train", items[:8]), ("dev", items[8:12])):
        (tmp / f"{name}.json").write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
    return [f"finetune.train_path={tmp / 'train.json'}", f"finetune.dev_path={tmp / 'dev.json'}"]


def _dbqa(tmp: Path) -> list[str]:
    rows = ["qid\tlabel\ttext_a\ttext_b"] + [f"q{i // 3}\t{int(i % 3 == 0)}\t问题{i // 3}\t候选句子{i}" for i in range(24)]
    (tmp / "d.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [f"finetune.train_path={tmp / 'd.tsv'}", f"finetune.dev_path={tmp / 'd.tsv'}"]


def _distillation(tmp: Path) -> list[str]:
    """The classifier trained on a teacher's logits too (task.soft_targets), so every key of it is used."""
    rows = (DATA / "book_review" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    lines = ["label\ttext_a\tlogits"] + [f"{row}\t{1.0 - 2 * int(row[0])} {2 * int(row[0]) - 1.0}" for row in rows]
    (tmp / "soft.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"finetune.train_path={tmp / 'soft.tsv'}", f"finetune.dev_path={DATA / 'book_review' / 'dev.tsv'}",
            "task.soft_targets=true"]


def _text2text(tmp: Path) -> list[str]:
    rows = ["source\ttarget"] + [f"句子{i}\t句子{i}" for i in range(8)]
    (tmp / "t.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [f"finetune.train_path={tmp / 't.tsv'}", f"finetune.dev_path={tmp / 't.tsv'}",
            "task.generation.max_new_tokens=4"]


def _files(task: str, tmp: Path) -> list[str]:
    book = DATA / "book_review"
    return {
        "classifier": _distillation(tmp), "classifier_cv": [_distillation(tmp)[0], "task.soft_targets=true",
                                                            "task.folds_num=2"],
        "mt_classifier": [f"task.dataset_paths=[{book},{DATA / 'chnsenticorp'}]"],
        "ner": [f"finetune.train_path={DATA / 'msra_ner' / 'train.tsv'}", f"finetune.dev_path={DATA / 'msra_ner' / 'dev.tsv'}"],
        "cmrc": [f"finetune.train_path={DATA / 'cmrc' / 'train.json'}", f"finetune.dev_path={DATA / 'cmrc' / 'dev.json'}"],
        "c3": _c3(tmp), "dbqa": _dbqa(tmp), "text2text": _text2text(tmp),
        "multilabel": [f"finetune.train_path={synthetic_multilabel_tsv(tmp / 'ml.tsv', 0, 24)}",
                       f"finetune.dev_path={tmp / 'ml.tsv'}", "task.labels=[0,1,2]"],
        "regression": [f"finetune.train_path={synthetic_sts(tmp / 'r.tsv', 16)}", f"finetune.dev_path={tmp / 'r.tsv'}"],
        "siamese": [f"finetune.train_path={synthetic_sts(tmp / 'sts.tsv', 16)}", f"finetune.dev_path={tmp / 'sts.tsv'}"],
        "simcse": [f"finetune.train_path={DATA / 'book_review' / 'test_nolabel.tsv'}",
                   f"finetune.dev_path={synthetic_sts(tmp / 'sts.tsv', 16)}"],
    }[task]


@pytest.mark.parametrize("option", options("task"))
def test_task_reads_exactly_its_schema(option, reads, tmp_path):
    cfg = compose_config([f"task={option}", *_files(option, tmp_path), *FAST, f"output_model_path={tmp_path / 'm'}"])
    run_stage(cfg)
    assert reads["task"] == fields(OmegaConf.get_type(cfg.task))


# --- config nodes read directly: stage sections and tools ------------------------------------

RECORDED: dict[str, object] = {}
READ: set[str] = set()


def _resolve(key: str):
    READ.add(key)
    return RECORDED[key]


OmegaConf.register_new_resolver("uer_test_read", _resolve, use_cache=False)


def record_node(cfg, node: str) -> set[str]:
    """Make every value of ``cfg[node]`` an interpolation that records its key when resolved."""
    READ.clear()
    RECORDED.clear()
    for key, value in OmegaConf.to_container(cfg[node], resolve=True).items():
        RECORDED[f"{node}.{key}"] = value
        cfg[node][key] = f"${{uer_test_read:{node}.{key}}}"
    return {key.split(".", 1)[1] for key in RECORDED if key.startswith(f"{node}.")}


@pytest.fixture
def quiet_dumps(monkeypatch):
    """Writing the whole config into a checkpoint resolves every key: that is not a read."""
    def run_config(cfg):
        before = set(READ)
        config = OmegaConf.to_container(cfg, resolve=True)
        READ.clear()
        READ.update(before)
        return config

    for module in ("uer.stages.pretrain", "uer.finetuning.setup"):
        monkeypatch.setattr(f"{module}.run_config", run_config)
    monkeypatch.setattr(process, "run_config", run_config)


def _read_keys(node: str) -> set[str]:
    return {key.split(".", 1)[1] for key in READ if key.startswith(f"{node}.")}


def test_stage_sections_are_all_read(tmp_path, quiet_dumps, monkeypatch):
    corpus = ROOT / "corpora" / "book_review.txt"
    data = tmp_path / "data"
    cfg = compose_config(["stage=preprocess", f"preprocess.corpus_path={corpus}", f"preprocess.dataset_path={data}",
                          "preprocess.seq_length=32"])
    declared = record_node(cfg, "preprocess")
    run_stage(cfg)
    assert _read_keys("preprocess") == declared
    cfg = compose_config(["size=tiny", *SMALL, "hardware.num_threads=1", f"pretrain.dataset_path={data}",
                          "pretrain.total_steps=2", "pretrain.batch_size=4", "pretrain.keep_checkpoints=1",
                          f"output_model_path={tmp_path / 'pre'}"])
    declared = record_node(cfg, "pretrain")
    run_stage(cfg)
    assert _read_keys("pretrain") == declared
    book = DATA / "book_review"
    cfg = compose_config(["task=classifier", f"finetune.train_path={book / 'train.tsv'}", *FAST,
                          f"finetune.dev_path={book / 'dev.tsv'}", f"finetune.test_path={book / 'test.tsv'}",
                          f"output_model_path={tmp_path / 'clf'}"])
    declared = record_node(cfg, "finetune")
    run_stage(cfg)
    assert _read_keys("finetune") == declared
    cfg = compose_config(["stage=infer", f"infer.load_model_path={tmp_path / 'clf'}",
                          f"infer.test_path={book / 'test_nolabel.tsv'}", f"infer.prediction_path={tmp_path / 'p.tsv'}"])
    declared = record_node(cfg, "infer")
    run_stage(cfg)
    assert _read_keys("infer") == declared
    monkeypatch.setenv("UER_RUN_DIR", str(tmp_path / "score_run"))
    cfg = compose_config(["stage=score", f"score.load_model_path={tmp_path / 'clf'}",
                          f"score.test_path={book / 'test.tsv'}"])
    declared = record_node(cfg, "score")
    run_stage(cfg)
    assert _read_keys("score") == declared


@pytest.fixture(scope="module")
def tool_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tools")
    vocab = write_vocab(tmp / "vocab.txt")
    mlm, model = make_checkpoint(tmp / "mlm.pt", vocab)
    lm, _ = make_checkpoint(tmp / "lm.pt", vocab, "encoder=gpt", "target=lm")
    save_uer_bin(model, tmp / "mlm.bin")
    texts = {"lines": "北京是中国的首都\n上海一座大城市\n", "masked": "北京是中国的[MASK]都\n",
             "words": "北京 上海\n", "contexts": "北京是中国的首都\t首\n"}
    for name, text in texts.items():
        (tmp / f"{name}.txt").write_text(text, encoding="utf-8")
    other = write_vocab(tmp / "other.txt", SPECIALS + CHARS[::-1])
    return {"dir": tmp, "vocab": vocab, "mlm": mlm, "lm": lm, "bin": tmp / "mlm.bin", "other": other,
            **{name: tmp / f"{name}.txt" for name in texts}}


def tool_overrides(name: str, inputs: dict) -> list[str]:
    out, lines = inputs["dir"] / f"out_{name}", inputs["lines"]
    masked, words, contexts = inputs["masked"], inputs["words"], inputs["contexts"]
    model = [f"tool.input_path={inputs['mlm']}"]
    return {
        "average_model": [f"tool.input_paths=[{inputs['mlm']},{inputs['mlm']}]", f"tool.output_path={out}.pt"],
        "build_vocab": ["tokenizer=char", f"tool.corpus_path={lines}", f"tool.output_path={out}.txt",
                        "tool.vocab_size=20"],
        "check_model": [*model, f"tool.output_path={out}.tsv"],
        "cloze_test": [*model, f"tool.test_path={masked}", f"tool.output_path={out}.jsonl"],
        "convert": [*model, "tool.input_format=uer_ckpt", "tool.output_format=uer", f"tool.output_path={out}.bin"],
        "diff_vocab": [f"tool.vocab_path={inputs['vocab']}", f"tool.new_vocab_path={inputs['other']}",
                       f"tool.output_path={out}.json"],
        "dynamic_vocab_adapter": [f"tool.input_path={inputs['bin']}", f"tool.vocab_path={inputs['vocab']}",
                                  f"tool.new_vocab_path={inputs['other']}", f"tool.output_path={out}.bin",
                                  "tokenizer=char", f"tokenizer.vocab_path={inputs['vocab']}", "size=tiny", *SMALL],
        "extract_embedding": [*model, f"tool.output_path={out}.npy"],
        "extract_feature": [*model, f"tool.test_path={lines}", f"tool.output_path={out}.npy"],
        "generate": [f"tool.input_path={inputs['lm']}", f"tool.test_path={lines}", f"tool.output_path={out}.txt",
                     "tool.max_new_tokens=2"],
        "topn_words_dep": [*model, f"tool.test_path={contexts}", f"tool.output_path={out}.jsonl"],
        "topn_words_indep": [*model, f"tool.test_path={words}", f"tool.output_path={out}.jsonl"],
    }[name]


@pytest.mark.parametrize("name", options("tool"))
def test_tool_reads_exactly_its_schema(name, tool_inputs):
    cfg = compose_config(["stage=tool", f"tool={name}", "hardware.num_threads=1", *tool_overrides(name, tool_inputs)])
    declared = record_node(cfg, "tool")
    run_stage(cfg)
    assert _read_keys("tool") | {"type"} == declared
    assert registry_of("tool").config_class(name) is OmegaConf.get_type(cfg.tool)


# --- the shared nodes: sizes and hardware --------------------------------------------------

def test_every_size_is_used_by_some_component():
    """``model.*`` holds the settings the parts share: each must be interpolated into some part's schema or
    option file; ``model.config_path`` is the one read on its own (it sets the others)."""
    import re

    from uer.config.model_size import ModelSizeConfig

    used = set()
    for registry in registries():
        for schema in registry.configs().values():
            for f in dataclasses.fields(schema):
                if isinstance(f.default, str) and f.default.startswith("${model."):
                    used.add(f.default[len("${model."):-1])
    for path in (ROOT / "conf").glob("*/*.yaml"):
        used.update(re.findall(r"\$\{model\.(\w+)\}", path.read_text(encoding="utf-8")))
    assert used | {"config_path"} == fields(ModelSizeConfig)


def test_every_hardware_key_is_read_where_runs_are_set_up():
    """The hardware options share one schema; each key must be read by the code that sets runs up."""
    import re

    from uer.runtime import HardwareConfig

    source = "".join((ROOT / "uer" / name).read_text(encoding="utf-8")
                     for name in ("runtime.py", "launch.py", "distributed.py", "training/process.py", "stages/infer.py",
                                  "training/session.py", "stages/pretrain.py", "tools/model_loading.py"))
    unread = [key for key in fields(HardwareConfig)
              if not re.search(rf"\b(hardware|hw|cfg\.hardware)\.{key}\b", source)]
    assert not unread, unread
