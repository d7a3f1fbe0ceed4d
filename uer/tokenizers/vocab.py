"""Vocabularies (token <-> id) and the tokenizer base class that maps through one.

A vocabulary comes from one of three places:

* a vocab file: one token per line, the id is the line number counted from 0.  Only the
  line break (``\\n`` or ``\\r\\n``) is removed, so tokens such as ``\\u2028`` in the
  Google Chinese vocab survive; empty lines at the end of the file are ignored, an empty
  line anywhere else is an error (it would hold an id no text can reach).
  The unknown token is ``[UNK]``.
* a SentencePiece model: the pieces in id order.  The unknown token is the model's own
  unknown piece (``<unk>`` unless the model was trained with another ``--unk_piece``; the
  bundled ``models/cluecorpussmall_spm.model`` uses ``[UNK]``).  The other special
  tokens have the same names as in vocab files, so the model must have been trained with
  ``[PAD]`` as piece 0 and ``[CLS]``, ``[SEP]``, ``[MASK]`` among its pieces, which the
  bundled model does.  Models without them cannot feed the BERT-style targets and are
  rejected when loaded, with the trainer flags that fix them.

* a Hugging Face ``tokenizer.json`` (``uer/tokenizers/hf.py``): its tokens in id order, the
  special tokens named by the tokenizer's own config (``<pad>``, ``<s>``, ... may play the roles).

All kinds must have the padding token at id 0 (padding is id 0 everywhere downstream).  Vocab
files and SentencePiece models must have ``[CLS]``, ``[SEP]``, ``[MASK]`` too; a Hugging Face
tokenizer may lack them (GPT-2, T5), and whatever uses an absent role is refused naming it
(:meth:`Vocab.role_id`, :meth:`Vocab.require`).  Each violation is a
:class:`~uer.errors.UerError` naming the file and what to do.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
import os
import types
from typing import Iterable, Mapping, Sequence

from uer.errors import UerError, reason, where
from uer.paths import bundled_file
from uer.tokenizers.framing import Framing

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"


#: what each role is for, as messages name it
ROLE_NAMES = {"pad": "padding", "unk": "unknown-token", "cls": "classification ([CLS])",
              "sep": "separator ([SEP])", "mask": "mask ([MASK])"}


class Vocab:
    """An immutable, validated token list; ``sha256`` fingerprints what decides the ids."""

    def __init__(self, tokens: Sequence[str], *, unk_token: str | None, path: str, sha256: str, fix: str,
                 pad_token: str | None = PAD_TOKEN, cls_token: str | None = CLS_TOKEN,
                 sep_token: str | None = SEP_TOKEN, mask_token: str | None = MASK_TOKEN,
                 bos_token: str | None = None, eos_token: str | None = None, role_fix: str = ""):
        """``*_token`` name the tokens that play each role (a Hugging Face tokenizer may call its
        padding ``<pad>``); whatever its name, the padding token must be id 0.  A role given as None
        is absent (a published tokenizer may have no [CLS], [SEP] or [MASK]): using it is refused with
        ``role_fix`` (:meth:`role_id`).  ``bos_token`` / ``eos_token`` start and end a text where a
        tokenizer names them; else the [CLS] and [SEP] tokens do."""
        self._tokens = tuple(tokens)
        self._ids = {token: i for i, token in enumerate(self._tokens)}
        self.unk_token = unk_token
        self.path = str(path)
        self.sha256 = sha256
        self.role_fix = role_fix or fix
        if not self._tokens:
            raise UerError(f"{where(path)}: the vocabulary is empty; {fix}")
        if pad_token is None:
            raise UerError(f"{where(path)}: the tokenizer has no padding token (and no end-of-text token to pad "
                           f"with); {fix}")
        if self._tokens[0] != pad_token:
            raise UerError(
                f"{where(path)}: id 0 is {self._tokens[0]!r} but must be {pad_token} "
                f"(padding uses id 0); {fix}"
            )
        for token in (cls_token, sep_token, mask_token, unk_token, bos_token, eos_token):
            if token is not None and token not in self._ids:
                raise UerError(f"{where(path)}: the vocabulary has no {token} token; {fix}")
        self.pad_id = 0
        self._roles = {role: None if token is None else self._ids[token] for role, token in
                       (("unk", unk_token), ("cls", cls_token), ("sep", sep_token), ("mask", mask_token))}
        #: the first and last token of a text: the tokenizer's own bos/eos, else [CLS] / [SEP] (None: none)
        self.bos_id = self._ids[bos_token] if bos_token is not None else self._roles["cls"]
        self.eos_id = self._ids[eos_token] if eos_token is not None else self._roles["sep"]
        self.special_ids = frozenset(i for i in (self.pad_id, *self._roles.values(), self.bos_id, self.eos_id)
                                     if i is not None)

    def has(self, role: str) -> bool:
        """Whether a token plays ``role`` (``unk``, ``cls``, ``sep``, ``mask``)."""
        return self._roles[role] is not None

    def role_id(self, role: str, needed_by: str = "this run") -> int:
        """The id of the token playing ``role``; a tokenizer without one is refused, naming ``needed_by``."""
        found = self._roles[role]
        if found is None:
            raise UerError(f"{needed_by} needs a {ROLE_NAMES[role]} token ({role}_token), but the tokenizer "
                           f"{self.path} has none; {self.role_fix}")
        return found

    def require(self, roles: Iterable[str], needed_by: str) -> None:
        """Refuse, before any work, a tokenizer lacking one of ``roles`` that ``needed_by`` uses."""
        for role in roles:
            self.role_id(role, needed_by)

    @property
    def unk_id(self) -> int | None:
        """The unknown token's id (None: every text has ids, as in byte-level BPE)."""
        return self._roles["unk"]

    @property
    def cls_id(self) -> int:
        return self.role_id("cls")

    @property
    def sep_id(self) -> int:
        return self.role_id("sep")

    @property
    def mask_id(self) -> int:
        return self.role_id("mask")

    @classmethod
    def from_file(cls, path) -> "Vocab":
        """Load a one-token-per-line vocab file (UTF-8)."""
        if not path:
            raise UerError("no vocabulary given; set tokenizer.vocab_path=... (or tokenizer=spm for a "
                           "SentencePiece model)")
        path = bundled_file(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise UerError(f"vocab file {path} not found; set tokenizer.vocab_path=...") from None
        except IsADirectoryError:
            raise UerError(f"vocab file {path} is a directory; set tokenizer.vocab_path=...") from None
        lines = raw.split(b"\n")
        while lines and lines[-1] in (b"", b"\r"):
            lines.pop()
        tokens: list[str] = []
        first_line: dict[str, int] = {}
        for number, line in enumerate(lines, start=1):
            try:
                token = line.removesuffix(b"\r").decode("utf-8")
            except UnicodeDecodeError as e:
                raise UerError(
                    f"{where(path, number)}: not valid UTF-8 (byte {e.start + 1} of the line); "
                    "save the vocab file as UTF-8"
                ) from None
            if not token:
                raise UerError(
                    f"{where(path, number)}: empty line in the vocab file; every line must hold "
                    "one token (use a placeholder such as [unused1] to keep the ids)"
                )
            if token in first_line:
                raise UerError(
                    f"{where(path, number)}: duplicate token {token!r} (also on line "
                    f"{first_line[token]}); each token must appear once"
                )
            first_line[token] = number
            tokens.append(token)
        return cls.from_tokens(tokens, path)

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], path) -> "Vocab":
        """A vocabulary from its token list (id = position); ``path`` names where it came from."""
        digest = hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()
        fix = f"add it to {path} or set tokenizer.vocab_path=... to a BERT-style vocab"
        return cls(tokens, unk_token=UNK_TOKEN, path=path, sha256=digest, fix=fix)

    @classmethod
    def from_spm(cls, path) -> "Vocab":
        """The pieces of a SentencePiece model, in id order."""
        return cls.from_spm_processor(open_spm(path), path)

    @classmethod
    def from_spm_processor(cls, processor, path) -> "Vocab":
        """Like :meth:`from_spm` for a model already loaded from ``path``."""
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        # The model proto decides the segmentation as well as the ids, so hash all of it.
        digest = hashlib.sha256(processor.serialized_model_proto()).hexdigest()
        fix = (
            "retrain the SentencePiece model with --pad_id=0 --pad_piece=[PAD] "
            "--user_defined_symbols=[CLS],[SEP],[MASK]"
        )
        unk = processor.id_to_piece(processor.unk_id())
        return cls(pieces, unk_token=unk, path=path, sha256=digest, fix=fix)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order."""
        return self._tokens

    @property
    def ids(self) -> Mapping[str, int]:
        """Read-only token -> id mapping without the [UNK] fallback, for fast lookups."""
        return types.MappingProxyType(self._ids)

    def token_to_id(self, token: str) -> int:
        return self._ids.get(token, self.unk_id)

    def id_to_token(self, index: int) -> str:
        return self._tokens[index]


def open_spm(path, serialized: bytes | None = None):
    """Load a SentencePiece model (from ``path``, or from its ``serialized`` bytes, ``path`` naming
    where they came from), turning the library's errors into :class:`UerError`."""
    hint = "set tokenizer.spm_model_path=..."
    if serialized is None and not os.path.isfile(path):
        raise UerError(f"sentencepiece model {path} not found; {hint}")
    import sentencepiece  # lazy: an extension only tokenizer=spm needs, kept out of start-up

    processor = sentencepiece.SentencePieceProcessor()
    try:
        if serialized is None:
            processor.load(str(path))
        else:
            processor.LoadFromSerializedProto(serialized)
    except (OSError, RuntimeError) as e:
        raise UerError(f"{where(path)}: not a SentencePiece model ({reason(e)}); {hint}") from None
    return processor


class VocabTokenizer(ABC):
    """Base class: subclasses define ``tokenize``; ids always go through ``self.vocab``."""

    #: the segmentation name reported by :meth:`identity`
    kind = ""
    #: whether this tokenizer actually lowercases (reported by :meth:`identity`)
    lowercases = False

    def __init__(self, vocab: Vocab, source: str):
        self.vocab = vocab
        self.source = source

    @abstractmethod
    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (no special tokens added)."""

    @functools.cached_property
    def framing(self) -> Framing:
        """The special tokens around a text or a pair (``[CLS] A [SEP] (B [SEP])``; see :mod:`.framing`)."""
        return Framing.bert(self.vocab.cls_id, self.vocab.sep_id)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        lookup = self.vocab.token_to_id
        return [lookup(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab.id_to_token(int(i)) for i in ids]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; no [CLS]/[SEP] are added."""
        return self.convert_tokens_to_ids(self.tokenize(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def identity(self) -> dict:
        """What decides the ids: equal dicts give equal ids for the same text.

        ``type`` is the segmentation actually used (``spm`` whenever a SentencePiece model
        is given) and ``do_lower_case`` whether lowercasing actually happens (only ``bert``
        lowercases), so settings that cannot change the ids do not change the identity.
        """
        return {
            "type": self.kind,
            "vocab_sha256": self.vocab.sha256,
            "vocab_size": len(self.vocab),
            "do_lower_case": self.lowercases,
            "source": self.source,
        }
