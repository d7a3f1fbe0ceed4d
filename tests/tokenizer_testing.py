"""Fast tokenizers (tokenizer.json) built from the bundled rows with the tokenizers library, for the tests of
``tokenizer=hf`` (nothing downloads)."""

import json

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from uer_testing import ROOT

DATA = ROOT / "datasets" / "test_data" / "book_review"
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# ALBERT-like names, each role named in the model directory's special_tokens_map.json.
ANGLE_ROLES = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
               "mask_token": "<mask>"}
# GPT-2 as openai-community/gpt2 publishes it: one special token, after the merges (id 50256 there).
GPT2_END = "<|endoftext|>"
GPT2_CONFIG = {"add_prefix_space": False, "bos_token": GPT2_END, "eos_token": GPT2_END, "unk_token": GPT2_END,
               "model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"}
# T5 as t5-small publishes it: <pad> 0, </s> 1, <unk> 2, then the pieces, then 100 sentinels (<extra_id_0> last).
T5_SPECIALS = ["<pad>", "</s>", "<unk>"]
T5_EXTRA_IDS = [f"<extra_id_{i}>" for i in range(100)]
T5_CONFIG = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 100,
             "additional_special_tokens": T5_EXTRA_IDS, "model_max_length": 512, "tokenizer_class": "T5Tokenizer"}

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


def byte_level_bpe(special_tokens, lines=None):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines or training_lines(), trainer)
    return tokenizer


def unigram(special_tokens=BERT_SPECIALS, unk_token="[UNK]", lines=None, vocab_size=3000):
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_tokens, unk_token=unk_token)
    tokenizer.train_from_iterator(lines or training_lines(), trainer)
    return tokenizer


def gpt2_tokenizer(lines=None):
    """GPT-2's shape: byte-level BPE (ByteLevel pre-tokenizer, post-processor and decoder) and only
    <|endoftext|>, added after the merges."""
    tokenizer = byte_level_bpe([], lines)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([GPT2_END])
    return tokenizer


def t5_tokenizer(lines):
    """T5's shape: Unigram with Metaspace, <pad> </s> <unk>, the sentinels, and the post-processor that appends
    </s> (t5-small's normalizer is a compiled SentencePiece charsmap; this one only folds runs of spaces)."""
    tokenizer = unigram(T5_SPECIALS, "<unk>", lines, vocab_size=200)
    tokenizer.normalizer = normalizers.Replace(Regex(" {2,}"), " ")
    tokenizer.add_special_tokens(T5_EXTRA_IDS[::-1])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)])
    return tokenizer


def published_dir(directory, tokenizer, config):
    """A model directory as transformers' save_pretrained writes a published tokenizer: tokenizer.json and
    tokenizer_config.json (``config``), nothing else."""
    directory.mkdir(exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def model_dir(directory, tokenizer, roles):
    """A Hugging Face model directory: tokenizer.json plus special_tokens_map.json naming ``roles``."""
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "special_tokens_map.json").write_text(json.dumps(roles), encoding="utf-8")
    return directory
