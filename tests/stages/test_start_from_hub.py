"""A fine-tuning started from a hub id, as a user starts it: ``python main.py ... pretrained_model_path=OWNER/NAME``
with ``HF_HUB_OFFLINE=1`` over a temporary ``HF_HOME`` whose cache holds the model (nothing is downloaded)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from uer.io.checkpoint import load_checkpoint
from uer.tokenizers.vocab import Vocab
from uer_testing import ROOT, VOCAB, cached_snapshot, slice_file

pytestmark = pytest.mark.e2e


def main_py(args: list[str], run_dir: Path, hf_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "main.py", f"hydra.run.dir={run_dir}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_finetuning_starts_from_a_cached_hub_id_offline_and_an_uncached_one_is_one_line(tmp_path):
    """A BERT saved with save_pretrained (plus its vocab.txt) in a temporary HF_HOME: pretrained_model_path=the
    hub id fine-tunes from it with its sizes and tokenizer; an id the cache lacks stops before any work."""
    snapshot = cached_snapshot(tmp_path / "hf" / "hub", "acme/tiny-bert")
    vocab_size = len(Vocab.from_file(VOCAB))
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    transformers.BertForMaskedLM(config).save_pretrained(snapshot)
    shutil.copy(VOCAB, snapshot / "vocab.txt")
    data = ROOT / "datasets" / "test_data" / "book_review"
    rows = [f"finetune.train_path={slice_file(data / 'train.tsv', tmp_path / 'train.tsv', 16)}",
            f"finetune.dev_path={slice_file(data / 'dev.tsv', tmp_path / 'dev.tsv', 8)}"]
    common = ["task=classifier", *rows, "finetune.seq_length=16", "finetune.batch_size=8", "finetune.epochs_num=1",
              "hardware.num_threads=1"]
    out = tmp_path / "clf"
    run = main_py([*common, "pretrained_model_path=acme/tiny-bert", f"output_model_path={out}"], tmp_path / "run",
                  tmp_path / "hf")
    assert run.returncode == 0, run.stderr[-3000:]
    saved = load_checkpoint(out / "best.pt")["config"]
    assert (saved["encoder"]["hidden_size"], saved["encoder"]["layers_num"]) == (16, 1)
    assert saved["tokenizer"]["type"] == "bert"
    missing = main_py([*common, "pretrained_model_path=acme/absent", f"output_model_path={tmp_path / 'none'}"],
                      tmp_path / "run2", tmp_path / "hf")
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert missing.returncode == 2 and len(errors) == 1 and "Traceback" not in missing.stderr
    assert "acme/absent" in errors[0] and "HF_HUB_OFFLINE=1" in errors[0]
    assert not (tmp_path / "none").exists()
