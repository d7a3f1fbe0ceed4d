"""Checked weights: a checkpoint carries a checksum of its contents, verified by every loader; resume falls back to
the newest checkpoint that verifies; weights holding NaN or inf are refused unless asked for."""

import hashlib
import json
import logging
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from uer.app import run_stage
from uer.errors import UerError
from uer.io.checkpoint import CHECKSUM, load_checkpoint, sealed, step_checkpoints
from uer.io.formats import read_model_file
from uer.io.pretrained import load_pretrained_weights
from uer.io.uer_format import save_uer_bin
from tool_testing import make_checkpoint, make_model, run_tool, tool_config, tool_error, write_vocab
from uer_testing import SMALL, compose_config, expect_user_error


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def largest_tensor_region(path: Path) -> tuple[int, int]:
    """``(offset, size)`` of the largest tensor's bytes inside the checkpoint's zip archive (stored uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)  # the zip local file header: name and extra field lengths at bytes 26..29
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length, info.file_size


def flip_bytes(path: Path, count: int = 4096) -> None:
    """Invert up to ``count`` bytes in the middle of the largest tensor's data, as a failing disk might."""
    offset, size = largest_tensor_region(path)
    count = min(count, size)
    start = offset + (size - count) // 2
    data = bytearray(path.read_bytes())
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


@pytest.fixture
def corrupt(tmp_path, vocab):
    """A tiny checkpoint with flipped bytes in its tensor data (torch still loads it without a word)."""
    path, _ = make_checkpoint(tmp_path / "m.pt", vocab)
    flip_bytes(path)
    torch.load(path, map_location="cpu", weights_only=True)
    return path


def test_flipped_bytes_change_weights_that_torch_loads(tmp_path, vocab):
    path, model = make_checkpoint(tmp_path / "m.pt", vocab)
    flip_bytes(path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)["model"]
    assert any(not torch.equal(loaded[key], value) for key, value in model.state_dict().items())


@pytest.mark.parametrize("loader", [load_checkpoint, read_model_file], ids=["load_checkpoint", "read_model_file"])
def test_loaders_refuse_a_corrupt_checkpoint(corrupt, loader):
    with pytest.raises(UerError, match="is corrupt") as err:
        loader(corrupt)
    assert str(corrupt) in str(err.value) and "\n" not in str(err.value)


def test_starting_weights_refuse_a_corrupt_checkpoint(corrupt, vocab):
    _, model, _ = make_model(vocab)
    with pytest.raises(UerError, match="is corrupt"):
        load_pretrained_weights(model, corrupt)


TOOL_RUNS = {
    "check_model": [],
    "extract_embedding": [],
    "extract_feature": ["tool.text='北京'"],
    "cloze_test": ["tool.text='北[MASK]'"],
    "topn_words_indep": ["tool.text='北'"],
    "convert": ["tool.input_format=uer_ckpt", "tool.output_format=uer"],
}


@pytest.mark.parametrize("tool", sorted(TOOL_RUNS))
def test_tools_refuse_a_corrupt_checkpoint(capsys, tmp_path, vocab, corrupt, tool):
    before, out = digest(corrupt), tmp_path / ("out.bin" if tool == "convert" else "out.npy")
    line = tool_error(capsys, tool, f"tool.input_path={corrupt}", f"tool.output_path={out}", *TOOL_RUNS[tool],
                      vocab=vocab)
    assert "is corrupt" in line and str(corrupt) in line
    assert digest(corrupt) == before and not out.exists()


def test_average_model_refuses_a_corrupt_checkpoint(capsys, tmp_path, vocab, corrupt):
    good, _ = make_checkpoint(tmp_path / "good.pt", vocab)
    line = tool_error(capsys, "average_model", f"tool.input_paths=[{good},{corrupt}]",
                      f"tool.output_path={tmp_path / 'avg.pt'}", vocab=vocab)
    assert "is corrupt" in line and str(corrupt) in line


@pytest.mark.parametrize("stage", ["infer", "score"])
def test_inference_and_scoring_refuse_a_corrupt_checkpoint(capsys, tmp_path, corrupt, stage):
    test = tmp_path / "test.tsv"
    test.write_text("text_a\n北京\n", encoding="utf-8")
    extra = [f"infer.prediction_path={tmp_path / 'p.tsv'}"] if stage == "infer" else []
    cfg = compose_config([f"stage={stage}", "hardware.num_threads=1", f"{stage}.load_model_path={corrupt}",
                          f"{stage}.test_path={test}", *extra])
    expect_user_error(capsys, cfg, "is corrupt", str(corrupt))


@pytest.mark.parametrize("stage", ["finetune", "pretrain"])
def test_training_from_a_corrupt_checkpoint_is_refused(capsys, tmp_path, corrupt, stage):
    data = {"finetune": ["task=classifier", "finetune.train_path=t.tsv", "finetune.dev_path=d.tsv"],
            "pretrain": ["stage=pretrain", "target=mlm", f"pretrain.dataset_path={tmp_path / 'data'}"]}[stage]
    cfg = compose_config([*data, f"pretrained_model_path={corrupt}", f"output_model_path={tmp_path / 'out'}"])
    expect_user_error(capsys, cfg, "is corrupt", str(corrupt))
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_checksum_loads_quietly(tmp_path, vocab, caplog):
    """Checkpoints written before checksums load unchecked, without a warning."""
    path, model = make_checkpoint(tmp_path / "m.pt", vocab)
    payload = torch.load(path, weights_only=True)
    del payload[CHECKSUM]
    torch.save(payload, path)
    with caplog.at_level(logging.INFO):
        loaded = load_checkpoint(path)
    assert not caplog.records
    assert all(torch.equal(loaded["model"][key], value) for key, value in model.state_dict().items())


def test_the_checksum_covers_every_value(tmp_path, vocab):
    """Not only the weights: the vocabulary, the config and odd tensors (0-d, bfloat16) too."""
    path, _ = make_checkpoint(tmp_path / "m.pt", vocab)
    payload = torch.load(path, weights_only=True)
    payload["trainer"] = {"step": torch.tensor(3), "half": torch.ones(2, 2, dtype=torch.bfloat16), "rng": (1, 2)}
    torch.save(sealed(payload), path)
    load_checkpoint(path)
    for change in (lambda p: p["tokenizer"]["tokens"].__setitem__(7, "X"), lambda p: p["config"].update(seed=8),
                   lambda p: p["trainer"]["half"].__setitem__(0, 2.0), lambda p: p["trainer"].update(rng=[1, 2])):
        changed = torch.load(path, weights_only=True)
        change(changed)
        torch.save(changed, tmp_path / "changed.pt")
        with pytest.raises(UerError, match="is corrupt"):
            load_checkpoint(tmp_path / "changed.pt")


# ------------------------------------------------------------------------------------ non-finite weights


@pytest.fixture
def nan_checkpoint(tmp_path, vocab):
    """A checkpoint, checksum and all, whose second layer's bias holds a NaN."""
    path, _ = make_checkpoint(tmp_path / "nan.pt", vocab)
    payload = torch.load(path, weights_only=True)
    payload["model"]["backbone.encoder.transformer.1.feed_forward.linear_2.bias"][3] = float("nan")
    torch.save(sealed(payload), path)
    return path


NAN_TENSOR = "backbone.encoder.transformer.1.feed_forward.linear_2.bias"


@pytest.mark.parametrize("tool", ["extract_embedding", "extract_feature", "cloze_test", "topn_words_indep"])
def test_tools_refuse_nan_weights_naming_the_tensor(capsys, tmp_path, vocab, nan_checkpoint, tool):
    out = tmp_path / "out.npy"
    line = tool_error(capsys, tool, f"tool.input_path={nan_checkpoint}", f"tool.output_path={out}",
                      *TOOL_RUNS.get(tool, []), vocab=vocab)
    assert NAN_TENSOR in line and str(nan_checkpoint) in line and "allow_nonfinite_weights=true" in line
    assert not out.exists()


@pytest.mark.parametrize("stage", ["infer", "score"])
def test_inference_and_scoring_refuse_nan_weights(capsys, tmp_path, nan_checkpoint, stage):
    test = tmp_path / "test.tsv"
    test.write_text("text_a\n北京\n", encoding="utf-8")
    cfg = compose_config([f"stage={stage}", "hardware.num_threads=1", f"{stage}.load_model_path={nan_checkpoint}",
                          f"{stage}.test_path={test}"])
    expect_user_error(capsys, cfg, NAN_TENSOR, "allow_nonfinite_weights=true")


def test_nan_weights_can_be_inspected_when_allowed(tmp_path, vocab, nan_checkpoint, caplog):
    out = tmp_path / "emb.npy"
    run_tool("extract_embedding", f"tool.input_path={nan_checkpoint}", f"tool.output_path={out}",
             "allow_nonfinite_weights=true", vocab=vocab)
    assert out.is_file()
    assert any(NAN_TENSOR in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def refuse_constant(name):
    raise AssertionError(f"{name} is not JSON")


def test_cloze_on_nan_weights_allowed_still_writes_json(tmp_path, vocab, nan_checkpoint):
    """Allowed to load NaN weights, cloze_test scores every token NaN: written as JSON's null, not a bare NaN."""
    out = tmp_path / "cloze.jsonl"
    run_tool("cloze_test", f"tool.input_path={nan_checkpoint}", f"tool.output_path={out}", *TOOL_RUNS["cloze_test"],
             "allow_nonfinite_weights=true", vocab=vocab)
    [record] = [json.loads(line, parse_constant=refuse_constant)
                for line in out.read_text(encoding="utf-8").splitlines()]
    assert [score for _, score in record["predictions"][0]] == [None] * len(record["predictions"][0])


def test_original_bin_with_inf_is_refused(tmp_path, vocab, capsys):
    _, model, _ = make_model(vocab)
    with torch.no_grad():
        model.backbone.embedding.word_embedding.weight[2, 0] = float("inf")
    save_uer_bin(model, tmp_path / "model.bin")
    with pytest.raises(UerError, match="word_embedding"):
        read_model_file(tmp_path / "model.bin")
    assert read_model_file(tmp_path / "model.bin", allow_nonfinite=True)[0] == "bin"


def test_hugging_face_weights_with_nan_are_refused_by_convert(capsys, tmp_path, vocab):
    path, _ = make_checkpoint(tmp_path / "m.pt", vocab)
    hf = tmp_path / "hf.safetensors"
    run_tool("convert", f"tool.input_path={path}", "tool.input_format=uer_ckpt", f"tool.output_path={hf}",
             "tool.output_format=hf", vocab=vocab)
    state = load_file(str(hf))
    state["bert.encoder.layer.0.output.dense.bias"][1] = float("nan")
    save_file(state, str(hf), metadata={"format": "pt"})
    out = tmp_path / "back.pt"
    line = tool_error(capsys, "convert", f"tool.input_path={hf}", "tool.input_format=hf", f"tool.output_path={out}",
                      "tool.output_format=uer_ckpt", vocab=vocab)
    assert str(hf) in line and "NaN or inf" in line and not out.exists()


# ------------------------------------------------------------------------------------------------- resume


def train_config(data, model: Path, *extra):
    return compose_config(["stage=pretrain", "size=tiny", *SMALL, "hardware.num_threads=1",
                           f"pretrain.dataset_path={data}", "pretrain.total_steps=6", "pretrain.batch_size=4",
                           "pretrain.report_steps=2", "pretrain.save_checkpoint_steps=2", f"output_model_path={model}",
                           *extra])


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path, mlm_data, caplog):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_stage(train_config(mlm_data, straight))
    run_stage(train_config(mlm_data, split, "pretrain.stop_after_steps=4"))
    assert [step for step, _ in step_checkpoints(split)] == [2, 4]
    flip_bytes(split / "step_4.pt")
    with caplog.at_level(logging.WARNING):
        run_stage(train_config(mlm_data, split, "resume=true"))
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "step_4.pt" in r.getMessage()]
    assert len(warnings) == 1 and "step_2.pt" in warnings[0] and "corrupt" in warnings[0], warnings
    for step in (4, 6):
        a, b = (load_checkpoint(run / f"step_{step}.pt")["model"] for run in (straight, split))
        assert all(torch.equal(a[key], b[key]) for key in a), step
