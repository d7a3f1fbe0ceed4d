"""A T5 directory as transformers saves it, with its tokenizer as published (Unigram, <pad> </s> <unk>, the
sentinels, the post-processor appending </s>; no [CLS], [SEP] or [MASK]), fine-tuned with task=text2text: the
source is framed ``source </s>``, the decoder starts with <pad> and targets end with </s>, as in transformers;
converted back, transformers' tokenizer and ``generate()`` give what uer gives, token for token."""

import random

import pytest
import torch
import transformers as T

from generation_testing import hf_generate
from tokenizer_testing import T5_CONFIG, published_dir, t5_tokenizer
from uer.app import run_stage
from uer.io.checkpoint import load_checkpoint
from uer.models.generation import GenerationConfig, generate_rows
from uer.tools.model_loading import load_model
from uer_testing import compose_config

pytestmark = pytest.mark.e2e

WORDS = ["red", "green", "blue", "gold"]
NEW_TOKENS = 6


def sentences(rows: int, seed: int) -> list[str]:
    r = random.Random(seed)
    return [" ".join(r.choice(WORDS) for _ in range(r.randint(2, 4))) for _ in range(rows)]


@pytest.fixture(scope="module")
def t5_run(tmp_path_factory):
    """A random t5-small-shaped model (one layer a stack) fine-tuned a few steps on copying; its files."""
    tmp = tmp_path_factory.mktemp("t5")
    tokenizer = t5_tokenizer(sentences(200, 0))
    directory = published_dir(tmp / "t5", tokenizer, T5_CONFIG)
    config = T.T5Config(vocab_size=tokenizer.get_vocab_size(), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                        num_decoder_layers=1, num_heads=2, relative_attention_num_buckets=8, dropout_rate=0.0,
                        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T.T5ForConditionalGeneration(config).save_pretrained(directory)
    dev = sentences(6, 2)
    train, dev_path = tmp / "train.tsv", tmp / "dev.tsv"
    train.write_text("source\ttarget\n" + "".join(f"{s}\t{s}\n" for s in sentences(64, 1)), encoding="utf-8")
    dev_path.write_text("source\ttarget\n" + "".join(f"{s}\t{s}\n" for s in dev), encoding="utf-8")
    out = tmp / "model"
    run_stage(compose_config(["task=text2text", f"pretrained_model_path={directory}", f"finetune.train_path={train}",
                              f"finetune.dev_path={dev_path}", f"output_model_path={out}", "finetune.max_steps=4",
                              "finetune.batch_size=16", "finetune.learning_rate=1e-2", "finetune.seq_length=32",
                              "task.tgt_seq_length=24", f"task.generation.max_new_tokens={NEW_TOKENS}",
                              "task.metric_tokenize=13a", "hardware.num_threads=1"]))
    return {"tmp": tmp, "directory": directory, "dev": dev, "dev_path": dev_path, "out": out}


def test_fine_tuned_t5_keeps_t5s_start_and_end(t5_run):
    payload = load_checkpoint(t5_run["out"] / "best.pt")
    assert payload["config"]["decoder"]["start_id"] == 0  # <pad>, T5's decoder_start_token_id
    cfg = compose_config(["stage=tool", "tool=generate", f"tool.input_path={t5_run['out'] / 'best.pt'}"])
    tokenizer = load_model(cfg).tokenizer
    assert tokenizer.vocab.eos_id == 1 and tokenizer.framing.frame([7, 8]) == ([7, 8, 1], [1, 1, 1])


def test_generation_equals_transformers_generate_on_the_converted_model(t5_run, tmp_path):
    """uer's infer and tool=generate write what transformers' tokenizer + generate() + decode give on the model
    converted back; the ids of the source and of each generation are the same too."""
    exported = tmp_path / "hf"
    run_stage(compose_config(["stage=tool", "tool=convert", f"tool.input_path={t5_run['out'] / 'best.pt'}",
                              "tool.input_format=uer_ckpt", f"tool.output_path={exported}", "tool.output_format=hf",
                              "hardware.num_threads=1"]))
    original = (t5_run["directory"] / "tokenizer.json").read_text(encoding="utf-8")
    assert (exported / "tokenizer.json").read_text(encoding="utf-8") == original  # the file goes back unchanged
    theirs = T.T5ForConditionalGeneration.from_pretrained(exported).eval()
    hf_tokenizer = T.AutoTokenizer.from_pretrained(exported)
    encoded = hf_tokenizer(t5_run["dev"], padding=True, return_tensors="pt")
    expected = hf_generate(theirs, encoded["input_ids"], GenerationConfig(max_new_tokens=NEW_TOKENS), eos_id=1)

    loaded = load_model(compose_config(["stage=tool", "tool=generate", f"tool.input_path={t5_run['out'] / 'best.pt'}",
                                        "hardware.num_threads=1"]))
    rows = [loaded.tokenizer.framing.frame(loaded.tokenizer.encode(s))[0] for s in t5_run["dev"]]
    assert rows == [[i for i in ids if i != 0] for ids in encoded["input_ids"].tolist()]  # "source </s>" both
    ours = generate_rows(loaded.seq2seq, rows, [[1] * len(r) for r in rows], GenerationConfig(max_new_tokens=NEW_TOKENS),
                         eos_id=1, batch_size=len(rows), device=torch.device("cpu"))
    assert ours == expected and any(expected)

    texts = [hf_tokenizer.decode(ids) for ids in expected]
    predictions = tmp_path / "predictions.tsv"
    run_stage(compose_config(["stage=infer", f"infer.load_model_path={t5_run['out'] / 'best.pt'}",
                              f"infer.test_path={t5_run['dev_path']}", f"infer.prediction_path={predictions}"]))
    assert predictions.read_text(encoding="utf-8").splitlines()[1:] == [
        f"{s}\t{text}" for s, text in zip(t5_run["dev"], texts)]


def test_generate_on_the_t5_directory_itself_equals_transformers(t5_run, tmp_path):
    """tool=generate reads the directory as saved (no conversion first): transformers' greedy generate() text."""
    theirs = T.T5ForConditionalGeneration.from_pretrained(t5_run["directory"]).eval()
    hf_tokenizer = T.AutoTokenizer.from_pretrained(t5_run["directory"])
    encoded = hf_tokenizer(t5_run["dev"], padding=True, return_tensors="pt")["input_ids"]
    expected = hf_generate(theirs, encoded, GenerationConfig(max_new_tokens=NEW_TOKENS), eos_id=1)
    sources, generated = tmp_path / "sources.txt", tmp_path / "generated.txt"
    sources.write_text("".join(s + "\n" for s in t5_run["dev"]), encoding="utf-8")
    run_stage(compose_config(["stage=tool", "tool=generate", f"tool.input_path={t5_run['directory']}",
                              f"tool.test_path={sources}", f"tool.output_path={generated}",
                              f"tool.generation.max_new_tokens={NEW_TOKENS}", "hardware.num_threads=1"]))
    assert generated.read_text(encoding="utf-8").splitlines() == [hf_tokenizer.decode(ids) for ids in expected]
