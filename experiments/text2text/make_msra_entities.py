"""Derive ``datasets/msra_entities/`` (entity extraction as text to text) from the bundled MSRA-NER files.

    python experiments/text2text/make_msra_entities.py              # writes datasets/msra_entities/*.tsv
    python experiments/text2text/make_msra_entities.py --check      # exit 1 if the shipped files differ

Each output file is a TSV with the header ``source<TAB>target``:

* ``source``: the sentence, its characters joined without spaces;
* ``target``: its entities in order of appearance, each ``TYPE：entity`` (``TYPE`` one of 人名, 地名,
  机构 for PER, LOC, ORG; a full-width colon), joined by a full-width ``；``; ``无`` when the sentence
  has none.

The inputs are the MSRA-NER files this repository ships (``text_a<TAB>label``: space-separated
characters and BIO tags; from the public UER-py repository, MIT licence). Every sentence longer than
``MAX_CHARS`` characters is dropped (about 4% of them), so that a small model trains from random
weights on a CPU in minutes. The splits, in the input files' order (no shuffling, no sampling):

* ``dev``:   the first ``DEV_ROWS`` kept sentences of ``datasets/msra_ner/dev.tsv``;
* ``train``: every kept sentence of ``datasets/test_data/msra_ner/train.tsv`` (a 1,000-sentence
  slice of MSRA-NER's train split), then the rest of the kept sentences of ``datasets/msra_ner/dev.tsv``;
* ``test``:  the first ``TEST_ROWS`` kept sentences of ``datasets/msra_ner/test.tsv``.

The three inputs share no sentence, so neither do the outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NER_TRAIN = ROOT / "datasets" / "test_data" / "msra_ner" / "train.tsv"
NER_DEV = ROOT / "datasets" / "msra_ner" / "dev.tsv"
NER_TEST = ROOT / "datasets" / "msra_ner" / "test.tsv"
OUT = ROOT / "datasets" / "msra_entities"

MAX_CHARS = 100
DEV_ROWS = 300
TEST_ROWS = 500
TYPES = {"PER": "人名", "LOC": "地名", "ORG": "机构"}
NONE = "无"
PAIR_SEP, ENTITY_SEP = "：", "；"


def entities(chars: list[str], tags: list[str]) -> list[tuple[str, str]]:
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


def target_of(found: list[tuple[str, str]]) -> str:
    if not found:
        return NONE
    return ENTITY_SEP.join(f"{TYPES[kind]}{PAIR_SEP}{text}" for kind, text in found)


def read_ner(path: Path) -> list[tuple[str, str]]:
    """``(source, target)`` of each sentence of a ``text_a<TAB>label`` file of at most ``MAX_CHARS`` characters."""
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
                rows.append(("".join(chars), target_of(entities(chars, tags))))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return rows


def splits(ner_train: Path = NER_TRAIN, ner_dev: Path = NER_DEV, ner_test: Path = NER_TEST) -> dict[str, list]:
    dev_rows = read_ner(ner_dev)
    return {"train": read_ner(ner_train) + dev_rows[DEV_ROWS:], "dev": dev_rows[:DEV_ROWS],
            "test": read_ner(ner_test)[:TEST_ROWS]}


def tsv(rows: list[tuple[str, str]]) -> str:
    return "source\ttarget\n" + "".join(f"{source}\t{target}\n" for source, target in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    differ = []
    for name, rows in splits().items():
        path, text = args.out / f"{name}.tsv", tsv(rows)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                differ.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {len(rows)} rows")
    if differ:
        print("differ from the derivation: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
