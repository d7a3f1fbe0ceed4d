"""Header-aware TSV files, as the original toolkit's fine-tuning data.

The first line names the columns (``label``, ``text_a``, ``text_b``, ...), in any order;
each later line holds that many tab-separated fields.  Lines are split on ``\\n`` only
(a trailing ``\\r`` is dropped, a UTF-8 BOM on the header is ignored), so text holding
other Unicode line separators stays one row.  Every problem names ``file:line``.

A malformed row is either an error (the default) or, with ``skip`` set, skipped and
counted: :class:`BadRows` is the one place that decides, so a task's own checks
(a label that is not an integer, ...) follow the same rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from uer.errors import UerError, where

log = logging.getLogger("uer.tasks")

SHOWN_SKIPS = 3  # skipped rows logged one by one; the rest only counted


class BadRows:
    """Raise on a bad row, or (``skip``) log the first few and count them all."""

    def __init__(self, path, skip: bool, skip_option: str | None = "finetune.skip_bad_rows=true"):
        self.path = str(path)
        self.skip = skip
        self.skip_option = skip_option
        self.count = 0

    def bad(self, line: int, problem: str, fix: str) -> None:
        if not self.skip:
            alternative = f", or pass {self.skip_option} to skip such rows" if self.skip_option else ""
            raise UerError(f"{where(self.path, line)}: {problem}; {fix}{alternative}")
        self.count += 1
        if self.count <= SHOWN_SKIPS:
            log.warning("%s: skipped: %s", where(self.path, line), problem)

    def summary(self) -> None:
        if self.count:
            log.warning("%s: skipped %d bad row%s", self.path, self.count, "" if self.count == 1 else "s")


@dataclass
class TsvFile:
    path: str
    columns: tuple[str, ...]
    rows: list[tuple[int, list[str]]]  # (line number, fields), in file order

    def has(self, column: str) -> bool:
        return column in self.columns

    def index(self, column: str) -> int:
        return self.columns.index(column)


def read_tsv(path, *, required: Sequence[str], bad: BadRows, example: str) -> TsvFile:
    """Read ``path``; the header must name every column in ``required``.

    ``example`` is a header to suggest (``label<TAB>text_a``) when the header is wrong.
    """
    header, lines = _lines(path)
    columns = tuple(name.strip() for name in header.split("\t"))
    missing = [name for name in required if name not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns)
        raise UerError(
            f"{where(path, 1)}: the header row has no {missing[0]!r} column (found {found}); "
            f"the first line must name the columns, e.g. {example}"
        )
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise UerError(f"{where(path, 1)}: the header names column {duplicated[0]!r} twice; name each column once")
    rows = []
    for number, text in lines:
        if text is None:
            bad.bad(number, "not valid UTF-8", "save the file as UTF-8")
            continue
        fields = text.split("\t")
        if len(fields) != len(columns):
            bad.bad(number, f"{len(fields)} tab-separated fields but the header has {len(columns)} "
                            f"({', '.join(columns)})",
                    "remove tabs inside the text, or fill empty fields")
            continue
        rows.append((number, fields))
    return TsvFile(str(path), columns, rows)


def _lines(path) -> tuple[str, Iterator[tuple[int, str | None]]]:
    """The header and ``(line number, text or None if not UTF-8)`` of every later line."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise UerError(f"data file {path} {what}; check the path")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines or not lines[0].strip():
        raise UerError(f"{where(path, 1)}: no header row; the first line must name the columns, e.g. label<TAB>text_a")
    try:
        header = lines[0].removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise UerError(f"{where(path, 1)}: the header row is not valid UTF-8; save the file as UTF-8") from None

    def body():
        for number, line in enumerate(lines[1:], start=2):
            try:
                yield number, line.removesuffix(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                yield number, None

    return header, body()
