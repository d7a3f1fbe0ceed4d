"""tokenizer=hf: any fast tokenizer (tokenizer.json), built here with the tokenizers library (nothing downloads)."""

import pytest
import torch
from tokenizers import Tokenizer, processors

from uer.app import run_stage
from uer.errors import UerError
from uer.io.checkpoint import checkpoint_tokenizer, load_checkpoint
from uer.models import build_model
from uer.tasks.cmrc import tokenize_with_offsets
from uer.tokenizers import build_tokenizer, tokenizer_from_state, tokenizer_state
from uer.tokenizers.hf import swap_pad
from tokenizer_testing import (ANGLE_ROLES, DATA, GPT2_CONFIG, byte_level_bpe, gpt2_tokenizer, model_dir, published_dir,
                               training_lines, unigram, wordpiece_tokenizer)
from uer_testing import ROOT, SMALL, compose_config, expect_user_error, save_model_checkpoint, slice_file

FAST = ["hardware.num_threads=1", "finetune.seq_length=32", "finetune.batch_size=16", "finetune.epochs_num=1",
        "finetune.report_steps=100", "size=tiny", *SMALL]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{kind: tokenizer_path}``: a WordPiece file, a byte-level BPE model directory, a Unigram file."""
    tmp = tmp_path_factory.mktemp("hf")
    wordpiece_tokenizer().save(str(tmp / "wordpiece.json"))
    unigram().save(str(tmp / "unigram.json"))
    bpe = model_dir(tmp / "bpe", byte_level_bpe(list(ANGLE_ROLES.values())), ANGLE_ROLES)
    return {"wordpiece": tmp / "wordpiece.json", "bpe": bpe, "unigram": tmp / "unigram.json"}


def _hf(path):
    return build_tokenizer(dict(type="hf", tokenizer_path=str(path)))


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_ids_equal_transformers_fast_tokenizer(files, kind):
    transformers = pytest.importorskip("transformers")
    path = files[kind] / "tokenizer.json" if files[kind].is_dir() else files[kind]
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    tokenizer = _hf(files[kind])
    texts = training_lines(60)
    expected = [reference.encode(text, add_special_tokens=False) for text in texts]
    assert [tokenizer.encode(text) for text in texts] == expected
    assert tokenizer.encode_batch(texts) == expected
    assert [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) for text in texts] == expected
    assert any(tokenizer.vocab.unk_id not in ids and len(ids) > 5 for ids in expected)


def test_roles_come_from_the_model_directory(files):
    vocab = _hf(files["bpe"]).vocab
    assert vocab.tokens[:5] == tuple(ANGLE_ROLES.values())
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 1, 2, 3, 4)
    bert = _hf(files["wordpiece"]).vocab
    assert [bert.tokens[i] for i in (bert.pad_id, bert.cls_id, bert.sep_id, bert.mask_id)] == \
        ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]


PROCESSORS = {  # the tokenizer's own post-processor, on ANGLE_ROLES' ids: <pad> 0, <unk> 1, <s> 2, </s> 3
    "roberta": processors.RobertaProcessing(("</s>", 3), ("<s>", 2)),
    "template": processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                              special_tokens=[("<s>", 2), ("</s>", 3)]),
    "t5-like": processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 3)]),
}


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_texts_are_framed_as_the_tokenizers_own_post_processor_frames_them(files, tmp_path, kind):
    """Ids and segments (token type + 1) of one text and of a pair are transformers' for the same files."""
    transformers = pytest.importorskip("transformers")
    tokenizer = Tokenizer.from_file(str(files["bpe"] / "tokenizer.json"))
    tokenizer.post_processor = PROCESSORS[kind]
    directory = model_dir(tmp_path / "model", tokenizer, ANGLE_ROLES)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    ours = _hf(directory)
    a, b = "这本书很好", "second text"
    for texts in ((a,), (a, b)):
        expected = reference(*texts, return_token_type_ids=True)
        ids, segments = ours.framing.frame(*(ours.encode(text) for text in texts))
        assert ids == expected["input_ids"] and segments == [t + 1 for t in expected["token_type_ids"]]
    assert ours.exported_json() == (directory / "tokenizer.json").read_text(encoding="utf-8")  # goes out as it came


def test_a_checkpoint_frames_pairs_by_the_rule_it_was_trained_with(files, tmp_path):
    """The state records the framing; a state from before the record (no "framing") was framed [CLS] A [SEP] B [SEP]
    by the uer that wrote it, so a RoBERTa pair is read that way, not as the file's <s> A </s></s> B </s> today."""
    tokenizer = Tokenizer.from_file(str(files["bpe"] / "tokenizer.json"))
    tokenizer.post_processor = PROCESSORS["roberta"]
    directory = model_dir(tmp_path / "roberta", tokenizer, ANGLE_ROLES)
    cfg = dict(type="hf", tokenizer_path=str(directory))
    ours = build_tokenizer(cfg)
    a, b = ours.encode("这本书很好"), ours.encode("second text")
    state = tokenizer_state(ours, cfg)
    assert state["hf_tokenizer"]["framing"] == "own"
    assert tokenizer_from_state(state, "new.pt").framing.frame(a, b) == ours.framing.frame(a, b) == \
        ([2, *a, 3, 3, *b, 3], [1] * (len(a) + len(b) + 4))
    legacy = dict(state, hf_tokenizer={k: v for k, v in state["hf_tokenizer"].items() if k != "framing"})
    old = tokenizer_from_state(legacy, "old.pt")
    assert old.framing.frame(a, b) == ([2, *a, 3, *b, 3], [1] * (len(a) + 2) + [2] * (len(b) + 1))
    assert old.framing.frame(a) == ours.framing.frame(a)  # one text: the same either way
    assert tokenizer_state(old, cfg)["hf_tokenizer"]["framing"] == "bert"  # kept when saved again
    damaged = dict(state, hf_tokenizer={**state["hf_tokenizer"], "framing": "roberta"})
    with pytest.raises(UerError, match="records framing 'roberta'"):
        tokenizer_from_state(damaged, "damaged.pt")


def test_a_gpt2_tokenizer_pads_with_its_end_token_swapped_to_id_0(gpt2):
    ours = _hf(gpt2)
    end = Tokenizer.from_file(str(gpt2 / "tokenizer.json")).token_to_id("<|endoftext|>")
    assert ours.file_pad_id == end == len(ours.vocab) - 1 and ours.vocab.tokens[0] == "<|endoftext|>"
    assert ours.vocab.eos_id == ours.vocab.pad_id == 0 and not ours.vocab.has("cls") and not ours.vocab.has("mask")
    text = "A text, and 汉字"
    assert ours.encode(text) == swap_pad(Tokenizer.from_file(str(gpt2 / "tokenizer.json")).encode(text).ids, end)
    assert ours.framing.frame(ours.encode(text)) == (ours.encode(text), [1] * len(ours.encode(text)))
    assert ours.framing.pair is None and ours.decode(ours.encode(text)) == text


def test_file_truncation_setting_is_ignored(tmp_path):
    tokenizer = wordpiece_tokenizer()
    tokenizer.enable_truncation(max_length=3)
    tokenizer.save(str(tmp_path / "t.json"))
    assert len(_hf(tmp_path / "t.json").encode(training_lines(1)[0])) > 3


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_checkpoint_state_rebuilds_identical_tokenizer_without_the_file(files, kind, tmp_path):
    cfg = dict(type="hf", tokenizer_path=str(files[kind]))
    tokenizer = build_tokenizer(cfg)
    state = tokenizer_state(tokenizer, cfg)
    cfg_moved = dict(state, config={**state["config"], "tokenizer_path": str(tmp_path / "gone.json")})
    rebuilt = tokenizer_from_state(cfg_moved, "ckpt.pt")
    texts = training_lines(30)
    assert rebuilt.encode_batch(texts) == tokenizer.encode_batch(texts)
    assert rebuilt.identity() == tokenizer.identity() and rebuilt.vocab.tokens == tokenizer.vocab.tokens


def test_preprocess_pretrain_finetune_and_infer_from_the_checkpoint_alone(files, tmp_path, monkeypatch):
    directory = tmp_path / "tok"
    directory.mkdir()
    path = directory / "tokenizer.json"
    path.write_bytes(files["wordpiece"].read_bytes())
    hf = ["tokenizer=hf", f"tokenizer.tokenizer_path={path}"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((ROOT / "corpora/book_review.txt").read_text(encoding="utf-8").splitlines()[:40]),
                      encoding="utf-8")
    run_stage(compose_config(["stage=preprocess", *hf, f"preprocess.corpus_path={corpus}",
                              f"preprocess.dataset_path={tmp_path / 'data'}", "preprocess.seq_length=32"]))
    run_stage(compose_config(["stage=pretrain", *hf, "size=tiny", *SMALL, f"pretrain.dataset_path={tmp_path / 'data'}",
                              "pretrain.total_steps=2", "pretrain.batch_size=4", "pretrain.report_steps=1",
                              "hardware.num_threads=1", f"output_model_path={tmp_path / 'pre'}"]))
    checkpoint = next((tmp_path / "pre").glob("*.pt"))
    ours = checkpoint_tokenizer(load_checkpoint(checkpoint), checkpoint)
    assert ours.identity() == _hf(path).identity()
    _exported_directory_tokenizes_alike(checkpoint, tmp_path / "exported", ours)

    data = {name: slice_file(DATA / f"{name}.tsv", tmp_path / f"{name}.tsv", 32) for name in ("train", "dev")}
    run_stage(compose_config(["stage=finetune", "task=classifier", *hf, *FAST, f"finetune.train_path={data['train']}",
                              f"finetune.dev_path={data['dev']}", f"output_model_path={tmp_path / 'clf'}"]))

    def predict(name):
        run_stage(compose_config(["stage=infer", f"infer.load_model_path={tmp_path / 'clf' / 'best.pt'}",
                                  f"infer.test_path={data['dev']}", f"infer.prediction_path={tmp_path / name}",
                                  "infer.output_logits=true", "hardware.num_threads=1"]))
        return (tmp_path / name).read_text(encoding="utf-8")

    best = tmp_path / "clf" / "best.pt"
    assert checkpoint_tokenizer(load_checkpoint(best), best).identity()["source"] == "hf"
    before = predict("before.tsv")
    path.unlink()
    monkeypatch.chdir(tmp_path)
    assert predict("after.tsv") == before


def _exported_directory_tokenizes_alike(checkpoint, out, ours):
    """tool=convert into a Hugging Face directory writes the tokenizer.json and its roles: AutoTokenizer
    gives [CLS] + our ids + [SEP]."""
    transformers = pytest.importorskip("transformers")
    run_stage(compose_config(["stage=tool", "tool=convert", "tool.input_format=uer_ckpt",
                              f"tool.input_path={checkpoint}",
                              "tool.output_format=hf", f"tool.output_path={out}", "hardware.num_threads=1"]))
    exported = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    for text in training_lines(20):
        assert exported(text)["input_ids"] == [ours.vocab.cls_id, *ours.encode(text), ours.vocab.sep_id]
    pair = exported("第一句", "second")
    assert pair["token_type_ids"] == [0] * (len(ours.encode("第一句")) + 2) + [1] * (len(ours.encode("second")) + 1)


def _preprocess_cfg(tmp_path, tokenizer_path):
    return compose_config(["stage=preprocess", "tokenizer=hf", f"tokenizer.tokenizer_path={tokenizer_path}",
                           f"preprocess.corpus_path={ROOT / 'corpora/book_review.txt'}",
                           f"preprocess.dataset_path={tmp_path / 'data'}"])


def test_missing_file_is_refused_before_work(tmp_path, capsys):
    missing = tmp_path / "none.json"
    expect_user_error(capsys, _preprocess_cfg(tmp_path, missing), str(missing), "not found",
                      "tokenizer.tokenizer_path=")
    empty = tmp_path / "model"
    empty.mkdir()
    expect_user_error(capsys, _preprocess_cfg(tmp_path, empty), str(empty), "no tokenizer.json")
    assert not (tmp_path / "data").exists()


def test_file_that_is_not_a_tokenizer_json_is_refused(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    expect_user_error(capsys, _preprocess_cfg(tmp_path, vocab), str(vocab), "not a tokenizer.json",
                      "tokenizer.tokenizer_path=")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("specials, roles, fragment", [
    (["[PAD]", "[UNK]", "[CLS]", "[SEP]"], None,  # a BERT-like file without [MASK]
     "stage=preprocess target=mlm needs a mask ([MASK]) token (mask_token)"),
    (["<s>", "</s>", "<unk>", "<mask>"],  # RoBERTa-like, but no padding token at all
     {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"},
     "id 0 is '<s>' but must be <pad> (padding uses id 0)"),
], ids=["no-mask", "no-pad"])  # a padding token that is not id 0 is swapped with id 0: tests/unit/test_hf_families.py
def test_tokenizer_without_a_role_is_refused(tmp_path, capsys, specials, roles, fragment):
    tokenizer = byte_level_bpe(specials)
    if roles:
        path = model_dir(tmp_path / "model", tokenizer, roles)
        named = path / "tokenizer.json"
    else:
        path = named = tmp_path / "tokenizer.json"
        tokenizer.save(str(path))
    line = expect_user_error(capsys, _preprocess_cfg(tmp_path, path), str(named), fragment, "special_tokens_map.json")
    assert not (tmp_path / "data").exists() and line.count("error:") == 1


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A GPT-2-shaped tokenizer as published: tokenizer.json and tokenizer_config.json, <|endoftext|> alone."""
    return published_dir(tmp_path_factory.mktemp("gpt2") / "gpt2", gpt2_tokenizer(), GPT2_CONFIG)


def _finetune_cfg(tmp_path, tokenizer_path, task: str, train) -> list[str]:
    return compose_config(["stage=finetune", f"task={task}", "tokenizer=hf", f"tokenizer.tokenizer_path={tokenizer_path}",
                           *FAST, f"finetune.train_path={train}", f"finetune.dev_path={train}",
                           f"output_model_path={tmp_path / 'out'}"])


@pytest.mark.parametrize("run, fragments", [
    ("preprocess", ["stage=preprocess target=mlm needs a mask ([MASK]) token (mask_token)"]),
    ("pair", ["train.tsv:1: the header has a text_b column", "puts nothing between two texts", "give single texts"]),
    ("ner", ["task=ner needs a classification ([CLS]) token (cls_token)"]),
], ids=["mlm-without-mask", "pair-without-separator", "ner-without-cls"])
def test_what_a_published_gpt2_tokenizer_lacks_is_refused_before_work(gpt2, tmp_path, capsys, run, fragments):
    """One line naming the role, the tokenizer file and the fix; nothing written."""
    if run == "preprocess":
        cfg = _preprocess_cfg(tmp_path, gpt2)
    elif run == "pair":
        train = tmp_path / "train.tsv"
        train.write_text("label\ttext_a\ttext_b\n1\tgood\tbook\n0\tbad\tbook\n", encoding="utf-8")
        cfg = _finetune_cfg(tmp_path, gpt2, "classifier", train)
    else:
        cfg = _finetune_cfg(tmp_path, gpt2, "ner", ROOT / "datasets/test_data/msra_ner/train.tsv")
    line = expect_user_error(capsys, cfg, *fragments, str(gpt2 / "tokenizer.json"))
    if run != "pair":
        assert "special_tokens_map.json" in line  # how to name the role
    assert line.count("error:") == 1 and not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_a_tokenizer_with_neither_padding_nor_eos_is_refused(gpt2, tmp_path, capsys):
    """GPT-2's tokenizer.json without the tokenizer_config.json that names <|endoftext|> as eos: nothing to pad with."""
    bare = tmp_path / "tokenizer.json"
    bare.write_bytes((gpt2 / "tokenizer.json").read_bytes())
    expect_user_error(capsys, _preprocess_cfg(tmp_path, bare), str(bare), "no padding token",
                      "padding falls back to eos_token")
    assert not (tmp_path / "data").exists()


def test_broken_special_tokens_map_names_the_file(files, tmp_path):
    directory = model_dir(tmp_path / "m", unigram(), {})
    (directory / "special_tokens_map.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UerError, match="special_tokens_map.json: not valid JSON"):
        _hf(directory)


def test_no_path_given_is_refused(tmp_path, capsys):
    expect_user_error(capsys, _preprocess_cfg(tmp_path, '""'), "tokenizer=hf has no tokenizer",
                      "set tokenizer.tokenizer_path=")


def test_generate_decodes_with_the_tokenizers_own_decoder(files, tmp_path):
    """tool=generate on a byte-level BPE model writes text, not byte pieces such as 'Ġ' or 'æĪ'."""
    cfg = compose_config(["tokenizer=hf", f"tokenizer.tokenizer_path={files['bpe']}", "encoder=gpt", "target=lm",
                          "size=tiny", *SMALL, "hardware.num_threads=1"])
    tokenizer = build_tokenizer(cfg.tokenizer)
    torch.manual_seed(0)
    model = build_model(cfg.embedding, cfg.encoder, cfg.target, len(tokenizer.vocab))
    path = save_model_checkpoint(tmp_path / "gpt.pt", model, cfg)
    out = tmp_path / "generated.txt"
    run_stage(compose_config(["stage=tool", "tool=generate", f"tool.input_path={path}", "tool.text='很好 good'",
                              "tool.max_new_tokens=8", "tool.temperature=0", f"tool.output_path={out}",
                              "hardware.num_threads=1"]))
    text = out.read_text(encoding="utf-8").rstrip("\n")
    assert text.startswith("很好 good") and len(text) > len("很好 good") and "Ġ" not in text
    continuation = tokenizer.encode(text[len("很好 good"):])
    assert tokenizer.decode(continuation) == text[len("很好 good"):]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_reading_comprehension_tokenizes_the_whole_context_with_its_offsets(files, kind):
    """task=cmrc's context ids are those of the whole text (not of pieces split first) and each token
    points at the characters it stands for."""
    tokenizer = _hf(files[kind])
    text = "罗亚尔港号（USS Port Royal CG-73）unaffable 号"
    ids, spans = tokenize_with_offsets(tokenizer, text)
    assert ids == tokenizer.encode(text) and len(spans) == len(ids)
    assert all(0 <= a <= b <= len(text) for a, b in spans) and spans == sorted(spans)
    covered = {i for a, b in spans for i in range(a, b)}
    assert all(i in covered for i, char in enumerate(text) if not char.isspace())
    assert (text.index("号"), text.index("号") + 1) in spans  # a character that is a token points at itself
