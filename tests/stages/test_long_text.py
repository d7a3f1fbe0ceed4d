"""task.long_text=sliding: windows by hand, pooling by hand, a run on rows longer than the positions, bad values."""

import json

import pytest
import torch

from omegaconf import OmegaConf

from uer.app import run_stage
from uer.errors import UerError
from uer.io.checkpoint import load_checkpoint
from uer.models import build_backbone
from uer.stages.infer import task_config
from uer.tasks import TaskData, make_task
from uer.tasks.classifier import ClsExample, pool_windows, windows
from uer.tokenizers import build_tokenizer
from uer_testing import ROOT, compose_config, error_lines, expect_user_error, run_main, slice_file

DATA = ROOT / "datasets" / "test_data" / "book_review"
# 32 positions and windows of 16 tokens: most book reviews are longer than the model's positions.
RUN = ["size=smoke", "model.max_seq_length=32", "finetune.seq_length=16", "finetune.batch_size=8",
       "finetune.max_steps=3", "hardware.num_threads=1", "task.long_text=sliding", "task.stride=8"]


def test_windows_hand_worked():
    src, seg = [100, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1] * 6 + [2] * 4  # [CLS] and 9 tokens
    # seq_length=5: [CLS] + 4 tokens a window, starts 0, 3, 6 (6 + 4 reaches token 9), the last one shorter.
    assert windows(src, seg, 5, 3) == [([100, 1, 2, 3, 4], [1, 1, 1, 1, 1]),
                                       ([100, 4, 5, 6, 7], [1, 1, 1, 2, 2]),
                                       ([100, 7, 8, 9], [1, 2, 2, 2])]
    assert windows(src, seg, 5, 4) == [([100, 1, 2, 3, 4], [1] * 5), ([100, 5, 6, 7, 8], [1, 1, 2, 2, 2]),
                                       ([100, 9], [1, 2])]
    assert windows(src, seg, 10, 1) == [(src, seg)]  # fits: one window, the input itself
    assert windows(src, seg, 9, 1) == [(src[:9], seg[:9]), ([100, *src[2:]], [1, *seg[2:]])]


def test_pooling_and_accuracy_hand_worked():
    logits = torch.tensor([[1.0, 0.0], [3.0, -2.0], [2.0, 2.0], [-1.0, 5.0], [0.0, 1.0],
                           [0.0, 3.0], [2.0, 0.0], [2.0, 0.0]])
    # Rows of 2, 1, 2 and 3 windows.
    counts = torch.tensor([2, 1, 2, 3])
    mean = pool_windows(logits, counts, "mean")
    maximum = pool_windows(logits, counts, "max")
    assert mean[:3].tolist() == [[2.0, -1.0], [2.0, 2.0], [-0.5, 3.0]]
    torch.testing.assert_close(mean[3], torch.tensor([4 / 3, 1.0]))
    assert maximum.tolist() == [[3.0, 0.0], [2.0, 2.0], [0.0, 5.0], [2.0, 3.0]]
    # The max passes the gradient to the window holding the maximum (two tied windows share it), the mean
    # 1 / the row's windows to each.
    weights = logits.clone().requires_grad_()
    pool_windows(weights, counts, "max").sum().backward()
    assert weights.grad.tolist() == [[0, 1], [1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [0.5, 0], [0.5, 0]]
    weights.grad = None
    pool_windows(weights, counts, "mean").sum().backward()
    assert weights.grad[:, 0].tolist() == pytest.approx([1 / 2, 1 / 2, 1, 1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 3])
    # Gold 0, 1, 1, 1: mean predicts 0, 0 (a tie goes to the first class), 1, 0 -> 2 of 4 right;
    # max predicts 0, 0, 1, 1 -> 3 of 4.
    task, _ = classifier(8)
    data = TaskData("rows.tsv", [ClsExample([0], [1], label, line) for line, label in enumerate([0, 1, 1, 1], 2)])
    assert task.evaluate([mean], data, 2)["acc"] == 0.5
    assert task.evaluate([maximum], data, 2)["acc"] == 0.75


def classifier(seq_length, **keys):
    tokenizer = build_tokenizer(compose_config([]).tokenizer)
    cfg = {"type": "classifier", "labels_num": 2, **keys}
    return make_task(cfg, tokenizer, seq_length), tokenizer


def test_batch_holds_each_row_s_windows_and_a_short_row_is_as_cut(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("label\ttext_a\n1\t一二三四五六七八九\n0\t好书\n", encoding="utf-8")
    sliding, tok = classifier(6, long_text="sliding", stride=2)
    data = sliding.read(path, split="train", labels_num=None, skip_bad_rows=False)
    long_row = data.examples[0]
    assert long_row.src == [tok.vocab.cls_id, *tok.encode("一二三四五六七八九"), tok.vocab.sep_id]  # not cut
    batch = sliding.collate(data.examples)
    # 10 tokens after [CLS], 5 a window, starts 0, 2, 4, 6 (6 + 5 reaches the end): 4 windows, then 1.
    assert batch["windows"].tolist() == [4, 1] and batch["label"].tolist() == [1, 0]
    assert batch["src"].shape == (5, 6)
    assert batch["src"][3].tolist()[:5] == [tok.vocab.cls_id, *long_row.src[7:]]
    cut, _ = classifier(6)
    short = cut.collate(cut.read(path, split="train", labels_num=None, skip_bad_rows=False).examples[1:])
    assert torch.equal(batch["src"][4, :4], short["src"][0]) and "windows" not in short


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("long")
    files = {name: slice_file(DATA / f"{name}.tsv", tmp / f"{name}.tsv", rows)
             for name, rows in (("train", 24), ("dev", 8), ("test_nolabel", 12))}
    cfg = compose_config(["stage=finetune", "task=classifier", f"finetune.train_path={files['train']}",
                          f"finetune.dev_path={files['dev']}", f"output_model_path={tmp / 'clf'}", *RUN])
    run_stage(cfg)
    return tmp, files


def test_rows_longer_than_the_positions_train_and_infer_one_pooled_row_each_in_order(trained):
    tmp, files = trained
    payload = load_checkpoint(tmp / "clf" / "best.pt")
    assert payload["config"]["task"]["long_text"] == "sliding" and payload["config"]["task"]["stride"] == 8
    record = json.loads((tmp / "clf" / "results.jsonl").read_text().splitlines()[0])
    assert record["split"] == "dev" and 0.0 <= record["acc"] <= 1.0
    pred = tmp / "pred.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={tmp / 'clf' / 'best.pt'}",
                              f"infer.test_path={files['test_nolabel']}", f"infer.prediction_path={pred}",
                              "infer.output_logits=true", "hardware.num_threads=1"]))
    lines = pred.read_text(encoding="utf-8").splitlines()
    texts = [line for line in files["test_nolabel"].read_text(encoding="utf-8").splitlines()[1:]]
    assert lines[0] == "label\tlogits" and len(lines) == 1 + len(texts)
    # Each row's logits, worked out here: its windows (16 tokens, 8 apart) classified one by one, then averaged.
    model, tok = trained_model(payload)
    lengths = []
    for text, line in zip(texts, lines[1:]):
        tokens = [*tok.encode(text), tok.vocab.sep_id]
        lengths.append(len(tokens) + 1)
        expected = hand_worked(model, tok, text, stride=8, pooling="mean")
        label, logits = line.split("\t")
        written = torch.tensor([float(x) for x in logits.split(" ")])
        torch.testing.assert_close(written, expected, rtol=1e-4, atol=1e-4)
        assert int(label) == int(expected.argmax())
    assert max(lengths) > 32  # rows longer than the 32 positions were read whole


def trained_model(payload):
    """The fine-tuned classifier of ``payload`` (RUN's smoke model) in eval mode, and its tokenizer."""
    cfg = compose_config(["task=classifier", "size=smoke", "model.max_seq_length=32"])
    task, tok = classifier(16)
    model = task.build_model(build_backbone(cfg.embedding, cfg.encoder, len(tok.vocab)), 2)
    model.load_state_dict(payload["model"])
    return model.eval(), tok


def hand_worked(model, tok, text, stride, pooling) -> torch.Tensor:
    """``text``'s logits by hand: windows of [CLS] and 15 tokens ``stride`` apart (None: the first one alone, the
    cut row), each classified alone, then pooled."""
    tokens = [*tok.encode(text), tok.vocab.sep_id]
    starts = [0] if stride is None else range(0, max(len(tokens) - 15, 0) + stride, stride)
    with torch.no_grad():
        each = torch.stack([model.predict({"src": torch.tensor([[tok.vocab.cls_id, *tokens[s:s + 15]]]),
                                           "seg": torch.ones(1, 1 + len(tokens[s:s + 15]), dtype=torch.long)})[0]
                            for s in starts])
    return each.mean(dim=0) if pooling == "mean" else each.max(dim=0).values


@pytest.mark.parametrize("overrides, stride, pooling", [
    (["infer.long_text=cut"], None, "mean"),  # a model trained on windows, read as the first window alone
    (["infer.stride=4", "infer.window_pooling=max"], 4, "max"),
])
def test_infer_reads_long_rows_another_way_than_the_model_was_fine_tuned_with(trained, overrides, stride, pooling):
    tmp, files = trained
    pred = tmp / f"pred_{stride}.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={tmp / 'clf' / 'best.pt'}",
                              f"infer.test_path={files['test_nolabel']}", f"infer.prediction_path={pred}",
                              "infer.output_logits=true", "hardware.num_threads=1", *overrides]))
    model, tok = trained_model(load_checkpoint(tmp / "clf" / "best.pt"))
    texts = files["test_nolabel"].read_text(encoding="utf-8").splitlines()[1:]
    for text, line in zip(texts, pred.read_text(encoding="utf-8").splitlines()[1:], strict=True):
        written = torch.tensor([float(x) for x in line.split("\t")[1].split(" ")])
        torch.testing.assert_close(written, hand_worked(model, tok, text, stride, pooling), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("override, fragments", [
    ("infer.long_text=chunks", ["infer.long_text=chunks is not known", "cut, sliding"]),
    ("infer.window_pooling=sum", ["infer.window_pooling=sum is not known", "mean, max"]),
])
def test_infer_long_text_values_are_checked_before_writing(trained, capsys, override, fragments):
    tmp, files = trained
    pred = tmp / "checked.tsv"
    cfg = compose_config(["stage=infer", f"infer.load_model_path={tmp / 'clf' / 'best.pt'}",
                          f"infer.test_path={files['test_nolabel']}", f"infer.prediction_path={pred}",
                          "hardware.num_threads=1", override])
    expect_user_error(capsys, cfg, *fragments)
    assert not pred.exists()


def test_long_text_keys_on_a_task_without_windows_are_one_line():
    options = OmegaConf.create({"long_text": "sliding", "stride": None, "window_pooling": None, "generation": None})
    with pytest.raises(UerError, match=r"^infer.long_text applies to tasks that read a long row by windows .* "
                                       r"not task=ner; drop it$"):
        task_config({"type": "ner"}, options, "infer")
    assert task_config({"type": "classifier", "long_text": "cut"}, options, "infer")["long_text"] == "sliding"


@pytest.mark.parametrize("override, fragments", [
    ("task.stride=0", ["task.stride=0", "between 1 and 15"]),
    ("task.stride=16", ["task.stride=16", "between 1 and 15"]),
    ("task.long_text=chunks", ["task.long_text=chunks", "cut, sliding"]),
    ("task.window_pooling=sum", ["task.window_pooling=sum", "mean, max"]),
    ("task.head=gelu", ["task.head=gelu", "dense_tanh, dense_gelu, linear"]),  # the classifier's other key
])
def test_bad_values_are_one_line_naming_the_key(tmp_path, capsys, override, fragments):
    train = slice_file(DATA / "train.tsv", tmp_path / "train.tsv", 8)
    cfg = compose_config(["stage=finetune", "task=classifier", f"finetune.train_path={train}",
                          f"finetune.dev_path={train}", f"output_model_path={tmp_path / 'clf'}", *RUN, override])
    expect_user_error(capsys, cfg, *fragments)
    assert not (tmp_path / "clf" / "best.pt").exists()


def test_bad_stride_via_main_is_one_line_exit_2_and_writes_nothing(tmp_path):
    train = slice_file(DATA / "train.tsv", tmp_path / "train.tsv", 8)
    proc = run_main(["stage=finetune", "task=classifier", f"finetune.train_path={train}",
                     f"finetune.dev_path={train}", f"output_model_path={tmp_path / 'clf'}", *RUN, "task.stride=-3"], tmp_path / "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "task.stride=-3" in lines[0], proc.stderr
    assert not (tmp_path / "clf").exists()


def test_infer_too_short_for_the_stored_stride_is_refused_before_writing(trained, capsys):
    tmp, files = trained
    pred = tmp / "short.tsv"
    cfg = compose_config(["stage=infer", f"infer.load_model_path={tmp / 'clf' / 'best.pt'}",
                          f"infer.test_path={files['test_nolabel']}", f"infer.prediction_path={pred}",
                          "infer.seq_length=8", "hardware.num_threads=1"])
    expect_user_error(capsys, cfg, "task.stride=8 is not between 1 and 7", "infer.seq_length")
    assert not pred.exists()
