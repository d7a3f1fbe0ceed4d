"""A per-class report (:func:`uer.tasks.metrics.class_report`) as a Markdown table, for log lines and
the run's logger; here, below the tasks, because the loggers print it too."""

from __future__ import annotations


def report_table(report: dict) -> str:
    """A report (:func:`~uer.tasks.metrics.class_report`, or any ``per_class`` table with an optional
    ``confusion``) as Markdown."""
    lines = ["| class | precision | recall | f1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in report.get("per_class", {}).items():
        lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |")
    matrix = report.get("confusion")
    if matrix:
        lines += ["", "confusion matrix (rows: gold, columns: predicted)", "",
                  "| gold / predicted | " + " | ".join(str(c) for c in range(len(matrix))) + " |",
                  "| --- |" + " ---: |" * len(matrix)]
        lines += [f"| {g} | " + " | ".join(str(n) for n in row) + " |" for g, row in enumerate(matrix)]
    return "\n".join(lines)
