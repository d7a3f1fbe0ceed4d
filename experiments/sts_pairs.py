"""Chinese STS-B's pairs (``datasets/chinese_stsb``) as the regression and sentence-embedding reproductions' peers
read them: ``text_a<TAB>text_b<TAB>label`` rows under that header, the label a number (the score, 0..5)."""

from __future__ import annotations

from pathlib import Path


def read_pairs(path: Path, limit: int | None = None) -> list[tuple[str, str, float]]:
    """``(text_a, text_b, score)`` of each row of ``path`` (the first ``limit`` rows if given); a bad header or row
    stops the script with one line naming the file and line."""
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["text_a", "text_b", "label"]:
            raise SystemExit(f"{path}: header {header}, expected text_a, text_b, label")
        rows = []
        for number, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split("\t")
            try:
                text_a, text_b, label = fields
                rows.append((text_a, text_b, float(label)))
            except ValueError:
                raise SystemExit(f"{path}:{number}: expected text_a, text_b and a numeric label, got {fields}") \
                    from None
    return rows[:limit] if limit else rows


def correlation_cells(run: dict) -> str:
    """A results-file seed's best epoch and its dev and test Spearman / Pearson (x100) as table cells."""
    dev, test = run["dev"], run["test"]
    return (f"{run['best_epoch']} | {100 * dev['spearman']:.2f} / {100 * dev['pearson']:.2f} | "
            f"{100 * test['spearman']:.2f} / {100 * test['pearson']:.2f}")
