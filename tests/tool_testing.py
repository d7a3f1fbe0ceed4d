"""Helpers for tests of stage=tool: a char vocabulary, tiny random models over it, and running a tool."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from uer.models import build_backbone, build_model
from uer.app import run_stage
from uer.tokenizers import build_tokenizer
from uer_testing import SMALL, compose_config, save_model_checkpoint

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("北京是中国的首都上海一座大城市天气很好我们喜欢读书这本有意思")


def write_vocab(path: Path, tokens=None) -> Path:
    path.write_text("".join(f"{t}\n" for t in (tokens or SPECIALS + CHARS)), encoding="utf-8")
    return path


def arch(*extra: str, vocab: Path) -> list[str]:
    """Overrides for a tiny model over the char vocab ``vocab``."""
    return ["tokenizer=char", f"tokenizer.vocab_path={vocab}", "size=tiny", *SMALL, "hardware.num_threads=1", *extra]


def make_model(vocab: Path, *extra: str, seed: int = 0):
    cfg = compose_config(arch(*extra, vocab=vocab))
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(cfg.tokenizer)
    return cfg, build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab)), tokenizer


def save_pt(path: Path, cfg, model, tokenizer=None) -> Path:
    return save_model_checkpoint(path, model, cfg)


def make_checkpoint(path: Path, vocab: Path, *extra: str, seed: int = 0):
    """A random tiny model saved as our .pt (``extra``: e.g. encoder=gpt target=lm); returns (path, model)."""
    cfg, model, _ = make_model(vocab, *extra, seed=seed)
    return save_model_checkpoint(path, model, cfg), model.eval()


def tool_config(name: str, *overrides: str, vocab: Path | None = None):
    extra = arch(vocab=vocab) if vocab is not None else ["hardware.num_threads=1"]
    return compose_config(["stage=tool", f"tool={name}", *extra, *overrides])


def run_tool(name: str, *overrides: str, vocab: Path | None = None):
    return run_stage(tool_config(name, *overrides, vocab=vocab))


def tool_error(capsys, name: str, *overrides: str, vocab: Path | None = None) -> str:
    """The one ``error:`` line a failing tool prints (it must exit with status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_tool(name, *overrides, vocab=vocab)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def payload_model(payload):
    """``(model, unexpected keys)``: the model a checkpoint payload's config describes (a bare backbone when it
    has no target) with its weights, in eval mode."""
    config = payload["config"]
    embedding, encoder = OmegaConf.create(config["embedding"]), OmegaConf.create(config["encoder"])
    vocab_size = payload["vocab"]["vocab_size"]
    if "target" in config:
        model = build_model(embedding, encoder, OmegaConf.create(config["target"]), vocab_size)
    else:
        model = torch.nn.ModuleDict({"backbone": build_backbone(embedding, encoder, vocab_size)})
    missing, unexpected = model.load_state_dict(payload["model"], strict=False)
    assert not missing
    return model.eval(), unexpected


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests, restored after: import it and set
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def task_outputs(task: str, model, batch: dict) -> torch.Tensor:
    """A fine-tuned uer task model's outputs as the matching Hugging Face class gives them: class logits
    (classifier), tag logits (ner), start and end logits stacked on the last dimension (cmrc)."""
    with torch.no_grad():
        if task == "classifier":
            return model.predict(batch)
        if task == "ner":
            return model.logits(batch)
        return torch.stack(model.logits(batch), dim=-1)
