"""Reading a pre-training dataset built by :mod:`uer.data.build` and collating its batches.

The arrays are memory-mapped, so opening a dataset costs the same whatever its size.
A batch is padded to its own longest instance and holds:

* ``src`` (B, L) token ids, 0 = padding; ``seg`` (B, L) 1 = first segment
  (``[CLS]`` A ``[SEP]``), 2 = second segment, 0 = padding;
* mlm, bert, albert: ``mlm_positions`` (N,) indices into the flattened (B*L) batch of the
  tokens to predict and ``mlm_labels`` (N,) their original ids;
* bert, albert: ``sentence_labels`` (B,) -- NSP 0 = real next segment, 1 = random;
  SOP 0 = right order, 1 = swapped;
* lm, bilm: ``lm_labels`` (B, L), ``src`` shifted by one (the next token), -100 at padding;
* bilm: ``lm_backward_labels`` (B, L), the previous token, -100 at position 0 and padding;
* cls: ``cls_labels`` (B,) the class of each row;
* prefixlm: ``lm_labels`` as lm, but -100 over the first segment but its last token (the prefix is
  context, not predicted); ``seg`` 1 over the prefix, 2 after it, which the encoder's
  ``mask: causal_with_prefix`` reads;
* seq2seq, t5, bart: ``src``/``seg`` the encoder's input (one segment), ``tgt_in`` (B, T) the decoder's
  input (``[CLS] target``) and ``tgt_out`` (B, T) its labels (``target [SEP]``), 0 = padding.  t5 and bart
  built with ``dynamic_masking`` store the clean text and noise it here (:mod:`uer.data.noising`), from
  ``default_rng([seed, epoch, index])`` as dynamic masking does.

A dataset built with whole-word masking holds ``word_starts`` (a flag per token) beside
``tokens``; dynamic masking passes them to the same masking function as preprocess did.

With dynamic masking the masks are drawn here, from ``default_rng([seed, epoch, index])``
per instance: the same instance gets the same mask in the same epoch whatever batch it
lands in, which keeps a resumed run identical to an uninterrupted one.

Opening a dataset checks what its metadata bounds (:meth:`PretrainDataset.check_values`):
token ids below the vocabulary size it was built with, instances no longer than its
``seq_length``, segments within their instance, labels of their classes.  A dataset
that breaks one is refused at once, naming the array, instead of failing (or, when the
bad rows are never drawn, not failing) in the middle of training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from uer.data.build import FORMAT, FORMAT_VERSION, META_FILE
from uer.data.instances import INSTANCE_BUILDERS
from uer.data.masking import MaskingScheme, mask_instances
from uer.data.mmap_dataset import open_arrays
from uer.data.noising import noising_from_dict
from uer.errors import UerError, reason

_META_KEYS = ("target", "seq_length", "dynamic_masking", "masking", "tokenizer", "arrays")
CHECK_CHUNK = 1 << 24  # values checked at a time when a dataset is opened


class PretrainDataset:
    """A dataset directory written by :func:`uer.data.build.build_pretrain_dataset`."""

    def __init__(self, path, check_values: bool = True):
        self.path = Path(path)
        fix = f"re-run preprocess to rebuild {self.path}"
        self.meta = _read_meta(self.path, fix)
        self.target = self.meta["target"]
        builder = INSTANCE_BUILDERS.get(self.target)
        static = builder.masked and not self.meta["dynamic_masking"]
        names = ["tokens", "offsets", "seg_a_len"]
        names += ["sentence_label"] * bool(builder.sentence_task)
        names += ["label"] * builder.labelled
        names += ["mask_positions", "mask_labels", "mask_offsets"] * static
        whole_words = bool(builder.masked and (self.meta["masking"] or {}).get("whole_word_masking"))
        names += ["word_starts"] * whole_words
        missing = [name for name in names if name not in self.meta["arrays"]]
        if missing:
            raise UerError(f"{self.path / META_FILE} lists no array {', '.join(missing)}; {fix}")
        arrays = open_arrays(self.path, {name: self.meta["arrays"][name] for name in names}, fix)
        self._tokens, self._offsets, self._seg_a_len = arrays["tokens"], arrays["offsets"], arrays["seg_a_len"]
        self._sentence_label = arrays.get("sentence_label")
        self._label = arrays.get("label")
        self._mask_positions = arrays.get("mask_positions")
        self._mask_labels = arrays.get("mask_labels")
        self._mask_offsets = arrays.get("mask_offsets")
        self._word_starts = arrays.get("word_starts")
        self._check_consistent(fix)
        self._dynamic = MaskingScheme.from_dict(self.meta["masking"]) if builder.masked and self.meta["dynamic_masking"] else None
        self._masked = builder.masked
        self._shift = builder.extra_tokens  # lm: inputs and labels are the instance shifted by one
        self._backward = builder.backward
        self._prefix = builder.prefix
        stored_pairs = builder.pair or (builder.noised and not self.meta["dynamic_masking"])
        self._pairs = builder.pair or builder.noised
        self._noising = noising_from_dict(self.meta["noising"]) if self._pairs and not stored_pairs else None
        self._longest = builder.longest(int(self.meta["seq_length"]), int(self.meta.get("tgt_seq_length") or 0),
                                        stored_pairs)
        if check_values:
            self.check_values(fix)

    def _check_consistent(self, fix: str) -> None:
        n = len(self._offsets) - 1
        ok = all(len(a) == n for a in (self._seg_a_len, self._sentence_label, self._label) if a is not None)
        for offsets, *values in ((self._offsets, self._tokens, self._word_starts),
                                 (self._mask_offsets, self._mask_positions, self._mask_labels)):
            if offsets is not None:
                ok = ok and len(offsets) == n + 1 and n >= 0 and offsets[0] == 0
                ok = ok and all(offsets[-1] == len(v) for v in values if v is not None)
        if not ok:
            raise UerError(f"{self.path}: the array sizes do not match each other; {fix}")

    def check_values(self, fix: str) -> None:
        """A UerError naming the first array holding a value its metadata rules out (reads every array once)."""
        vocab_size = int(self.meta["tokenizer"].get("vocab_size") or 0)
        longest = self._longest
        lengths = self.lengths()
        checks = [("offsets", lengths, 1, longest, f"instance lengths of 1 to {longest} tokens (seq_length "
                                                   f"{self.meta['seq_length']})"),
                  ("seg_a_len", self._seg_a_len.astype(np.int64) - lengths, None, 0,
                   "first segments no longer than their instance")]
        if vocab_size:
            vocabulary = f"ids below {vocab_size}, the size of the vocabulary it was built with"
            checks += [("tokens", self._tokens, 0, vocab_size - 1, vocabulary),
                       ("mask_labels", self._mask_labels, 0, vocab_size - 1, vocabulary)]
        checks += [("mask_positions", self._mask_positions, 0, longest - 1, f"positions below {longest}"),
                   ("sentence_label", self._sentence_label, 0, 1, "labels 0 and 1"),
                   ("label", self._label, 0, None, "labels of at least 0"),
                   ("word_starts", self._word_starts, 0, 1, "word-start flags 0 and 1")]
        for name, values, low, high, allowed in checks:
            if values is None:
                continue
            found = _first_outside(values, low, high)
            if found is not None:
                index, value = found
                raise UerError(f"{self.path}: {name}.npy holds {value} at index {index}, but a dataset holds "
                               f"{allowed} (meta.json); it was modified or damaged after preprocess: {fix}")

    def labels_num(self) -> int:
        """cls: the number of classes, one more than the largest label."""
        if self._label is None:
            raise UerError(f"dataset {self.path} holds no labels: it was built for target {self.target!r}, not cls")
        return int(np.max(self._label)) + 1 if len(self._label) else 0

    def lengths(self) -> np.ndarray:
        """Tokens per instance (as stored), for length bucketing."""
        return np.diff(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getstate__(self) -> dict:
        # Pickle (e.g. for spawned data-loader workers) as the path, not the mapped arrays.
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], check_values=False)  # checked where it was opened

    def fingerprint(self) -> str:
        """A hash of what the dataset holds (its meta.json: options, tokenizer, corpus, counts, array shapes)."""
        return hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode("utf-8")).hexdigest()

    def check_compatible(self, target: str, tokenizer_identity: dict) -> None:
        """Raise a UerError unless the dataset was built for ``target`` with this tokenizer."""
        built_identity = self.meta["tokenizer"]
        tokenizer_identity = json.loads(json.dumps(tokenizer_identity))  # as stored: tuples -> lists
        if target == self.target and tokenizer_identity == built_identity:
            return
        differing = sorted(k for k in set(built_identity) | set(tokenizer_identity)
                           if built_identity.get(k) != tokenizer_identity.get(k))
        raise UerError(
            f"{self.path} was built for target {self.target!r} with tokenizer {_describe(built_identity, differing)}"
            f" but training asks for target {target!r} with tokenizer {_describe(tokenizer_identity, differing)};"
            f" re-run preprocess with target={target} and the training's tokenizer settings"
            f" (or set pretrain.dataset_path= to a dataset built for them)"
        )

    def batch(self, indices: np.ndarray, epoch: int, seed: int) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self._offsets[indices], self._offsets[indices + 1]
        instances = [np.asarray(self._tokens[s:e], dtype=np.int64) for s, e in zip(starts.tolist(), ends.tolist())]
        if self._pairs:
            return self._pair_batch(instances, indices, epoch, seed)
        lengths = (ends - starts) - self._shift
        width = int(lengths.max())
        src = np.zeros((len(indices), width), dtype=np.int64)
        position = np.arange(width)
        first = np.minimum(self._seg_a_len[indices].astype(np.int64), lengths)[:, None]
        seg = np.where(position < first, 1, np.where(position < lengths[:, None], 2, 0))
        batch = {}
        if self._masked:
            batch["mlm_positions"], batch["mlm_labels"] = self._fill_masked(src, instances, indices, epoch, seed)
        elif self._shift:
            labels = np.full_like(src, -100)
            backward = np.full_like(src, -100) if self._backward else None
            for row, tokens in enumerate(instances):
                src[row, :len(tokens) - 1] = tokens[:-1]
                labels[row, :len(tokens) - 1] = tokens[1:]
                if self._prefix:  # the prefix is context: the first label is the token after its [SEP]
                    labels[row, :first[row, 0] - 1] = -100
                if backward is not None:
                    backward[row, 1:len(tokens) - 1] = tokens[:-2]
            batch["lm_labels"] = labels
            if backward is not None:
                batch["lm_backward_labels"] = backward
        else:
            for row, tokens in enumerate(instances):
                src[row, :len(tokens)] = tokens
        if self._label is not None:
            batch["cls_labels"] = self._label[indices].astype(np.int64)
        if self._sentence_label is not None:
            batch["sentence_labels"] = self._sentence_label[indices].astype(np.int64)
        batch.update(src=src, seg=seg)
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}

    def _pair_batch(self, instances, indices, epoch, seed) -> dict[str, torch.Tensor]:
        """seq2seq, t5, bart: the encoder's input and the decoder's input and labels (module docstring)."""
        sources, targets = [], []
        for tokens, index in zip(instances, indices.tolist()):
            if self._noising is None:
                cut = int(self._seg_a_len[index])
                sources.append(tokens[:cut])
                targets.append(tokens[cut:])
                continue
            source, target = self._noising.apply(tokens[1:], np.random.default_rng([seed, epoch, index]))
            cls, sep = tokens[:1], np.array([self.meta["sep_id"]], dtype=np.int64)
            sources.append(np.concatenate((cls, source, sep)))
            targets.append(np.concatenate((cls, target, sep)))
        src = _padded(sources)
        batch = {"src": src, "seg": _padded([np.ones(len(a), np.int64) for a in sources]),
                 "tgt_in": _padded([b[:-1] for b in targets]), "tgt_out": _padded([b[1:] for b in targets])}
        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}

    def _fill_masked(self, src, instances, indices, epoch, seed):
        """Write the (masked) instances into ``src``; return flat positions and labels."""
        positions, labels = [], []
        for row, (tokens, index) in enumerate(zip(instances, indices.tolist())):
            if self._dynamic is not None:
                rng = np.random.default_rng([seed, epoch, index])
                word_starts = None
                if self._word_starts is not None:
                    word_starts = np.asarray(self._word_starts[self._offsets[index]:self._offsets[index + 1]], bool)
                masked = mask_instances(tokens, np.array([0, len(tokens)]), rng, self._dynamic, word_starts)
                tokens, row_positions, row_labels = masked.tokens, masked.positions, masked.labels
            else:
                first, last = self._mask_offsets[index], self._mask_offsets[index + 1]
                row_positions, row_labels = self._mask_positions[first:last], self._mask_labels[first:last]
            src[row, :len(tokens)] = tokens
            positions.append(row * src.shape[1] + np.asarray(row_positions, dtype=np.int64))
            labels.append(np.asarray(row_labels, dtype=np.int64))
        return np.concatenate(positions), np.concatenate(labels)


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    """The rows as one (len(rows), longest) int64 array, 0 after each row's end."""
    out = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
    for row, values in enumerate(rows):
        out[row, :len(values)] = values
    return out


def _first_outside(values: np.ndarray, low: int | None, high: int | None) -> tuple[int, int] | None:
    """``(index, value)`` of the first entry of ``values`` outside ``[low, high]``, read a chunk at a time."""
    limits = np.iinfo(values.dtype)
    low = None if low is None or low <= limits.min else low
    high = None if high is None or high >= limits.max else high
    for start in range(0, len(values), CHECK_CHUNK):
        chunk = np.asarray(values[start:start + CHECK_CHUNK])
        if not len(chunk) or ((low is None or chunk.min() >= low) and (high is None or chunk.max() <= high)):
            continue
        outside = np.zeros(len(chunk), dtype=bool)
        if low is not None:
            outside |= chunk < low
        if high is not None:
            outside |= chunk > high
        index = int(np.argmax(outside))
        return start + index, int(chunk[index])
    return None


def _read_meta(path: Path, fix: str) -> dict:
    meta_path = path / META_FILE
    if not path.is_dir():
        raise UerError(f"pre-training dataset {path} not found; run preprocess first or set pretrain.dataset_path=")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UerError(f"{meta_path} is missing, so {path} is not a complete dataset; {fix}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UerError(f"{meta_path} is not valid JSON ({reason(e)}); {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UerError(f"{meta_path} does not describe a {FORMAT}; {fix}")
    if meta.get("version") != FORMAT_VERSION:
        raise UerError(f"{meta_path} has format version {meta.get('version')}, this code reads "
                       f"{FORMAT_VERSION}; {fix}")
    missing = [key for key in _META_KEYS if key not in meta]
    if missing:
        raise UerError(f"{meta_path} lacks {', '.join(missing)}; {fix}")
    if meta["target"] not in INSTANCE_BUILDERS:
        raise UerError(f"{meta_path} names an unknown target {meta['target']!r}; {fix}")
    return meta


def _describe(identity: dict, keys: list[str]) -> str:
    """The differing entries of a tokenizer identity, long values (hashes) shortened."""
    shown = keys or sorted(identity)
    return "(" + ", ".join(f"{key}={str(identity.get(key))[:16]}" for key in shown) + ")"
