"""Reading a pre-training corpus: validation, a byte-offset index of its documents, and
reading a range of documents back.

Two layouts:

* ``LINES`` -- every non-blank line is a document (mlm, lm);
* ``DOCUMENTS`` -- documents are runs of non-blank lines separated by blank lines, one
  sentence per line (bert, albert).

A line is blank when ``str.strip`` leaves nothing.  The corpus is scanned in chunks, so
indexing a large corpus holds one chunk plus the index (two int64 per document) in memory;
workers later read just their documents' bytes back with :func:`read_documents`.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass

import numpy as np

from uer.errors import UerError, where

LINES = "lines"
DOCUMENTS = "documents"

CHUNK_BYTES = 1 << 22
_BOM = b"\xef\xbb\xbf"
_FIX_PATH = "set preprocess.corpus_path= to an existing UTF-8 text file"


@dataclass
class CorpusIndex:
    """Where each document lies in the corpus file: ``[starts[i], ends[i])`` in bytes."""

    path: str
    size: int
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def index_corpus(path, layout: str) -> CorpusIndex:
    """Validate the corpus (exists, non-empty, UTF-8, has text) and index its documents."""
    path = str(path)
    if not os.path.isfile(path):
        raise UerError(f"corpus {path} not found; {_FIX_PATH}")
    size = os.path.getsize(path)
    if size == 0:
        raise UerError(f"corpus {path} is empty; {_FIX_PATH}")
    scanner = _Scanner(path, layout)
    with open(path, "rb") as f:
        for offset, chunk in _line_chunks(f):
            scanner.feed(offset, chunk)
    starts, ends = scanner.finish()
    if len(starts) == 0:
        raise UerError(f"corpus {path} has only blank lines; {_FIX_PATH}")
    return CorpusIndex(path, size, starts, ends)


def read_documents(path, starts: np.ndarray, ends: np.ndarray) -> tuple[list[str], list[int]]:
    """The stripped non-blank lines of the given (consecutive) documents, and how many each has."""
    base = int(starts[0])
    with open(path, "rb") as f:
        f.seek(base)
        data = f.read(int(ends[-1]) - base)
    lines: list[str] = []
    counts: list[int] = []
    for start, end in zip((starts - base).tolist(), (ends - base).tolist()):
        doc_lines = [s for s in map(str.strip, data[start:end].decode("utf-8").split("\n")) if s]
        lines.extend(doc_lines)
        counts.append(len(doc_lines))
    return lines, counts


def _line_chunks(f):
    """Yield (byte offset, chunk) with every chunk made of whole lines."""
    offset, carry = 0, b""
    while True:
        block = f.read(CHUNK_BYTES)
        data = carry + block
        cut = data.rfind(b"\n") + 1 if block else len(data)
        if cut:
            yield offset, data[:cut]
            offset += cut
        carry = data[cut:]
        if not block:
            return


class _Scanner:
    """Turns whole-line chunks into document offsets, carrying a document across chunks."""

    def __init__(self, path: str, layout: str):
        self.path = path
        self.layout = layout
        self.lines_seen = 0
        self.starts = array("q")
        self.ends = array("q")
        self.open_doc: tuple[int, int] | None = None  # (start, end) of a document that may go on

    def feed(self, offset: int, chunk: bytes) -> None:
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            line = self.lines_seen + chunk.count(b"\n", 0, e.start) + 1
            raise UerError(
                f"{where(self.path, line)}: not valid UTF-8 (byte 0x{chunk[e.start]:02x}); "
                f"convert the corpus to UTF-8, e.g. iconv -f GBK -t UTF-8 {self.path} > corpus.utf8.txt"
            ) from None
        raw_lines = chunk.split(b"\n")
        lines = text.split("\n")
        if chunk.endswith(b"\n"):
            raw_lines.pop()
            lines.pop()
        lengths = np.fromiter(map(len, raw_lines), dtype=np.int64, count=len(raw_lines))
        line_starts = offset + np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
        line_ends = line_starts + lengths
        if offset == 0 and chunk.startswith(_BOM):
            line_starts[0] += len(_BOM)
            lines[0] = lines[0][1:]
        text_lines = np.fromiter((bool(s.strip()) for s in lines), dtype=bool, count=len(lines))
        self.lines_seen += len(lines)
        if self.layout == LINES:
            self.starts.extend(line_starts[text_lines].tolist())
            self.ends.extend(line_ends[text_lines].tolist())
        else:
            self._feed_documents(text_lines, line_starts, line_ends)

    def _feed_documents(self, text_lines: np.ndarray, line_starts: np.ndarray, line_ends: np.ndarray) -> None:
        before = np.concatenate(([self.open_doc is not None], text_lines[:-1]))
        after = np.concatenate((text_lines[1:], [True]))  # the next chunk may continue the last document
        starts = line_starts[text_lines & ~before].tolist()
        ends = line_ends[text_lines & ~after].tolist()
        if self.open_doc is not None:
            starts.insert(0, self.open_doc[0])
            if not text_lines[0]:
                ends.insert(0, self.open_doc[1])
        self.open_doc = (starts.pop(), int(line_ends[-1])) if text_lines[-1] else None
        self.starts.extend(starts)
        self.ends.extend(ends)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.open_doc is not None:
            self.starts.append(self.open_doc[0])
            self.ends.append(self.open_doc[1])
            self.open_doc = None
        return np.frombuffer(self.starts, dtype=np.int64), np.frombuffer(self.ends, dtype=np.int64)
