"""Shared helpers for tests: compose the real configs, run main.py, small model sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uer.cli import normalize_overrides
from uer.composition import compose
from uer.app import run_stage

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "models" / "google_zh_vocab.txt"

# Shrinks any size preset to something that trains in milliseconds per step on a CPU.
SMALL = ["model.emb_size=32", "model.hidden_size=32", "model.feedforward_size=64",
         "model.heads_num=2", "model.layers_num=2"]

def compose_config(overrides: list[str]):
    """The config main.py would build from these overrides (no run directory).

    The vocabulary is given by absolute path where the stage has a tokenizer group.
    """
    overrides = normalize_overrides(list(overrides))
    cfg = compose(overrides)
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
