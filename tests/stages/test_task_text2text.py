"""task=text2text: an encoder-decoder fine-tuned on a tiny synthetic copy task reaches exact match 1.0;
infer from the checkpoint alone and tool=generate write one generation per input row, in order, equal to the
dev generations (greedy and beam 4); bad inputs stop before work with one line and write nothing."""

import json
import random

import pytest
import torch
from transformers import AutoTokenizer, BartForConditionalGeneration

from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.stages.finetune import check_decoder_use
from uer.models import build_model
from uer.models.generation import GenerationConfig, generate_rows
from uer_testing import compose_config, expect_user_error, save_model_checkpoint

pytestmark = pytest.mark.e2e

CHARS = "一二三四"  # four symbols, strings of 2-4: a one-layer model learns to copy them in a few hundred steps
TINY = ["size=smoke", "model.layers_num=1", "model.hidden_size=64", "model.emb_size=64", "model.feedforward_size=128",
        "model.dropout=0", "model.max_seq_length=16", "finetune.seq_length=16", "hardware.num_threads=1"]
TRAIN = ["finetune.max_steps=300", "finetune.batch_size=32", "finetune.learning_rate=3e-3",
         "finetune.metric=exact_match", "finetune.report_steps=100"]


def strings(rows: int, seed: int) -> list[str]:
    r = random.Random(seed)
    return ["".join(r.choice(CHARS) for _ in range(r.randint(2, 4))) for _ in range(rows)]


def write_tsv(path, header: str, rows: list[str]):
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def copy_task(tmp_path_factory):
    """Train once: the files, the vocabulary, and the fine-tuned model's directory."""
    tmp = tmp_path_factory.mktemp("text2text")
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]) + "\n", encoding="utf-8")
    dev = strings(16, 2)
    files = {"vocab": vocab, "dir": tmp, "dev_rows": dev,
             "train": write_tsv(tmp / "train.tsv", "source\ttarget", [f"{s}\t{s}" for s in strings(1600, 1)]),
             "dev": write_tsv(tmp / "dev.tsv", "target\tsource", [f"{s}\t{s}" for s in dev]),  # any column order
             "out": tmp / "model"}
    run_stage(compose_config(["task=text2text", "embedding=word_pos", *args(files, files["out"]), *TRAIN,
                              f"finetune.test_path={files['dev']}"]))  # word_pos: BART's embedding, to export
    return files


def args(files, out) -> list[str]:
    return [f"tokenizer.vocab_path={files['vocab']}", *TINY, f"finetune.train_path={files['train']}",
            f"finetune.dev_path={files['dev']}", f"output_model_path={out}"]


def results(out) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_copy_task_reaches_exact_match_one(copy_task):
    last = results(copy_task["out"])
    dev = [r for r in last if r["split"] == "dev"]
    test = [r for r in last if r["split"] == "test"]
    assert dev[-1]["exact_match"] == 1.0 and dev[-1]["bleu"] == pytest.approx(100.0)
    assert test[0]["exact_match"] == 1.0 and test[0]["rougeL"] == pytest.approx(1.0)
    assert dev[0]["exact_match"] < 1.0  # it learnt: the first evaluation was not already perfect
    config = load_checkpoint(copy_task["out"] / "best.pt")["config"]
    assert config["decoder"]["type"] == "transformer" and config["target"]["type"] == "seq2seq"
    assert config["decoder"]["start_id"] == 2  # the vocabulary's [CLS]


@pytest.mark.parametrize("beams", [1, 4])
def test_infer_and_generate_write_one_generation_per_row_in_order(copy_task, beams):
    tmp, rows = copy_task["dir"], copy_task["dev_rows"]
    sources = write_tsv(tmp / "infer.tsv", "source", rows)  # no target column: infer needs none
    predictions = tmp / f"predictions_{beams}.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={copy_task['out']}", f"infer.test_path={sources}",
                              f"infer.prediction_path={predictions}", "infer.batch_size=5",
                              f"infer.generation.num_beams={beams}"]))
    lines = predictions.read_text(encoding="utf-8").splitlines()
    assert lines == ["source\tgeneration", *(f"{s}\t{s}" for s in rows)]  # the dev generations: exact match 1.0

    lines_file = tmp / "sources.txt"
    lines_file.write_text("".join(s + "\n" for s in rows), encoding="utf-8")
    generated = tmp / f"generated_{beams}.txt"
    run_stage(compose_config(["stage=tool", "tool=generate", f"tool.input_path={copy_task['out'] / 'best.pt'}",
                              f"tool.test_path={lines_file}", f"tool.output_path={generated}", "tool.batch_size=3",
                              f"tool.generation.num_beams={beams}"]))
    assert generated.read_text(encoding="utf-8").splitlines() == rows


def test_the_fine_tuned_model_exported_to_hugging_face_generates_what_infer_writes(copy_task, tmp_path):
    """tool=convert writes the fine-tuned checkpoint as BartForConditionalGeneration whose generate(), with only
    what the directory says (start and end ids, tokenizer), stops at [SEP] and writes stage=infer's generations."""
    rows = copy_task["dev_rows"]
    sources = write_tsv(tmp_path / "infer.tsv", "source", rows)
    predictions = tmp_path / "predictions.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={copy_task['out']}", f"infer.test_path={sources}",
                              f"infer.prediction_path={predictions}"]))
    written = [line.split("\t")[1] for line in predictions.read_text(encoding="utf-8").splitlines()[1:]]
    run_stage(compose_config(["stage=tool", "tool=convert", "tool.input_format=uer_ckpt", "hardware.num_threads=1",
                              f"tool.input_path={copy_task['out'] / 'best.pt'}", "tool.output_format=hf",
                              f"tool.output_path={tmp_path / 'hf'}"]))
    model = BartForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    batch = tokenizer(rows, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=12)
    for ids in out.tolist():  # [start] generation [SEP] [PAD]...: each row stopped at its [SEP], as uer's do
        assert set(ids[ids.index(tokenizer.sep_token_id) + 1:]) <= {tokenizer.pad_token_id}
    assert [text.replace(" ", "") for text in tokenizer.batch_decode(out, skip_special_tokens=True)] == written


def test_fine_tuning_starts_from_an_encoder_decoder_checkpoint_with_its_decoder(copy_task, tmp_path):
    """The checkpoint's architecture (one layer, width 64, its decoder and output layer) is adopted without being
    named, and its weights: one more step at a tiny learning rate still copies every dev row."""
    out = tmp_path / "again"
    run_stage(compose_config(["task=text2text", f"pretrained_model_path={copy_task['out'] / 'best.pt'}",
                              "hardware.num_threads=1", f"finetune.train_path={copy_task['train']}",
                              f"finetune.dev_path={copy_task['dev']}", f"output_model_path={out}",
                              "finetune.max_steps=1", "finetune.learning_rate=1e-9", "finetune.seq_length=16"]))
    assert results(out)[-1]["exact_match"] == 1.0
    before, after = (load_checkpoint(path / "best.pt")["config"] for path in (copy_task["out"], out))
    first, second = ({k: v for k, v in config["decoder"].items() if k != "dropout"}  # dropout: this run's (tunable)
                     for config in (before, after))
    assert first == second and after["target"] == before["target"]
    assert after["encoder"]["layers_num"] == 1


def test_fine_tuning_an_encoder_only_checkpoint_keeps_the_task_s_decoder(copy_task, tmp_path):
    """An mlm checkpoint gives the encoder; its target, a pre-training head, does not replace target=seq2seq."""
    sizes = [f for f in TINY if f.startswith(("model.", "size="))]
    cfg = compose_config(["stage=pretrain", "target=mlm", f"tokenizer.vocab_path={copy_task['vocab']}", *sizes])
    mlm = build_model(cfg.embedding, cfg.encoder, cfg.target, len(CHARS) + 5)
    start = save_model_checkpoint(tmp_path / "mlm.pt", mlm, cfg)
    out = tmp_path / "from_mlm"
    run_stage(compose_config(["task=text2text", f"pretrained_model_path={start}", *args(copy_task, out),
                              "finetune.max_steps=1"]))
    config = load_checkpoint(out / "best.pt")["config"]
    assert config["target"]["type"] == "seq2seq" and config["decoder"]["type"] == "transformer"


def test_generate_refuses_a_language_model_setting_for_an_encoder_decoder(copy_task, capsys):
    out = copy_task["dir"] / "never.txt"
    (copy_task["dir"] / "sources.txt").write_text("一二\n", encoding="utf-8")
    cfg = compose_config(["stage=tool", "tool=generate", f"tool.input_path={copy_task['out'] / 'best.pt'}",
                          f"tool.test_path={copy_task['dir'] / 'sources.txt'}", f"tool.output_path={out}",
                          "tool.temperature=0.5"])
    expect_user_error(capsys, cfg, "tool.temperature does not apply to the encoder-decoder",
                      "tool.generation.temperature")
    assert not out.exists()


@pytest.fixture(scope="module")
def pretrained_seq2seq(copy_task):
    """An encoder-decoder checkpoint as stage=pretrain decoder=transformer target=seq2seq writes it (random weights)."""
    sizes = [f for f in TINY if f.startswith(("model.", "size="))]
    cfg = compose_config(["stage=pretrain", "decoder=transformer", "target=seq2seq", "decoder.start_id=2",
                          f"tokenizer.vocab_path={copy_task['vocab']}", *sizes])
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(CHARS) + 5, decoder_cfg=cfg.decoder)
    (copy_task["dir"] / "three.txt").write_text("一二\n三\n四四一\n", encoding="utf-8")
    return save_model_checkpoint(copy_task["dir"] / "seq2seq.pt", model, cfg), model.eval()


def test_generate_from_a_pretrained_encoder_decoder_writes_a_line_per_source(copy_task, pretrained_seq2seq):
    """Each line is the model's beam-2 generation for its source ([CLS] source [SEP], ids 2 and 3)."""
    sources = copy_task["dir"] / "three.txt"
    out = copy_task["dir"] / "pretrained_generated.txt"
    path, model = pretrained_seq2seq
    run_stage(compose_config(["stage=tool", "tool=generate", f"tool.input_path={path}",
                              f"tool.test_path={sources}", f"tool.output_path={out}", "tool.generation.num_beams=2",
                              "tool.generation.max_new_tokens=3"]))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS]
    rows = [[2, *(vocab.index(ch) for ch in text), 3] for text in ("一二", "三", "四四一")]
    generated = generate_rows(model, rows, [[1] * len(row) for row in rows],
                              GenerationConfig(num_beams=2, max_new_tokens=3), eos_id=3, batch_size=2,
                              device=torch.device("cpu"))
    assert out.read_text(encoding="utf-8") == "".join("".join(vocab[i] for i in ids) + "\n" for ids in generated)


def test_generate_refuses_more_beams_than_the_vocabulary(copy_task, pretrained_seq2seq, capsys):
    out = copy_task["dir"] / "never_beams.txt"
    cfg = compose_config(["stage=tool", "tool=generate", f"tool.input_path={pretrained_seq2seq[0]}",
                          f"tool.test_path={copy_task['dir'] / 'three.txt'}", f"tool.output_path={out}",
                          "tool.generation.num_beams=10"])
    expect_user_error(capsys, cfg, "tool.generation.num_beams=10", "larger than the vocabulary (9 tokens)")
    assert not out.exists()


def test_infer_refuses_logits_for_generations(copy_task, capsys):
    predictions = copy_task["dir"] / "never.tsv"
    cfg = compose_config(["stage=infer", f"infer.load_model_path={copy_task['out']}",
                          f"infer.test_path={copy_task['dev']}", f"infer.prediction_path={predictions}",
                          "infer.output_prob=true"])
    expect_user_error(capsys, cfg, "task=text2text writes no logits or probabilities", "infer.output_prob")
    assert not predictions.exists()


def bad_run(copy_task, tmp_path, *extra):
    out = tmp_path / "model"
    return compose_config(["task=text2text", *args(copy_task, out), "finetune.max_steps=1", *extra]), out


def test_a_training_file_without_the_target_column_is_one_line(copy_task, tmp_path, capsys):
    train = write_tsv(tmp_path / "t.tsv", "source", ["一二"])
    cfg, out = bad_run(copy_task, tmp_path, f"finetune.train_path={train}")
    expect_user_error(capsys, cfg, f"{train}:1", "no 'target' column", "source<TAB>target")
    assert not out.exists()


def test_a_target_longer_than_the_decoder_positions_is_one_line(copy_task, tmp_path, capsys):
    long = "一" * 16  # 16 tokens + the start token: 17 decoder inputs, the decoder has 16 positions
    train = write_tsv(tmp_path / "t.tsv", "source\ttarget", ["一二\t一二", f"一二\t{long}"])
    cfg, out = bad_run(copy_task, tmp_path, f"finetune.train_path={train}")
    expect_user_error(capsys, cfg, f"{train}:3", "the target has 16 tokens", "the decoder's 16 positions",
                      "finetune.skip_bad_rows=true")
    assert not out.exists()


def test_a_target_longer_than_tgt_seq_length_names_the_setting(copy_task, tmp_path, capsys):
    cfg, out = bad_run(copy_task, tmp_path, "task.tgt_seq_length=3")
    expect_user_error(capsys, cfg, "task.tgt_seq_length=3", "raise task.tgt_seq_length to")
    assert not out.exists()


def test_more_beams_than_the_vocabulary_is_one_line(copy_task, tmp_path, capsys):
    cfg, out = bad_run(copy_task, tmp_path, "task.generation.num_beams=10")
    expect_user_error(capsys, cfg, "task.generation.num_beams=10", "larger than the vocabulary (9 tokens)")
    assert not out.exists()


def test_a_decoder_with_an_encoder_task_is_one_line(copy_task, tmp_path, capsys):
    out = tmp_path / "model"
    cfg = compose_config(["task=classifier", "decoder=transformer", f"tokenizer.vocab_path={copy_task['vocab']}",
                          *TINY, f"finetune.train_path={copy_task['train']}", f"output_model_path={out}"])
    expect_user_error(capsys, cfg, "task=classifier", "uses no decoder=transformer")
    assert not out.exists()


def test_text2text_without_a_decoder_is_refused():
    cfg = compose_config(["task=text2text"])
    cfg.decoder = None  # decoder=null does not compose over the task's choice; a config built otherwise can
    with pytest.raises(Exception, match="task=text2text needs an encoder-decoder"):
        check_decoder_use(cfg)
