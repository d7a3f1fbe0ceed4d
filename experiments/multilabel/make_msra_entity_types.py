"""Derive ``datasets/msra_entity_types/`` (which entity types a sentence names: multi-label) from the bundled
MSRA-NER files.

    python experiments/multilabel/make_msra_entity_types.py            # writes datasets/msra_entity_types/*.tsv
    python experiments/multilabel/make_msra_entity_types.py --check    # exit 1 if the shipped files differ

Each output file is a TSV for ``task=multilabel`` with the header ``label<TAB>text_a``:

* ``label``: the ids of the entity types the sentence holds, ascending, separated by commas
  (``LABELS``: 0 PER, 1 LOC, 2 ORG); empty when it holds none (``task=multilabel`` reads that as
  the empty set, a row with no label to predict);
* ``text_a``: the sentence, its characters joined without spaces.

The sentences and their train/dev/test splits are those of ``experiments/msra_sentences.py``
(MSRA-NER's sentences of at most 100 characters; its docstring says how they are cut), the same
sentences as ``datasets/msra_entities``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import msra_sentences as sentences  # noqa: E402  (experiments/, put on the path just above)

OUT = sentences.ROOT / "datasets" / "msra_entity_types"
LABELS = ("PER", "LOC", "ORG")  # a type's id is its index


def label_of(found: list[tuple[str, str]]) -> str:
    """The ids of the types among ``found``, ascending and distinct, joined by commas ("" for none)."""
    return ",".join(str(LABELS.index(kind)) for kind in sorted({kind for kind, _ in found}, key=LABELS.index))


def tsv(rows: list[tuple[str, str]]) -> str:
    return "label\ttext_a\n" + "".join(f"{label}\t{text}\n" for label, text in rows)


def tables() -> dict[str, tuple[str, int]]:
    return {name: (tsv([(label_of(found), source) for source, found in rows]), len(rows))
            for name, rows in sentences.splits().items()}


def main(argv: list[str] | None = None) -> int:
    return sentences.write_or_check(argv, __doc__, OUT, tables)


if __name__ == "__main__":
    sys.exit(main())
