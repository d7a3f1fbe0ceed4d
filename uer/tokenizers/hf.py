"""Any fast tokenizer: a Hugging Face ``tokenizer.json`` supplies both the segmentation and the ids.

The text goes through the ``tokenizers`` library's own pipeline (normalizer, pre-tokenizer,
model), so the ids are those transformers' ``AutoTokenizer`` gives for the same file.  The
file's own truncation and padding settings are switched off: each stage truncates and pads
(with id 0) itself, and a silently truncated text would look right and not be.

``tokenizer.tokenizer_path`` is a ``tokenizer.json`` or a model directory holding one.  The
tokens playing the project's roles are those the directory's ``tokenizer_config.json`` and
``special_tokens_map.json`` (the latter wins, as in transformers) name as ``pad_token``,
``unk_token``, ``cls_token``, ``sep_token``, ``mask_token``; a role neither names is played by
the project's own token (``[PAD]``, ...).  A tokenizer that lacks a role (GPT-2 has no padding
or mask token) is refused by :class:`Vocab`, as SentencePiece models without the roles are.

Padding is id 0 everywhere in this project.  A tokenizer whose padding token has another id
in its file (RoBERTa and XLM-R: ``<s>`` = 0, ``<pad>`` = 1) is used with the two ids swapped:
inside uer its padding token is id 0 and the file's id 0 token takes the padding token's id
(:attr:`HfTokenizer.file_pad_id`; :func:`swap_pad` maps an id either way).  The file itself
is stored and exported unchanged, and a model converted from or to Hugging Face has the same
two rows of its word embedding and vocabulary outputs swapped (``uer/io/hf_families.py``), so
outside uer every id is the file's.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence


from uer.errors import UerError, reason, where
from uer.tokenizers.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN, Vocab, VocabTokenizer

TOKENIZER_FILE = "tokenizer.json"
# Read in this order; a later file's setting wins.
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
ROLES = {"pad_token": PAD_TOKEN, "unk_token": UNK_TOKEN, "cls_token": CLS_TOKEN, "sep_token": SEP_TOKEN,
         "mask_token": MASK_TOKEN}
HINT = "set tokenizer.tokenizer_path=... to a tokenizer.json or a Hugging Face model directory holding one"


def read_hf_tokenizer(path) -> dict:
    """What decides the ids of the tokenizer at ``path`` (a file or a model directory):
    ``{"json": the tokenizer.json text, "special_tokens": {role: token}}``; a checkpoint stores it."""
    if not path:
        raise UerError(f"tokenizer=hf has no tokenizer; {HINT}")
    path = str(path)
    directory = path if os.path.isdir(path) else None
    file = tokenizer_file(path)
    if not os.path.isfile(file):
        found = f"{path} holds no {TOKENIZER_FILE}" if directory else f"tokenizer file {path} not found"
        raise UerError(f"{found}; {HINT}")
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UerError(f"{file}: not a {TOKENIZER_FILE} (not UTF-8: {reason(e)}); {HINT}") from None
    return {"json": text, "special_tokens": _special_tokens(directory)}


def tokenizer_file(path) -> str:
    """The tokenizer.json that ``path`` (the file, or a model directory) names."""
    return os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else str(path)


def _special_tokens(directory: str | None) -> dict:
    """``{role: token}``: the roles a model directory's config files name, the project's tokens for the rest."""
    named = {}
    for name in SPECIAL_TOKEN_FILES if directory else ():
        file = os.path.join(directory, name)
        if not os.path.isfile(file):
            continue
        try:
            with open(file, encoding="utf-8") as f:
                settings = json.load(f)
        except (UnicodeDecodeError, ValueError) as e:
            raise UerError(f"{file}: not valid JSON ({reason(e)}); fix or remove it") from None
        if not isinstance(settings, dict):
            raise UerError(f"{file}: holds no JSON object; fix or remove it")
        for role in ROLES:
            value = settings.get(role)
            # transformers writes a token either as its text or as an AddedToken ({"content": ...}).
            token = value.get("content") if isinstance(value, dict) else value
            if isinstance(token, str) and token:
                named[role] = token
    return {role: named.get(role, default) for role, default in ROLES.items()}


def swap_pad(ids: Sequence[int], pad_id: int) -> list[int]:
    """``ids`` with ``0`` and ``pad_id`` exchanged (its own inverse): file ids <-> uer ids."""
    if not pad_id:
        return list(ids)
    return [pad_id if i == 0 else 0 if i == pad_id else i for i in ids]


class HfTokenizer(VocabTokenizer):
    kind = "hf"

    def __init__(self, path, stored: dict | None = None):
        """The tokenizer at ``path``, or a checkpoint's ``stored`` copy of it (see :func:`read_hf_tokenizer`)."""
        self.stored = stored if stored is not None else read_hf_tokenizer(path)
        file = tokenizer_file(path)
        from tokenizers import Tokenizer  # lazy: a Rust extension only tokenizer=hf needs, kept out of start-up

        try:
            self.tokenizer = Tokenizer.from_str(self.stored["json"])
        except Exception as e:  # the Rust library raises plain Exception on any unreadable file
            raise UerError(f"{where(file)}: not a {TOKENIZER_FILE} ({reason(e)}); {HINT}") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        #: the padding token's id in the file; inside uer it is 0 (ids 0 and this one are swapped)
        self.file_pad_id = self.tokenizer.token_to_id(self.stored["special_tokens"]["pad_token"]) or 0
        super().__init__(self._vocab(file), source="hf")

    def _vocab(self, path: str) -> Vocab:
        size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        tokens = [self.tokenizer.id_to_token(i) for i in range(size)]
        if None in tokens:
            raise UerError(f"{where(path)}: id {tokens.index(None)} has no token (ids must run 0..{size - 1}); {HINT}")
        tokens = [tokens[i] for i in swap_pad(range(size), self.file_pad_id)]
        specials = self.stored["special_tokens"]
        digest = hashlib.sha256(json.dumps(self.stored, sort_keys=True).encode("utf-8")).hexdigest()
        roles = ", ".join(f"{role} {token}" for role, token in specials.items())
        fix = (f"the roles ({roles}) come from special_tokens_map.json / tokenizer_config.json in the model "
               "directory (point tokenizer.tokenizer_path at it), else the tokens [PAD], [UNK], [CLS], [SEP], "
               "[MASK]; a tokenizer without them cannot be used")
        return Vocab(tokens, unk_token=specials["unk_token"], path=path, sha256=digest, fix=fix,
                     pad_token=specials["pad_token"], cls_token=specials["cls_token"],
                     sep_token=specials["sep_token"], mask_token=specials["mask_token"])

    def exported_json(self, segments: int = 2) -> str:
        """The tokenizer.json for a converted model: the stored one with a post-processor that adds
        [CLS] A [SEP] (B [SEP]) as the stages do, so transformers feeds the model what it was trained on.
        ``segments``: the token types the model has -- 2 (B is type 1), 1 or 0 (every token type 0)."""
        from tokenizers import Tokenizer, processors  # lazy: as in __init__

        tokenizer = Tokenizer.from_str(self.stored["json"])
        cls, sep = self.vocab.id_to_token(self.vocab.cls_id), self.vocab.id_to_token(self.vocab.sep_id)
        cls_id, sep_id = swap_pad([self.vocab.cls_id, self.vocab.sep_id], self.file_pad_id)  # the file's ids
        second = 1 if segments > 1 else 0
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:{second} {sep}:{second}",
            special_tokens=[(cls, cls_id), (sep, sep_id)])
        return tokenizer.to_str()

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of the whole ``text`` and the ``(start, end)`` characters of ``text`` each stands for
        (the library tracks them through its normalizer)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return self._ids(encoding.ids), [tuple(span) for span in encoding.offsets]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` by the tokenizer's own decoder (byte-level BPE, ``▁`` and ``##`` pieces alike)."""
        return self.tokenizer.decode(swap_pad(ids, self.file_pad_id), skip_special_tokens=False)

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str) -> list[int]:
        return self._ids(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._ids(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def _ids(self, ids: list[int]) -> list[int]:
        """File ids -> uer ids (padding at 0)."""
        return swap_pad(ids, self.file_pad_id) if self.file_pad_id else ids
