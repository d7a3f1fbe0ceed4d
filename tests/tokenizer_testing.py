"""Fast tokenizers (tokenizer.json) built from the bundled rows with the tokenizers library, for the tests of
``tokenizer=hf`` (nothing downloads)."""

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from uer_testing import ROOT

DATA = ROOT / "datasets" / "test_data" / "book_review"
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# ALBERT-like names, each role named in the model directory's special_tokens_map.json.
ANGLE_ROLES = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
               "mask_token": "<mask>"}

def training_lines(count=200):
    """Chinese review rows of the bundled test data plus a few English ones."""
    rows = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:count + 1]
    return [row.split("\t", 1)[1] for row in rows] + ["The quick brown fox jumps over the lazy dog.",
                                                      "Tokenizers: fast, byte-level BPE & WordPiece (2024)!"]


def wordpiece_tokenizer():
    """A BERT-like tokenizer ([PAD] = 0) trained on the bundled rows."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(training_lines(), trainers.WordPieceTrainer(vocab_size=1500, special_tokens=BERT_SPECIALS))
    return tokenizer


def byte_level_bpe(special_tokens):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(training_lines(), trainer)
    return tokenizer


def unigram():
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(training_lines(), trainers.UnigramTrainer(vocab_size=3000, special_tokens=BERT_SPECIALS,
                                                                    unk_token="[UNK]"))
    return tokenizer


def model_dir(directory, tokenizer, roles):
    """A Hugging Face model directory: tokenizer.json plus special_tokens_map.json naming ``roles``."""
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")
    return directory
