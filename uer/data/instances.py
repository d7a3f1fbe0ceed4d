"""Turning tokenized documents into training instances, one builder per target.

Every instance starts with ``[CLS]``.  ``seg_a_len`` is the length of the first segment
including ``[CLS]`` and its ``[SEP]``; for the single-segment targets it is the whole
instance.

* ``mlm`` / ``lm`` (:class:`StreamInstances`): a document's tokens followed by ``[SEP]``
  form a stream; with ``full_sentences`` the documents of a buffer are shuffled and
  concatenated into one stream.  A stream is cut into pieces of ``seq_length - 1``
  (mlm) or ``seq_length`` (lm) tokens, each stored behind a ``[CLS]``: mlm instances have
  at most ``seq_length`` tokens, lm instances ``seq_length + 1`` (input = all but the
  last, labels = all but the first), so every stream token is predicted exactly once.
  For mlm a trailing piece holding only the ``[SEP]`` is dropped (nothing to mask).
* ``bilm``: stored as ``lm`` (``seq_length + 1`` tokens); the batch adds backward labels
  (token ``i - 1`` at position ``i``).
* ``cls`` (:class:`LabelledInstances`): one labelled example per line, ``label<TAB>text``
  or ``label<TAB>text_a<TAB>text_b`` (a header line starting with ``label`` is skipped),
  stored as ``[CLS] text [SEP]`` (``[CLS] a [SEP] b [SEP]``) cut to ``seq_length``, with
  the label (``label``).
* ``bert`` / ``albert`` (:class:`PairInstances`): Google BERT's sentence-pair sampling,
  ``[CLS] A [SEP] B [SEP]``.  ``sentence_label``: NSP 0 = B is the real continuation,
  1 = B comes from another document; SOP 0 = right order, 1 = A and B swapped.
  One change: a chunk of a single sentence is split inside the sentence, where Google
  always pairs it with a random B -- on corpora of short documents that made most NSP
  labels "random"; now both labels are equally likely.
* ``seq2seq`` / ``prefixlm`` (:class:`ParallelInstances`): one ``source<TAB>target`` pair per line;
  seq2seq stores ``[CLS] source [SEP] [CLS] target [SEP]`` (:func:`pair_block`: the encoder's part,
  then the decoder's), prefixlm ``[CLS] source [SEP] target [SEP]`` read as one lm stream.
* ``t5`` (:class:`SpanCorruptionInstances`) / ``bart`` (:class:`SentenceInstances`): clean
  ``[CLS] text`` instances (document streams as mlm; whole sentences of a document, ``[SEP]``
  between them) that :mod:`uer.data.noising` turns into :func:`pair_block` pairs, at preprocess
  time or, with dynamic masking, at batch time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from uer.data.corpus import DOCUMENTS, LINES
from uer.errors import UerError, where
from uer.registry import Registry

INSTANCE_BUILDERS: Registry = Registry("instance builder")


@dataclass(frozen=True)
class InstanceOptions:
    seq_length: int
    full_sentences: bool
    short_seq_prob: float
    cls_id: int
    sep_id: int
    tgt_seq_length: int | None = None  # seq2seq: longest decoder input ([CLS] target); None = seq_length


@dataclass
class TokenizedDocuments:
    """Consecutive documents as flat ids: sentence ``s`` is ``ids[sentence_offsets[s]:sentence_offsets[s+1]]``,
    document ``d`` holds sentences ``document_offsets[d]`` to ``document_offsets[d+1]``."""

    ids: np.ndarray
    sentence_offsets: np.ndarray
    document_offsets: np.ndarray
    labels: np.ndarray | None = None  # one per document (cls)
    word_starts: np.ndarray | None = None  # whole-word masking: a bool per id, whether it starts a word

    @property
    def token_offsets(self) -> np.ndarray:
        """Where each document's tokens begin and end in ``ids`` (D+1 entries)."""
        return self.sentence_offsets[self.document_offsets]

    def __len__(self) -> int:
        return len(self.document_offsets) - 1


@dataclass
class InstanceBlock:
    tokens: np.ndarray
    lengths: np.ndarray
    seg_a_len: np.ndarray
    sentence_label: np.ndarray | None = None
    label: np.ndarray | None = None  # cls: the class of each instance
    word_starts: np.ndarray | None = None  # whole-word masking: a bool per token, whether it starts a word

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.lengths, dtype=np.int64)))


def concat_ranges(source: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                  prefix: int | None = None, suffix: int | None = None) -> np.ndarray:
    """``source[starts[i]:starts[i]+lengths[i]]`` for all i, concatenated, each range
    optionally preceded by ``prefix`` and followed by ``suffix`` (vectorised gather)."""
    front = prefix is not None
    out_lengths = lengths + front + (suffix is not None)
    out_starts = (np.cumsum(out_lengths) - out_lengths).astype(np.int64)
    gather = np.arange(int(out_lengths.sum()), dtype=np.int64) - np.repeat(out_starts + front - starts, out_lengths)
    out = np.take(source, gather, mode="clip")
    if front:
        out[out_starts] = prefix
    if suffix is not None:
        out[out_starts + out_lengths - 1] = suffix
    return out


CLS_SLOT, SEP_SLOT = -1, -2  # stand-ins for [CLS] and [SEP] while instances are built from token positions


def build_instances(builder, docs: TokenizedDocuments, rng: np.random.Generator,
                    options: InstanceOptions) -> InstanceBlock:
    """``builder.build``, carrying ``docs.word_starts`` (where set) into the instances.

    The builder then runs on the *positions* of the tokens instead of their ids -- the same
    lengths, so the same random draws and the same instances -- and both the ids and the word
    starts are gathered from those positions; the ``[CLS]`` and ``[SEP]`` it adds start words."""
    if docs.word_starts is None:
        return builder.build(docs, rng, options)
    positions = replace(docs, ids=np.arange(len(docs.ids), dtype=np.int64), word_starts=None)
    block = builder.build(positions, rng, replace(options, cls_id=CLS_SLOT, sep_id=SEP_SLOT))
    slots = block.tokens
    added = slots < 0
    gathered = np.where(added, 0, slots)
    block.tokens = np.where(added, np.where(slots == CLS_SLOT, options.cls_id, options.sep_id),
                            docs.ids[gathered]).astype(docs.ids.dtype)
    block.word_starts = added | docs.word_starts[gathered]
    return block


class InstanceBuilder:
    """What every target's builder says about its instances (defaults: plain text, no labels)."""

    layout = LINES
    sentence_task = None  # "nsp" | "sop": a sentence_label per instance
    masked = False  # masked-LM labels (mlm_positions/mlm_labels)
    extra_tokens = 0  # lm, bilm: one token more is stored; inputs and labels are shifted views
    backward = False  # bilm: backward-LM labels too
    labelled = False  # cls: a label per instance, read from the corpus
    pair = False  # seq2seq: [CLS] source [SEP] [CLS] target [SEP], the encoder's and the decoder's parts
    noised = False  # t5, bart: clean text made into pairs by a noising scheme (uer.data.noising)
    prefix = False  # prefixlm: lm labels on the second segment only

    def longest(self, seq_length: int, tgt_seq_length: int, stored_pairs: bool) -> int:
        """The most tokens one stored instance may hold."""
        if stored_pairs:
            return seq_length + tgt_seq_length + 1
        return seq_length + self.extra_tokens

    def parse_documents(self, lines: list[str], line_counts: list[int], path: str, starts: np.ndarray):
        """``(lines, line_counts, labels)`` to tokenize: the corpus lines of consecutive
        documents (``starts``: their byte offsets in ``path``), split into text and labels
        where the format has them; ``labels`` is None without."""
        return lines, line_counts, None


class UnitInstances(InstanceBuilder):
    """Builders that draw nothing at random and read each unit of documents alone (no buffers)."""

    def randomized(self, options: InstanceOptions) -> bool:
        return False

    def uses_buffers(self, options: InstanceOptions) -> bool:
        return False


class StreamInstances(InstanceBuilder):
    """mlm, lm and bilm: single-segment instances cut from document streams."""

    def __init__(self, masked: bool, extra_tokens: int, backward: bool = False):
        self.masked = masked
        self.extra_tokens = extra_tokens  # lm stores one token more: inputs and labels are shifted views
        self.backward = backward

    def randomized(self, options: InstanceOptions) -> bool:
        """Whether instance creation draws random numbers (else repetitions are identical)."""
        return options.full_sentences

    def uses_buffers(self, options: InstanceOptions) -> bool:
        return options.full_sentences

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        token_offsets = docs.token_offsets
        doc_starts, doc_lengths = token_offsets[:-1], np.diff(token_offsets)
        if options.full_sentences:
            order = rng.permutation(len(docs))
            doc_starts, doc_lengths = doc_starts[order], doc_lengths[order]
        stream = concat_ranges(docs.ids, doc_starts, doc_lengths, suffix=options.sep_id)
        stream_lengths = doc_lengths + 1
        if options.full_sentences:
            stream_lengths = stream_lengths.sum(keepdims=True)
        piece_length = options.seq_length - 1 + self.extra_tokens
        # mlm: a trailing piece holding only the [SEP] has nothing to mask, so it is dropped;
        # lm keeps it (the [SEP] ends the document and is predicted too).
        pieces = -(-(stream_lengths - int(self.masked)) // piece_length)
        stream_starts = np.cumsum(stream_lengths) - stream_lengths
        index_in_stream = np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        offset_in_stream = index_in_stream * piece_length
        lengths = np.minimum(piece_length, np.repeat(stream_lengths, pieces) - offset_in_stream)
        tokens = concat_ranges(stream, np.repeat(stream_starts, pieces) + offset_in_stream, lengths,
                               prefix=options.cls_id)
        lengths = (lengths + 1).astype(np.int32)
        return InstanceBlock(tokens=tokens, lengths=lengths, seg_a_len=lengths)


class PairInstances(InstanceBuilder):
    """bert (next-sentence prediction), albert (sentence-order prediction), both with masked-LM
    labels, and nsp (next-sentence prediction alone, no masks)."""

    layout = DOCUMENTS
    extra_tokens = 0

    def __init__(self, sentence_task: str, masked: bool = True):
        self.sentence_task = sentence_task  # "nsp" | "sop"
        self.masked = masked

    def randomized(self, options: InstanceOptions) -> bool:
        return True

    def uses_buffers(self, options: InstanceOptions) -> bool:
        return True

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        sentences = np.split(docs.ids, docs.sentence_offsets[1:-1])
        documents = [sentences[a:b] for a, b in zip(docs.document_offsets[:-1].tolist(),
                                                      docs.document_offsets[1:].tolist())]
        pairs: list[tuple[np.ndarray, np.ndarray, int]] = []
        for index in range(len(documents)):
            pairs.extend(self._document_pairs(documents, index, rng, options.seq_length - 3, options))
        cls, sep = np.array([options.cls_id], docs.ids.dtype), np.array([options.sep_id], docs.ids.dtype)
        pieces = [part for a, b, _ in pairs for part in (cls, a, sep, b, sep)]
        return InstanceBlock(
            tokens=np.concatenate(pieces) if pieces else np.zeros(0, docs.ids.dtype),
            lengths=np.array([len(a) + len(b) + 3 for a, b, _ in pairs], dtype=np.int32),
            seg_a_len=np.array([len(a) + 2 for a, _, _ in pairs], dtype=np.int32),
            sentence_label=np.array([label for _, _, label in pairs], dtype=np.int8),
        )

    def _document_pairs(self, documents, index, rng, max_tokens, options):
        """Google BERT's ``create_instances_from_document``: gather sentences into a chunk
        of about the target length, split it into A and B at a random sentence boundary."""
        document = documents[index]
        target_length = max_tokens
        if rng.random() < options.short_seq_prob:
            target_length = int(rng.integers(2, max_tokens + 1))
        pairs = []
        chunk: list[np.ndarray] = []
        chunk_length = 0
        i = 0
        while i < len(document):
            chunk.append(document[i])
            chunk_length += len(document[i])
            if i == len(document) - 1 or chunk_length >= target_length:
                pair = self._pair(chunk, documents, index, target_length, rng)
                if pair is not None:
                    a, b, label, put_back = pair
                    i -= put_back
                    a, b = _truncate_pair(a, b, max_tokens, rng)
                    pairs.append((a, b, label))
                chunk, chunk_length = [], 0
            i += 1
        return pairs

    def _pair(self, chunk, documents, index, target_length, rng):
        """(A, B, label, sentences of the chunk to put back), or None if the chunk is one token."""
        if len(chunk) == 1:
            if len(chunk[0]) < 2:
                return None
            cut = int(rng.integers(1, len(chunk[0])))
            chunk, a_end = [chunk[0][:cut], chunk[0][cut:]], 1
            put_back = 0
        else:
            a_end = int(rng.integers(1, len(chunk)))
            put_back = len(chunk) - a_end
        a, b = np.concatenate(chunk[:a_end]), np.concatenate(chunk[a_end:])
        if self.sentence_task == "sop":
            return (b, a, 1, 0) if rng.random() < 0.5 else (a, b, 0, 0)
        if len(documents) > 1 and rng.random() < 0.5:
            return a, _random_continuation(documents, index, target_length - len(a), rng), 1, put_back
        return a, b, 0, 0


def _random_continuation(documents, index, target_length, rng) -> np.ndarray:
    """Sentences of another document from a random sentence on, about ``target_length`` tokens."""
    other = int(rng.integers(len(documents) - 1))
    other += other >= index
    document = documents[other]
    parts, length = [], 0
    for sentence in document[int(rng.integers(len(document))):]:
        parts.append(sentence)
        length += len(sentence)
        if length >= target_length:
            break
    return np.concatenate(parts)


def _truncate_pair(a: np.ndarray, b: np.ndarray, max_tokens: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Shorten the longer of A and B until both fit, each token from the front or back at random.

    Removes tokens in runs while one side stays the longer, drawing how many come off the
    front from a binomial: the same distribution as Google's token-by-token loop.
    """
    while len(a) + len(b) > max_tokens:
        longer_is_a = len(a) > len(b)
        longer, shorter = (a, b) if longer_is_a else (b, a)
        count = min(len(a) + len(b) - max_tokens, max(1, len(longer) - len(shorter)))
        front = int(rng.binomial(count, 0.5))
        longer = longer[front:len(longer) - (count - front)]
        a, b = (longer, shorter) if longer_is_a else (shorter, longer)
    return a, b


class LabelledInstances(UnitInstances):
    """cls: ``label<TAB>text_a[<TAB>text_b]`` per line -> ``[CLS] a [SEP] (b [SEP])`` + label."""

    labelled = True

    def parse_documents(self, lines: list[str], line_counts: list[int], path: str, starts: np.ndarray):
        texts: list[str] = []
        counts: list[int] = []
        labels: list[int] = []
        for line, start in zip(lines, starts.tolist()):  # LINES layout: one line per document
            fields = line.split("\t")
            if fields[0].strip().lower() == "label" and start <= 3:  # a header (after a BOM, maybe)
                continue
            label = fields[0].strip()
            if len(fields) not in (2, 3) or not label.isdigit():
                raise UerError(f"{where(path, _line_number(path, start))}: a cls corpus line is "
                               f"label<TAB>text or label<TAB>text_a<TAB>text_b with a label 0, 1, 2 ..., "
                               f"but this line is {line[:60]!r}")
            texts.extend(fields[1:])
            counts.append(len(fields) - 1)
            labels.append(int(label))
        if not texts:
            raise UerError(f"{where(path)}: a cls corpus needs label<TAB>text lines, but it holds only a header")
        return texts, counts, np.array(labels, dtype=np.int64)

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        if docs.labels is None:
            raise RuntimeError("cls documents arrived without labels: the dataset builder must pass the labels of "
                               "parse_documents to tokenize_documents (uer.data.build.build_unit)")
        room = options.seq_length
        cls, sep = np.array([options.cls_id], docs.ids.dtype), np.array([options.sep_id], docs.ids.dtype)
        pieces, lengths, seg_a_len = [], [], []
        for first, end in zip(docs.document_offsets[:-1].tolist(), docs.document_offsets[1:].tolist()):
            parts = [docs.ids[docs.sentence_offsets[s]:docs.sentence_offsets[s + 1]] for s in range(first, end)]
            if len(parts) == 1:
                a = parts[0][:room - 2]
                pieces += [cls, a, sep]
                lengths.append(len(a) + 2)
                seg_a_len.append(len(a) + 2)
            else:
                a, b = _truncate_longer(parts[0], parts[1], room - 3)
                pieces += [cls, a, sep, b, sep]
                lengths.append(len(a) + len(b) + 3)
                seg_a_len.append(len(a) + 2)
        return InstanceBlock(
            tokens=np.concatenate(pieces) if pieces else np.zeros(0, docs.ids.dtype),
            lengths=np.array(lengths, dtype=np.int32),
            seg_a_len=np.array(seg_a_len, dtype=np.int32),
            label=np.asarray(docs.labels, dtype=np.int64),
        )


def _truncate_longer(a: np.ndarray, b: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the end of the longer of ``a`` and ``b`` until both fit in ``room`` tokens (BERT's
    ``truncate_seq_pair``, all at once): a short side is kept whole, two long ones get half each."""
    if len(a) + len(b) <= room:
        return a, b
    half = room // 2
    if len(a) <= half:
        return a, b[:room - len(a)]
    if len(b) <= half:
        return a[:room - len(b)], b
    return a[:room - half], b[:half]


def _line_number(path: str, offset: int) -> int:
    """The 1-based line that starts at byte ``offset`` of ``path`` (for messages)."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(offset, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count + 1


def pair_block(sources: list[np.ndarray], targets: list[np.ndarray], options: InstanceOptions,
               dtype) -> InstanceBlock:
    """``[CLS] source [SEP] [CLS] target [SEP]`` per pair, the first segment ``[CLS] source [SEP]``: the
    encoder's input, then the decoder's input (all but the last) and labels (all but the first)."""
    cls, sep = np.array([options.cls_id], dtype), np.array([options.sep_id], dtype)
    pieces = [part for source, target in zip(sources, targets) for part in (cls, source, sep, cls, target, sep)]
    return InstanceBlock(
        tokens=np.concatenate(pieces).astype(dtype) if pieces else np.zeros(0, dtype),
        lengths=np.array([len(a) + len(b) + 4 for a, b in zip(sources, targets)], dtype=np.int32),
        seg_a_len=np.array([len(a) + 2 for a in sources], dtype=np.int32),
    )


class ParallelInstances(UnitInstances):
    """seq2seq and prefixlm: one ``source<TAB>target`` pair per line.

    seq2seq stores :func:`pair_block` pairs, the source cut to ``seq_length - 2`` tokens and the target to
    ``tgt_seq_length - 1``.  prefixlm stores ``[CLS] source [SEP] target [SEP]`` (first segment
    ``[CLS] source [SEP]``) of at most ``seq_length + 1`` tokens, the longer side cut first; the batch
    predicts each token after the first segment from everything before it.  A line whose source or
    target has no token after tokenization is left out."""

    def __init__(self, name: str, prefix: bool):
        self.name = name
        self.prefix = prefix
        self.pair = not prefix
        self.extra_tokens = int(prefix)  # prefixlm: inputs and labels are shifted views, as lm

    def parse_documents(self, lines: list[str], line_counts: list[int], path: str, starts: np.ndarray):
        texts: list[str] = []
        for line, start in zip(lines, starts.tolist()):  # LINES layout: one line per document
            fields = line.split("\t")
            if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                raise UerError(f"{where(path, _line_number(path, start))}: a target={self.name} corpus line is "
                               f"source<TAB>target (one tab, text on both sides), but this line is {line[:60]!r}; "
                               "fix or remove the line")
            texts.extend(fields)
        return texts, [2] * len(lines), None

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        sources, targets = [], []
        offsets = docs.sentence_offsets
        for first, end in zip(docs.document_offsets[:-1].tolist(), docs.document_offsets[1:].tolist()):
            if end - first != 2:  # one side had no token
                continue
            sources.append(docs.ids[offsets[first]:offsets[first + 1]])
            targets.append(docs.ids[offsets[first + 1]:offsets[end]])
        if self.pair:
            tgt_seq_length = options.tgt_seq_length or options.seq_length
            return pair_block([a[:options.seq_length - 2] for a in sources],
                              [b[:tgt_seq_length - 1] for b in targets], options, docs.ids.dtype)
        cls, sep = np.array([options.cls_id], docs.ids.dtype), np.array([options.sep_id], docs.ids.dtype)
        pieces, lengths, seg_a_len = [], [], []
        for a, b in zip(sources, targets):
            a, b = _truncate_longer(a, b, options.seq_length + 1 - 3)
            pieces += [cls, a, sep, b, sep]
            lengths.append(len(a) + len(b) + 3)
            seg_a_len.append(len(a) + 2)
        return InstanceBlock(
            tokens=np.concatenate(pieces) if pieces else np.zeros(0, docs.ids.dtype),
            lengths=np.array(lengths, dtype=np.int32), seg_a_len=np.array(seg_a_len, dtype=np.int32))


class SpanCorruptionInstances(InstanceBuilder):
    """t5: ``[CLS] text`` pieces of at most ``seq_length - 1`` tokens cut from document streams as for mlm
    (one token shorter, so the source's closing ``[SEP]`` fits), noised into pairs by uer.data.noising."""

    noised = True

    def __init__(self):
        self.stream = StreamInstances(masked=True, extra_tokens=-1)

    def randomized(self, options: InstanceOptions) -> bool:
        return self.stream.randomized(options)

    def uses_buffers(self, options: InstanceOptions) -> bool:
        return self.stream.uses_buffers(options)

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        return self.stream.build(docs, rng, options)


class SentenceInstances(UnitInstances):
    """bart: ``[CLS] s1 [SEP] s2 [SEP] ... sk`` -- whole consecutive sentences of one document, as many as fit
    in ``seq_length - 1`` tokens (a longer sentence is cut into pieces of its own), noised into pairs by
    uer.data.noising (the ``[SEP]`` between sentences mark where sentence permutation may cut)."""

    layout = DOCUMENTS
    noised = True

    def build(self, docs: TokenizedDocuments, rng: np.random.Generator, options: InstanceOptions) -> InstanceBlock:
        room = options.seq_length - 2
        sep = np.array([options.sep_id], docs.ids.dtype)
        bodies: list[list[np.ndarray]] = []
        offsets = docs.sentence_offsets.tolist()
        for first, end in zip(docs.document_offsets[:-1].tolist(), docs.document_offsets[1:].tolist()):
            current: list[np.ndarray] = []
            used = 0
            for s in range(first, end):
                sentence = docs.ids[offsets[s]:offsets[s + 1]]
                for cut in range(0, len(sentence), room):
                    piece = sentence[cut:cut + room]
                    if current and used + 1 + len(piece) > room:
                        bodies.append(current)
                        current, used = [], 0
                    current += [sep, piece] if current else [piece]
                    used += len(piece) + (len(current) > 1)
            if current:
                bodies.append(current)
        cls = np.array([options.cls_id], docs.ids.dtype)
        tokens = [part for body in bodies for part in (cls, *body)]
        lengths = np.array([1 + sum(map(len, body)) for body in bodies], dtype=np.int32)
        return InstanceBlock(tokens=np.concatenate(tokens) if tokens else np.zeros(0, docs.ids.dtype),
                             lengths=lengths, seg_a_len=lengths)


INSTANCE_BUILDERS.register("mlm")(StreamInstances(masked=True, extra_tokens=0))
INSTANCE_BUILDERS.register("lm")(StreamInstances(masked=False, extra_tokens=1))
INSTANCE_BUILDERS.register("bilm")(StreamInstances(masked=False, extra_tokens=1, backward=True))
INSTANCE_BUILDERS.register("cls")(LabelledInstances())
INSTANCE_BUILDERS.register("bert")(PairInstances("nsp"))
INSTANCE_BUILDERS.register("albert")(PairInstances("sop"))
INSTANCE_BUILDERS.register("nsp")(PairInstances("nsp", masked=False))
INSTANCE_BUILDERS.register("seq2seq")(ParallelInstances("seq2seq", prefix=False))
INSTANCE_BUILDERS.register("prefixlm")(ParallelInstances("prefixlm", prefix=True))
INSTANCE_BUILDERS.register("t5")(SpanCorruptionInstances())
INSTANCE_BUILDERS.register("bart")(SentenceInstances())
