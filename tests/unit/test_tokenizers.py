"""Tokenizers: parity with reference BERT tokenizers, edge cases, vocab rules, bad input."""

from __future__ import annotations

import io
import json
import pickle
import shutil
from pathlib import Path

import pytest

from uer.errors import UerError
from uer.tokenizers import TOKENIZERS, Vocab, build_tokenizer
from uer_testing import ROOT, VOCAB

SPM = ROOT / "models" / "cluecorpussmall_spm.model"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line]


def _bundled_lines() -> list[str]:
    lines = _lines(ROOT / "corpora" / "book_review.txt")[:2000]
    for path in sorted(p for p in (ROOT / "datasets" / "test_data").rglob("*") if p.is_file()):
        lines += _lines(path)
    return lines


@pytest.fixture(scope="module")
def bert():
    return build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), do_lower_case=True))


@pytest.fixture(scope="module")
def bert_cased():
    return build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), do_lower_case=False))


def _write_vocab(tmp_path: Path, tokens: list[str], name: str = "vocab.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


def _train_spm(tmp_path: Path, **options) -> Path:
    import sentencepiece

    model = io.BytesIO()
    corpus = ["hello world this is a tiny corpus", "another line of text here"] * 20
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=30, minloglevel=2, **options
    )
    path = tmp_path / "tiny.model"
    path.write_bytes(model.getvalue())
    return path


# --- parity with reference implementations -------------------------------------------


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_bert_matches_python_reference(do_lower_case, bert, bert_cased):
    """transformers' BertTokenizerLegacy is the classic per-character Python BERT tokenizer."""
    transformers = pytest.importorskip("transformers")
    ours = bert if do_lower_case else bert_cased
    ref = transformers.BertTokenizerLegacy(str(VOCAB), do_lower_case=do_lower_case)
    lines = _bundled_lines()
    assert len(lines) >= 2000
    ref_tokens = [ref.tokenize(line) for line in lines]
    flat = [t for tokens in ref_tokens for t in tokens]
    # Not all [UNK]; cased text has more (the uncased vocab lacks capitals, e.g. NER labels).
    unk_share = 0.02 if do_lower_case else 0.25
    assert flat.count("[UNK]") < unk_share * len(flat) and len(set(flat)) > 2000, "reference is degenerate"
    assert [ours.tokenize(line) for line in lines] == ref_tokens
    ref_ids = [ref.convert_tokens_to_ids(tokens) for tokens in ref_tokens]
    assert ours.encode_batch(lines) == ref_ids
    assert [ours.encode(line) for line in lines[:300]] == ref_ids[:300]


def test_bert_matches_rust_reference_on_every_bundled_line(bert):
    """transformers 5's BertTokenizer runs on the HF Rust library (vocab=, not vocab_file=)."""
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertTokenizer(vocab=str(VOCAB))
    lines = _lines(ROOT / "corpora" / "book_review.txt") + _bundled_lines()[2000:]
    ref_ids = ref(lines, add_special_tokens=False)["input_ids"]
    flat = [i for ids in ref_ids for i in ids]
    assert flat.count(bert.vocab.unk_id) < 0.02 * len(flat) and len(set(flat)) > 2000, "reference is degenerate"
    assert bert.encode_batch(lines) == ref_ids


# --- hand-written BERT edge cases ----------------------------------------------------

UNCASED_CASES = [
    ("Hello, World!", ["hello", ",", "world", "!"]),
    ("Café naïve RÉSUMÉ", ["cafe", "na", "##ive", "re", "##su", "##me"]),
    ("我\x00爱\u200b你\ufffd们\x07", ["我", "爱", "你", "们"]),  # NUL, format, U+FFFD, control
    ("你\t好\n吗\u3000呢\r\n", ["你", "好", "吗", "呢"]),  # all whitespace separates
    ("你好，世界！", ["你", "好", "，", "世", "界", "！"]),
    ("iPhone12降价了$99.5", ["iphone", "##12", "降", "价", "了", "$", "99", ".", "5"]),
    ("e-mail: a@b.com", ["e", "-", "mail", ":", "a", "@", "b", ".", "com"]),
    # ASCII symbols split like punctuation ("`" is split off, then not in the vocab)
    ("a^b`c~d=e+f|g<h", ["a", "^", "b", "[UNK]", "c", "~", "d", "=", "e", "+", "f", "|", "g", "<", "h"]),
    ("unaffable", ["u", "##na", "##ff", "##able"]),
    ("a" * 100, ["aaa"] + ["##aa"] * 48 + ["##a"]),
    ("a" * 101, ["[UNK]"]),  # over 100 characters
    ("😀 ok", ["[UNK]", "ok"]),
    ("ΟΔΟΣ", ["ο", "##δ", "##ο", "##ς"]),  # word-final sigma, as Python lowercases it
    ("[CLS]你好[SEP]x[MASK] [PAD][UNK]", ["[CLS]", "你", "好", "[SEP]", "x", "[MASK]", "[PAD]", "[UNK]"]),
    ("[cls] [[SEP]]", ["[", "cl", "##s", "]", "[", "[SEP]", "]"]),
    ("", []),
]


@pytest.mark.parametrize("text,expected", UNCASED_CASES)
def test_bert_edge_cases(bert, text, expected):
    assert bert.tokenize(text) == expected
    ids = bert.convert_tokens_to_ids(expected)
    assert bert.encode(text) == ids
    assert bert.encode_batch([text, text]) == [ids, ids]


def test_bert_cased_keeps_case_and_accents(bert_cased):
    assert bert_cased.tokenize("Hello café [CLS]") == ["[UNK]", "[UNK]", "[CLS]"]
    assert bert_cased.tokenize("iPhone12降价") == ["[UNK]", "降", "价"]
    assert bert_cased.tokenize("ok 好") == ["ok", "好"]


def test_word_over_100_characters_is_unknown_even_if_in_vocab(tmp_path):
    long_word = "a" * 101
    tok = build_tokenizer(dict(type="bert", vocab_path=str(_write_vocab(tmp_path, SPECIALS + [long_word]))))
    assert tok.tokenize(long_word) == ["[UNK]"]
    assert tok.encode(long_word) == [tok.vocab.unk_id]


# Where Google's tokenization.py (tokenizer.rules=google, the original UER-py's) and transformers differ.
RULE_CASES = [
    ("a" * 150, ["[UNK]"], ["aaa"] + ["##aa"] * 73 + ["##a"]),  # words of 101-200 characters
    ("北京\ue000上海", ["北", "京", "上", "海"], ["北", "京", "[UNK]", "上", "海"]),  # private use (Co)
    ("x\u0378y z", ["x", "##y", "z"], ["[UNK]", "z"]),  # unassigned (Cn) inside a word
    ("你[MASK]好", ["你", "[MASK]", "好"], ["你", "[", "ma", "##sk", "]", "好"]),  # [MASK] typed in the text
    ("我\u200b爱\x07你", ["我", "爱", "你"], ["我", "爱", "你"]),  # format (Cf) and control (Cc): both drop
]


@pytest.mark.parametrize("text,transformers_rules,google_rules", RULE_CASES)
def test_google_rules_differ_where_documented(bert, text, transformers_rules, google_rules):
    google = build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), rules="google"))
    assert bert.tokenize(text) == transformers_rules
    assert google.tokenize(text) == google_rules
    assert google.encode(text) == google.convert_tokens_to_ids(google_rules)


def test_google_rules_are_part_of_the_identity(bert):
    google = build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), rules="google"))
    assert "rules" not in bert.identity() and google.identity() == {**bert.identity(), "rules": "google"}
    with pytest.raises(UerError, match="tokenizer.rules"):
        build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), rules="nltk"))


def test_tokenizers_survive_pickling_for_worker_processes():
    text = "我喜欢Hello世界"
    for tok in (
        build_tokenizer(dict(type="bert", vocab_path=str(VOCAB))),
        build_tokenizer(dict(type="space", vocab_path=str(VOCAB))),
        build_tokenizer(dict(type="spm", spm_model_path=str(SPM))),
    ):
        copy = pickle.loads(pickle.dumps(tok))
        assert copy.identity() == tok.identity()
        assert copy.encode(text) == tok.encode(text) and copy.tokenize(text) == tok.tokenize(text)


def test_ids_and_tokens_round_trip(bert):
    tokens = bert.tokenize("我喜欢unaffable书")
    ids = bert.convert_tokens_to_ids(tokens)
    assert bert.convert_ids_to_tokens(ids) == tokens
    assert bert.convert_tokens_to_ids(["never-a-token"]) == [bert.vocab.unk_id]


# --- char / space / spm ---------------------------------------------------------------


def test_char_tokenizer_splits_characters_without_lowercasing():
    tok = build_tokenizer(dict(type="char", vocab_path=str(VOCAB), do_lower_case=True))
    assert tok.tokenize(" 我爱 N\tlp ") == ["我", "爱", "N", "l", "p"]
    vocab = tok.vocab
    assert tok.encode("我N") == [vocab.token_to_id("我"), vocab.unk_id]  # no "N" in the uncased vocab
    assert tok.encode_batch(["我", ""]) == [[vocab.token_to_id("我")], []]


def test_space_tokenizer_splits_on_whitespace():
    tok = build_tokenizer(dict(type="space", vocab_path=str(VOCAB)))
    assert tok.tokenize(" 我 爱\t北京  abc\n") == ["我", "爱", "北京", "abc"]
    vocab = tok.vocab
    assert tok.encode("我 北京") == [vocab.token_to_id("我"), vocab.unk_id]


def test_spm_supplies_segmentation_and_vocab_whatever_the_type():
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(SPM))
    text = "我喜欢这本书 Hello World"
    tokenizers = [
        build_tokenizer(dict(type=t, vocab_path="no/such/vocab.txt", spm_model_path=str(SPM))) for t in ("bert", "char")
    ]
    for tok in tokenizers:
        assert tok.tokenize(text) == sp.encode(text, out_type=str)
        assert tok.encode(text) == sp.encode(text, out_type=int)
        assert tok.encode_batch([text, "书"]) == [sp.encode(text), sp.encode("书")]
        assert tok.convert_tokens_to_ids(tok.tokenize("我喜欢")) == sp.encode("我喜欢")
    assert tokenizers[0].identity() == tokenizers[1].identity()
    vocab = tokenizers[0].vocab
    assert len(vocab) == sp.get_piece_size()
    assert (vocab.pad_id, vocab.unk_token) == (0, sp.id_to_piece(sp.unk_id()))
    assert vocab.mask_id == sp.piece_to_id("[MASK]")


def test_spm_default_unknown_piece_is_accepted(tmp_path):
    path = _train_spm(
        tmp_path, pad_id=0, pad_piece="[PAD]", unk_id=1, bos_id=-1, eos_id=-1,
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
    )  # fmt: skip
    vocab = Vocab.from_spm(str(path))
    assert (vocab.unk_token, vocab.unk_id, vocab.cls_id, vocab.mask_id) == ("<unk>", 1, 2, 4)


# --- vocab ------------------------------------------------------------------------------


def test_vocab_special_ids(bert):
    vocab = bert.vocab
    assert len(vocab) == 21128
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 100, 101, 102, 103)
    assert vocab.special_ids == frozenset({0, 100, 101, 102, 103})
    assert vocab.id_to_token(101) == "[CLS]" and vocab.token_to_id("[MASK]") == 103
    assert vocab.token_to_id("never-a-token") == 100
    assert vocab.path == str(VOCAB)


def test_vocab_keeps_unusual_whitespace_tokens_and_ignores_crlf(tmp_path):
    tokens = SPECIALS + ["\u2028", "##\u2028", "好"]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("".join(t + "\r\n" for t in tokens).encode("utf-8") + b"\r\n")
    lf = Vocab.from_file(_write_vocab(tmp_path, tokens))
    assert list(Vocab.from_file(crlf).tokens) == tokens == list(lf.tokens)
    assert Vocab.from_file(crlf).sha256 == lf.sha256


# --- identity ---------------------------------------------------------------------------


def test_identity(tmp_path, bert, bert_cased):
    identity = bert.identity()
    assert json.loads(json.dumps(identity)) == identity
    assert identity == {
        "type": "bert",
        "vocab_sha256": bert.vocab.sha256,
        "vocab_size": 21128,
        "do_lower_case": True,
        "source": "vocab",
    }
    copy = tmp_path / "copy.txt"
    shutil.copy(VOCAB, copy)
    assert build_tokenizer(dict(type="bert", vocab_path=str(copy))).identity() == identity  # path does not matter
    assert bert_cased.identity() != identity
    assert build_tokenizer(dict(type="char", vocab_path=str(VOCAB))).identity() != identity
    # char/space never lowercase, so do_lower_case cannot change their ids
    assert (
        build_tokenizer(dict(type="char", vocab_path=str(VOCAB), do_lower_case=True)).identity()
        == build_tokenizer(dict(type="char", vocab_path=str(VOCAB), do_lower_case=False)).identity()
    )
    tokens = VOCAB.read_text(encoding="utf-8").split("\n")[:-1]
    tokens[200] = "something-else"
    other = _write_vocab(tmp_path, tokens, "other.txt")
    assert build_tokenizer(dict(type="bert", vocab_path=str(other))).identity()["vocab_sha256"] != identity["vocab_sha256"]
    spm_identity = build_tokenizer(dict(type="spm", spm_model_path=str(SPM))).identity()
    assert spm_identity["source"] == "spm" and spm_identity != identity


# --- bad input --------------------------------------------------------------------------


def _error(call) -> str:
    with pytest.raises(UerError) as info:
        call()
    return str(info.value)


def test_missing_vocab_file(tmp_path):
    path = tmp_path / "missing.txt"
    message = _error(lambda: build_tokenizer(dict(type="bert", vocab_path=str(path))))
    assert str(path) in message and "not found" in message and "tokenizer.vocab_path=" in message


@pytest.mark.parametrize("missing", ["[MASK]", "[CLS]", "[SEP]", "[UNK]"])
def test_vocab_without_special_token(tmp_path, missing):
    path = _write_vocab(tmp_path, [t for t in SPECIALS if t != missing] + ["好"])
    message = _error(lambda: Vocab.from_file(str(path)))
    assert str(path) in message and f"no {missing} token" in message


def test_pad_not_at_zero(tmp_path):
    path = _write_vocab(tmp_path, ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"])
    message = _error(lambda: Vocab.from_file(str(path)))
    assert str(path) in message and "[PAD]" in message and "id 0" in message


def test_non_utf8_vocab_names_the_line(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("\n".join(SPECIALS).encode() + "\n好\n".encode("gbk"))
    message = _error(lambda: Vocab.from_file(str(path)))
    assert f"{path}:6" in message and "UTF-8" in message


def test_duplicate_token_names_both_lines(tmp_path):
    path = _write_vocab(tmp_path, SPECIALS + ["好", "x", "好"])
    message = _error(lambda: Vocab.from_file(str(path)))
    assert f"{path}:8" in message and "line 6" in message and "duplicate token '好'" in message


def test_empty_vocab_and_empty_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    message = _error(lambda: Vocab.from_file(str(empty)))
    assert str(empty) in message and "empty" in message
    gap = _write_vocab(tmp_path, SPECIALS[:2] + [""] + SPECIALS[2:], "gap.txt")
    assert f"{gap}:3" in _error(lambda: Vocab.from_file(str(gap)))


def test_missing_spm_model(tmp_path):
    path = tmp_path / "missing.model"
    message = _error(lambda: build_tokenizer(dict(type="bert", vocab_path=str(VOCAB), spm_model_path=str(path))))
    assert str(path) in message and "not found" in message and "tokenizer.spm_model_path=" in message


def test_corrupt_spm_model(tmp_path):
    path = _write_vocab(tmp_path, SPECIALS, "fake.model")
    message = _error(lambda: Vocab.from_spm(str(path)))
    assert str(path) in message and "not a SentencePiece model" in message


def test_spm_model_without_bert_specials(tmp_path):
    path = _train_spm(tmp_path)  # sentencepiece defaults: <unk>, <s>, </s>
    message = _error(lambda: build_tokenizer(dict(type="spm", spm_model_path=str(path))))
    assert str(path) in message and "[PAD]" in message and "--pad_piece=[PAD]" in message


def test_unknown_type_and_no_vocabulary():
    message = _error(lambda: build_tokenizer(dict(type="wordpiece", vocab_path=str(VOCAB))))
    assert "unknown tokenizer 'wordpiece'; choose one of: bert, char, hf, space, spm" in message
    assert set(TOKENIZERS.names()) == {"bert", "char", "space", "spm", "hf"}
    assert "tokenizer.vocab_path=" in _error(lambda: build_tokenizer(dict(type="bert", vocab_path=None)))
