"""``results.jsonl`` of a fine-tuning run: one JSON line per evaluation (dev, test, a cross-validation's
summary), and the dev records a resumed run carries over from its earlier part."""

from __future__ import annotations

import json
from pathlib import Path

from uer.io.atomic import reporting_write_errors
from uer.training.report import Reporter

RESULTS = "results.jsonl"


def record(directory: Path, entry: dict) -> None:
    """Append ``entry`` as one JSON line to ``directory/results.jsonl``."""
    with reporting_write_errors(directory / RESULTS):
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / RESULTS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def restore_records(report_dir: Path, evaluations: list[dict], reporter: Reporter) -> None:
    """Write the dev records of a resumed run's earlier part that ``report_dir/results.jsonl`` lacks
    (a resumed run usually has a new run directory), so its results show every evaluation."""
    path = report_dir / RESULTS
    present = set()
    if path.is_file():
        present = {(entry.get("fold"), entry.get("step")) for entry in map(json.loads, path.read_text().splitlines())
                   if entry.get("split") == "dev"}
    for entry in evaluations:
        if (entry.get("fold"), entry["step"]) not in present:
            record(report_dir, entry)
            reporter.scalars("dev", {k: v for k, v in entry.items()
                                     if k not in ("split", "fold", "epoch", "step", "report")}, entry["step"])
