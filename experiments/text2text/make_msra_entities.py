"""Derive ``datasets/msra_entities/`` (entity extraction as text to text) from the bundled MSRA-NER files.

    python experiments/text2text/make_msra_entities.py              # writes datasets/msra_entities/*.tsv
    python experiments/text2text/make_msra_entities.py --check      # exit 1 if the shipped files differ

Each output file is a TSV with the header ``source<TAB>target``:

* ``source``: the sentence, its characters joined without spaces;
* ``target``: its entities in order of appearance, each ``TYPE：entity`` (``TYPE`` one of 人名, 地名,
  机构 for PER, LOC, ORG; a full-width colon), joined by a full-width ``；``; ``无`` when the sentence
  has none.

The sentences and their train/dev/test splits are those of ``experiments/msra_sentences.py``
(MSRA-NER's sentences of at most 100 characters; its docstring says how they are cut).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import msra_sentences as sentences  # noqa: E402  (experiments/, put on the path just above)

OUT = sentences.ROOT / "datasets" / "msra_entities"
TYPES = {"PER": "人名", "LOC": "地名", "ORG": "机构"}
NONE = "无"
PAIR_SEP, ENTITY_SEP = "：", "；"


def target_of(found: list[tuple[str, str]]) -> str:
    if not found:
        return NONE
    return ENTITY_SEP.join(f"{TYPES[kind]}{PAIR_SEP}{text}" for kind, text in found)


def tsv(rows: list[tuple[str, str]]) -> str:
    return "source\ttarget\n" + "".join(f"{source}\t{target}\n" for source, target in rows)


def tables() -> dict[str, tuple[str, int]]:
    return {name: (tsv([(source, target_of(found)) for source, found in rows]), len(rows))
            for name, rows in sentences.splits().items()}


def main(argv: list[str] | None = None) -> int:
    return sentences.write_or_check(argv, __doc__, OUT, tables)


if __name__ == "__main__":
    sys.exit(main())
