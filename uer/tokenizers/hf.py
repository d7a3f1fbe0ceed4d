"""Any fast tokenizer: a Hugging Face ``tokenizer.json`` supplies both the segmentation and the ids.

The text goes through the ``tokenizers`` library's own pipeline (normalizer, pre-tokenizer,
model), so the ids are those transformers' ``AutoTokenizer`` gives for the same file.  The
file's own truncation and padding settings are switched off: each stage truncates and pads
(with id 0) itself, and a silently truncated text would look right and not be.

``tokenizer.tokenizer_path`` is a ``tokenizer.json`` or a model directory holding one.  The
tokens playing the project's roles are those the directory's ``tokenizer_config.json`` and
``special_tokens_map.json`` (the latter wins, as in transformers) name as ``pad_token``,
``unk_token``, ``cls_token``, ``sep_token``, ``mask_token``, ``bos_token``, ``eos_token``; a role
neither names is played by the project's own token (``[PAD]``, ...) where the tokenizer has it,
else it is absent.  One rule for absent roles (published tokenizers lack some: GPT-2 has only
``<|endoftext|>``, T5 no [CLS], [SEP] or [MASK]):

* padding falls back to the end-of-text token (``eos_token``), as transformers users set
  ``pad_token = eos_token`` for GPT-2; a tokenizer with neither is refused;
* texts are framed as the tokenizer's own post-processor frames them (T5 appends ``</s>``, GPT-2
  adds nothing; :mod:`uer.tokenizers.framing`); a file whose post-processor adds nothing is framed
  ``[CLS] A [SEP] (B [SEP])`` when it has both roles (and exported with that template), else not at all;
* whatever needs an absent role (``[MASK]`` for target=mlm, ``[CLS]``/``[SEP]`` for tasks that frame
  BERT's way, a separator for text pairs) is refused before any work, naming the role, the file and
  the fix (:meth:`uer.tokenizers.vocab.Vocab.require`).

A checkpoint records which of the two framed its texts (``framing``: ``own`` or ``bert``) and is read
back by that rule, whatever the rule would choose for the file today: the model sees the framing it
was trained on.  A checkpoint from before that record (uer before 2026-12-07 15:40 UTC, commit
bb8bc4f) was framed ``[CLS] A [SEP] (B [SEP])`` whatever the file's post-processor, so that is how
it is read (:func:`uer.tokenizers.tokenizer_from_state`); the two differ only for a text pair of a
tokenizer whose post-processor frames pairs otherwise (RoBERTa: ``<s> A </s></s> B </s>``, one segment).

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
from uer.tokenizers.framing import A, B, Framing, Template
from uer.tokenizers.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN, Vocab, VocabTokenizer

TOKENIZER_FILE = "tokenizer.json"
# Read in this order; a later file's setting wins.
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
ROLES = {"pad_token": PAD_TOKEN, "unk_token": UNK_TOKEN, "cls_token": CLS_TOKEN, "sep_token": SEP_TOKEN,
         "mask_token": MASK_TOKEN}
ENDS = ("bos_token", "eos_token")  # roles with no project token: only a tokenizer's config names them
PROBES = ("a", "b")  # texts whose framing shows where the post-processor puts its special tokens
# How a checkpoint's texts were framed: by the file's own post-processor, or [CLS] A [SEP] (B [SEP]).
OWN, BERT = "own", "bert"
HINT = "set tokenizer.tokenizer_path=... to a tokenizer.json or a Hugging Face model directory holding one"


def read_hf_tokenizer(path) -> dict:
    """What decides the ids of the tokenizer at ``path`` (a file or a model directory):
    ``{"json": the tokenizer.json text, "special_tokens": {role: token}}`` (the roles the directory's
    config files name; checkpoints written before absent roles were allowed hold all five); a checkpoint
    stores it."""
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
    """``{role: token}``: the roles a model directory's config files name."""
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
        for role in (*ROLES, *ENDS):
            value = settings.get(role)
            # transformers writes a token either as its text or as an AddedToken ({"content": ...}).
            token = value.get("content") if isinstance(value, dict) else value
            if isinstance(token, str) and token:
                named[role] = token
    return named


def resolve_roles(named: dict, has_token) -> tuple[dict, dict]:
    """``(roles, exported)``: the token playing each role (absent roles left out) and the roles a converted
    model's config files name (``roles`` without the padding fallback).  ``has_token(token)``: whether the
    tokenizer holds it."""
    exported = {}
    for role in (*ROLES, *ENDS):
        if named.get(role):
            exported[role] = named[role]  # the vocabulary checks it is a token
        elif role in ROLES and has_token(ROLES[role]):
            exported[role] = ROLES[role]
    roles = dict(exported)
    if "pad_token" not in roles and "eos_token" in roles:
        roles["pad_token"] = roles["eos_token"]
    return roles, exported


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
        self.roles, self.exported_roles = resolve_roles(self.stored["special_tokens"],
                                                        lambda token: self.tokenizer.token_to_id(token) is not None)
        #: the padding token's id in the file; inside uer it is 0 (ids 0 and this one are swapped)
        self.file_pad_id = self.tokenizer.token_to_id(self.roles.get("pad_token", "")) or 0
        super().__init__(self._vocab(file), source="hf")
        self.framing, self.own_framing = self._framing(self.stored.get("framing"))
        self.stored = {**self.stored, "framing": OWN if self.own_framing else BERT}  # a checkpoint records the rule

    def _vocab(self, path: str) -> Vocab:
        size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        tokens = [self.tokenizer.id_to_token(i) for i in range(size)]
        if None in tokens:
            raise UerError(f"{where(path)}: id {tokens.index(None)} has no token (ids must run 0..{size - 1}); {HINT}")
        tokens = [tokens[i] for i in swap_pad(range(size), self.file_pad_id)]
        roles = self.roles
        # What decides the ids: the file and the tokens playing the five roles (as stored before bos/eos were read).
        decided = {"json": self.stored["json"], "special_tokens": {role: roles.get(role) for role in ROLES}}
        digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode("utf-8")).hexdigest()
        named = ", ".join(f"{role} {token}" for role, token in roles.items())
        fix = (f"the roles ({named or 'none'}) come from special_tokens_map.json / tokenizer_config.json in the "
               "model directory (point tokenizer.tokenizer_path at it), else the tokens [PAD], [UNK], [CLS], [SEP], "
               "[MASK] where the tokenizer has them; padding falls back to eos_token")
        role_fix = ("name the token playing it in special_tokens_map.json beside tokenizer.json (add it first if "
                    "the tokenizer has none: tokenizer.add_special_tokens({...}), model.resize_token_embeddings("
                    "len(tokenizer)), save_pretrained both), or choose a task/target that does not use it")
        return Vocab(tokens, unk_token=roles.get("unk_token"), path=path, sha256=digest, fix=fix, role_fix=role_fix,
                     pad_token=roles.get("pad_token"), cls_token=roles.get("cls_token"),
                     sep_token=roles.get("sep_token"), mask_token=roles.get("mask_token"),
                     bos_token=roles.get("bos_token"), eos_token=roles.get("eos_token"))

    def _framing(self, recorded: str | None) -> tuple[Framing, bool]:
        """``(framing, whether it is the file's own post-processor's)``: the rule a checkpoint ``recorded``
        (:data:`OWN` or :data:`BERT`), else the file's where it adds special tokens, else ``[CLS] A [SEP] (B [SEP])``
        where the tokenizer has both roles, else the bare text (no pairs)."""
        first, second = (self.tokenizer.encode(text, add_special_tokens=False) for text in PROBES)
        single = self._template(self.tokenizer.post_process(first, None, add_special_tokens=True), len(first.ids))
        pair = self._template(self.tokenizer.post_process(first, second, add_special_tokens=True), len(first.ids))
        bert = self.vocab.has("cls") and self.vocab.has("sep")
        if recorded not in (None, OWN, BERT) or (recorded == BERT and not bert):
            raise UerError(f"the stored tokenizer records framing {recorded!r}, which it cannot frame by (it was "
                           "modified after it was written); fine-tune the model again")
        if recorded == BERT or (recorded is None and len(single) == 1 and bert):  # the file adds nothing
            return Framing.bert(self.vocab.cls_id, self.vocab.sep_id), False
        return Framing(single, pair if _separated(pair) else None), True

    def _template(self, encoding, first: int) -> Template:
        """The template a post-processed probe shows (``first``: the first text's length): its special tokens
        (uer ids) and texts, with segments.  (The library's ``sequence_ids`` are not kept by every processor.)"""
        template, texts = [], 0
        for token, special, token_type in zip(encoding.ids, encoding.special_tokens_mask, encoding.type_ids):
            piece = swap_pad([token], self.file_pad_id)[0] if special else A if texts < first else B
            texts += not special
            if special or not template or template[-1] != (piece, token_type + 1):
                template.append((piece, token_type + 1))
        return tuple(template)

    def exported_json(self, segments: int = 2) -> str:
        """The tokenizer.json for a converted model: the stored one, unchanged where uer frames as its own
        post-processor does; else with a post-processor that adds [CLS] A [SEP] (B [SEP]) as the stages do,
        so transformers feeds the model what it was trained on.
        ``segments``: the token types the model has -- 2 (B is type 1), 1 or 0 (every token type 0)."""
        if self.own_framing:
            return self.stored["json"]
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


def _separated(pair: Template) -> bool:
    """Whether a pair template puts a special token between its two texts."""
    pieces = [piece for piece, _ in pair]
    return pieces.index(B) - pieces.index(A) > 1
