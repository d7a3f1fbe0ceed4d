"""Derive ``datasets/msra_entity_types_text/`` (the entity types a sentence names, written as text) from the
bundled MSRA-NER files.

    python experiments/text2text/make_msra_entity_types_text.py            # writes its *.tsv
    python experiments/text2text/make_msra_entity_types_text.py --check    # exit 1 if the shipped files differ
    python experiments/text2text/make_msra_entity_types_text.py --counts   # each target's rows per split (README)

Each output file is a TSV for ``task=text2text`` with the header ``source<TAB>target``:

* ``source``: the sentence, its characters joined without spaces;
* ``target``: the distinct types of its entities in a fixed order, 人名 (PER), 地名 (LOC), 机构 (ORG),
  joined by a full-width ``；`` (so a set has exactly one spelling, and exact match is set equality);
  ``无`` when the sentence has none (``common.types_in`` reads a text of this form back into the set).

The sentences and their train/dev/test splits are those of ``experiments/msra_sentences.py``, the same
as ``datasets/msra_entities`` (whose targets name the entities too) and ``datasets/msra_entity_types``
(the same sets as label ids, for ``task=multilabel``).
"""

from __future__ import annotations

import sys
from collections import Counter

from make_msra_entities import ENTITY_SEP, NONE, TYPES, sentences, tsv

OUT = sentences.ROOT / "datasets" / "msra_entity_types_text"


def target_of(found: list[tuple[str, str]]) -> str:
    """The distinct types among ``found`` in ``TYPES`` order, joined by ``；``, or ``无``."""
    kinds = {kind for kind, _ in found}
    return ENTITY_SEP.join(TYPES[kind] for kind in TYPES if kind in kinds) or NONE


def tables() -> dict[str, tuple[str, int]]:
    return {name: (tsv([(source, target_of(found)) for source, found in rows]), len(rows))
            for name, rows in sentences.splits().items()}


def counts() -> str:
    """A Markdown table: the rows of each target per split, the most frequent first (by train)."""
    found = {name: Counter(target_of(found) for _, found in rows) for name, rows in sentences.splits().items()}
    lines = [f"| target | {' | '.join(found)} |", "| --- |" + " --- |" * len(found)]
    for target, _ in found["train"].most_common():
        lines.append(f"| {target} | {' | '.join(f'{split[target]:,}' for split in found.values())} |")
    lines.append(f"| all | {' | '.join(f'{sum(split.values()):,}' for split in found.values())} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--counts"]:
        print(counts())
        return 0
    return sentences.write_or_check(argv, __doc__, OUT, tables)


if __name__ == "__main__":
    sys.exit(main())
