"""Shared helpers for tests: compose the real configs, run main.py, small model sizes."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uer.cli import normalize_overrides
from uer.composition import compose
from uer.app import run_stage
from uer.training import fsdp

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "models" / "google_zh_vocab.txt"

# Shrinks any size preset to something that trains in milliseconds per step on a CPU.
SMALL = ["model.emb_size=32", "model.hidden_size=32", "model.feedforward_size=64",
         "model.heads_num=2", "model.layers_num=2"]

def compose_config(overrides: list[str]):
    """The config main.py would build from these overrides (no run directory), the caller's own copy.

    The vocabulary is given by absolute path where the stage has a tokenizer group.
    """
    return copy.deepcopy(_composed(tuple(normalize_overrides(list(overrides)))))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    """Each distinct override list composed once per test process: a Hydra composition takes ~0.15 s, a copy of
    its result ~4 ms, and the suite asks for the same config many times (parametrised tests, collection)."""
    cfg = compose(list(overrides))
    if "tokenizer" in cfg and cfg.tokenizer.get("vocab_path") == "models/google_zh_vocab.txt":
        cfg.tokenizer.vocab_path = str(VOCAB)
    return cfg


def run_main(args: list[str], run_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python main.py ARGS`` from the repo root as a user would, with Hydra's run dir at ``run_dir``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def expect_user_error(capsys, cfg, *fragments) -> str:
    """Run a stage in-process; assert it stops with exit 2 and ONE ``error:`` line holding ``fragments``."""
    with pytest.raises(SystemExit) as exc:
        run_stage(cfg)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def slice_file(src: Path, dst: Path, rows: int) -> Path:
    """The header and first ``rows`` rows of a TSV file."""
    lines = src.read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join(lines[:rows + 1]) + "\n", encoding="utf-8")
    return dst


def book_review_slices(directory: Path, **rows: int) -> dict:
    """``{split: path}`` of the first ``rows[split]`` rows of each named book_review test_data file."""
    source = ROOT / "datasets" / "test_data" / "book_review"
    return {name: slice_file(source / f"{name}.tsv", directory / f"{name}.tsv", count) for name, count in rows.items()}


def synthetic_sts(path: Path, rows: int, start: int = 0) -> Path:
    """A made-up STS-style TSV (``text_a``, ``text_b``, ``label``) from book_review texts, for tests only: even rows
    pair a review with its own first half (scores 4..4.8), odd rows with another review (scores 0..0.8)."""
    reviews = [line.split("\t")[1][:30] for line in
               (ROOT / "datasets" / "test_data" / "book_review" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    lines = ["text_a\ttext_b\tlabel"]
    for i in range(start, start + rows):
        partner, base = (reviews[i][:15], 4.0) if i % 2 == 0 else (reviews[-1 - i], 0.0)
        lines.append(f"{reviews[i]}\t{partner}\t{base + (i % 5) / 5:g}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def save_model_checkpoint(path: Path, model, cfg, *, trainer=None, **extra_config) -> Path:
    """Write ``model`` as a checkpoint of the run ``cfg`` (its tokenizer from ``cfg.tokenizer``)."""
    from omegaconf import OmegaConf

    from uer.io.checkpoint import save_checkpoint
    from uer.tokenizers import build_tokenizer

    config = {**OmegaConf.to_container(cfg, resolve=True), **extra_config}
    save_checkpoint(path, model_state=model.state_dict(), config=config, tokenizer=build_tokenizer(cfg.tokenizer),
                    trainer=trainer)
    return path


def cached_snapshot(cache: Path, repo_id: str, commit: str = "c0ffee") -> Path:
    """The snapshot folder of ``repo_id`` in hub cache ``cache``, as huggingface_hub lays it out."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def book_review_rows(start: int, rows: int) -> list[tuple[int, str]]:
    """``(sentiment, text)`` of book_review test_data training rows ``start .. start + rows - 1``."""
    lines = (ROOT / "datasets" / "test_data" / "book_review" / "train.tsv").read_text(encoding="utf-8").splitlines()
    return [(int(label), text) for label, text in (line.split("\t") for line in lines[1 + start:1 + start + rows])]


def synthetic_label_set(sentiment: int, text: str) -> list[int]:
    """A label set made up from a review for tests (small and fast; datasets/msra_entity_types is the bundled
    multi-label data): 0 = positive, 1 = it mentions 书, 2 = longer than 40 characters; often empty."""
    return [label for label, holds in enumerate((sentiment == 1, "书" in text, len(text) > 40)) if holds]


def synthetic_multilabel_tsv(path: Path, start: int, rows: int, labelled: bool = True) -> Path:
    """book_review rows with :func:`synthetic_label_set` labels (``label`` = ids joined by commas), for tests."""
    lines = ["label\ttext_a" if labelled else "text_a"]
    for sentiment, text in book_review_rows(start, rows):
        labels = ",".join(map(str, synthetic_label_set(sentiment, text)))
        lines.append(f"{labels}\t{text}" if labelled else text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def finetune_args(task: str, data: dict, out: Path, *extra: str) -> list[str]:
    """``stage=finetune task=TASK`` on ``data``'s train/dev/test files, writing the model to ``out``."""
    return ["stage=finetune", f"task={task}", f"finetune.train_path={data['train']}",
            f"finetune.dev_path={data['dev']}", f"finetune.test_path={data['test']}", f"output_model_path={out}",
            *extra]


def with_row(src: Path, dst: Path, line: int, row: str) -> Path:
    """``src`` with ``row`` (ending in a newline) inserted so that it becomes line ``line``, written to ``dst``."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[:line - 1]) + row + "".join(lines[line - 1:]), encoding="utf-8")
    return dst


def expect_main_error(args: list[str], run_dir: Path, *fragments: str) -> str:
    """Run ``python main.py ARGS``; assert it exits 2 with ONE ``error:`` line holding ``fragments`` and no
    traceback."""
    proc = run_main(args, run_dir)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_close_weights(a: dict, b: dict) -> None:
    """Checkpoints ``a`` and ``b`` hold the same weights up to float noise (runs that sum gradients in another order:
    ranks all-reduced, or micro-batches accumulated)."""
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)


def plain_and_sharded_losses(plain, batch: dict, steps: int):
    """``steps`` AdamW steps on ``batch`` of the model ``plain`` and of a copy of it sharded with FSDP (in a process
    group that exists, e.g. of this process alone): each one's losses, and the sharded copy."""
    sharded = fsdp.shard(copy.deepcopy(plain), "fp32", torch.device("cpu"))
    trajectories = []
    for model in (plain, sharded):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(steps):
            loss = model(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        trajectories.append(losses)
    return trajectories[0], trajectories[1], sharded
