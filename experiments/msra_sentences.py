"""MSRA-NER's bundled sentences and their entities, cut into the splits of the data sets derived from them
(``datasets/msra_entities``, ``datasets/msra_entity_types``), and the ``--check`` / write command both
derivation scripts run.

The inputs are the MSRA-NER files this repository ships (``text_a<TAB>label``: space-separated
characters and BIO tags; from the public UER-py repository, Apache-2.0). Every sentence longer than
``MAX_CHARS`` characters is dropped (about 4% of them), so that a small model trains from random
weights on a CPU in minutes. The splits, in the input files' order (no shuffling, no sampling):

* ``dev``:   the first ``DEV_ROWS`` kept sentences of ``datasets/msra_ner/dev.tsv``;
* ``train``: every kept sentence of ``datasets/test_data/msra_ner/train.tsv`` (a 1,000-sentence
  slice of MSRA-NER's train split, the only part of it bundled), then the rest of the kept
  sentences of ``datasets/msra_ner/dev.tsv``;
* ``test``:  the first ``TEST_ROWS`` kept sentences of ``datasets/msra_ner/test.tsv``.

The three inputs share no sentence, so neither do the outputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from uer.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
NER_TRAIN = ROOT / "datasets" / "test_data" / "msra_ner" / "train.tsv"
NER_DEV = ROOT / "datasets" / "msra_ner" / "dev.tsv"
NER_TEST = ROOT / "datasets" / "msra_ner" / "test.tsv"

MAX_CHARS = 100
DEV_ROWS = 300
TEST_ROWS = 500

Entity = tuple[str, str]  # (type: PER, LOC or ORG, its text)
Sentence = tuple[str, list[Entity]]  # (the characters joined, its entities in order)


def entities(chars: list[str], tags: list[str]) -> list[Entity]:
    """``(type, text)`` of each entity, in order: a ``B-X`` and the ``I-X`` that follow it."""
    if len(chars) != len(tags):
        raise ValueError(f"{len(chars)} characters and {len(tags)} tags")
    found: list[tuple[str, list[str]]] = []
    previous = "O"
    for char, tag in zip(chars, tags):
        if tag.startswith("B-"):
            found.append((tag[2:], [char]))
        elif tag.startswith("I-") and previous != "O" and previous[2:] == tag[2:]:
            found[-1][1].append(char)
        elif tag != "O":
            raise ValueError(f"tag {tag!r} does not continue an entity of its type")
        previous = tag
    return [(kind, "".join(text)) for kind, text in found]


def read_ner(path: Path) -> list[Sentence]:
    """Each sentence of a ``text_a<TAB>label`` file of at most ``MAX_CHARS`` characters, with its entities."""
    rows = []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["text_a", "label"]:
            raise ValueError(f"{path}: header {header}, expected text_a, label")
        for number, line in enumerate(f, start=2):
            text, label = line.rstrip("\n").split("\t")
            chars, tags = text.split(" "), label.split(" ")
            if len(chars) > MAX_CHARS:
                continue
            try:
                rows.append(("".join(chars), entities(chars, tags)))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return rows


def splits(ner_train: Path = NER_TRAIN, ner_dev: Path = NER_DEV, ner_test: Path = NER_TEST) -> dict[str, list]:
    """``{"train", "dev", "test"}`` -> the split's sentences (see the module docstring)."""
    dev_rows = read_ner(ner_dev)
    return {"train": read_ner(ner_train) + dev_rows[DEV_ROWS:], "dev": dev_rows[:DEV_ROWS],
            "test": read_ner(ner_test)[:TEST_ROWS]}


def first_line(path: Path) -> str:
    """The first line of ``path`` without its end ("" for an empty or undecodable file)."""
    with path.open("rb") as handle:
        return handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")


def write_or_check(argv: list[str] | None, description: str, out: Path,
                   tables: Callable[[], dict[str, tuple[str, int]]]) -> int:
    """The derivation command: ``tables()`` gives each split's file text and row count; they are written
    to ``--out/SPLIT.tsv`` (never over a file of another header: one line and exit 1 before writing any), or with
    ``--check`` compared with the files there (exit 1 if any differs)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    splits_text = tables()
    paths = {name: args.out / f"{name}.tsv" for name in splits_text}
    if not args.check:  # before writing any: an existing file with another header is not an earlier output
        if args.out.exists() and not args.out.is_dir():
            sys.exit(f"--out {args.out} is a file; it names the directory of the splits, choose another --out")
        for name, path in paths.items():
            header = splits_text[name][0].partition("\n")[0]
            if path.is_file() and first_line(path) != header:
                sys.exit(f"--out {args.out}: {path} exists and is not this derivation's output (its first line is "
                         f"not {header!r}); writing there would destroy it, choose another --out")
    differ = []
    for name, (text, count) in splits_text.items():
        path = paths[name]
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                differ.append(str(path))
            continue
        atomic_write_text(path, text)
        print(f"{path}: {count} rows")
    if differ:
        print("differ from the derivation: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0
