"""The results tables of a sweep: ``results.csv`` and ``results.md``, and over seeds ``results_seeds.csv``.

One row per job (:func:`uer.sweep.job_row`): the overrides that differ between jobs, its
status, score, train/dev/test metrics, time and checkpoint.  When the jobs differ in
``seed``, the jobs that differ *only* in ``seed`` form a group, and a second table gives
each group's mean ± sample standard deviation (and ``n``, the jobs that finished) of every
metric: the number a reproduction reports.  The best mark then goes to the group with the
best mean score (and to its jobs in the per-job table); without seeds, to the best job.
A run that reproduces published results (:mod:`uer.reference_results`) gets, per published
number, its value and the difference from ours (the group's mean, or the job's own).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Callable

from uer import reference_results
from uer.io.atomic import atomic_write_text
from uer.outcome import fmt, number
from uer.progress import format_duration, short_path

TABLE_CSV = "results.csv"
TABLE_MD = "results.md"
SEEDS_CSV = "results_seeds.csv"
SEED = "seed"


def write_tables(sweep_dir: Path, rows: list[dict], direction: str = "maximize",
                 command: str | None = None, interrupted: str | None = None) -> tuple[Path, Path, dict | None]:
    """Write the tables for ``rows``; returns the CSV and Markdown paths and the best (a job row or a group).
    ``interrupted``: the signal that stopped the sweep before its end (said under the title)."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    varying_keys = _varying_keys(rows)
    for row in rows:
        mine = dict(split_override(t) for t in row["overrides"])
        row["varying"] = [f"{k}={mine[k]}" for k in varying_keys if k in mine]
        row["_cells"] = {k: mine.get(k, "") for k in varying_keys}
    columns = _metric_columns(rows)
    entries = _published_entries(rows)
    sign = -1.0 if direction == "minimize" else 1.0
    groups = seed_groups(rows, varying_keys, columns) if SEED in varying_keys else []
    if groups:
        ranked = [group for group in groups if group["stats"]["score"][0] is not None]
        best = max(ranked, key=lambda g: (sign * g["stats"]["score"][0], -g["jobs"][0])) if ranked else None
        best_jobs = set(best["jobs"]) if best else set()
    else:
        scored = [row for row in rows if row["status"] == "ok" and number(row.get("score")) is not None
                  and math.isfinite(row["score"])]
        best = max(scored, key=lambda row: (sign * row["score"], -row["job"])) if scored else None
        best_jobs = {best["job"]} if best else set()

    def header(markdown: bool) -> list[str]:
        return ["job", *varying_keys, "status", *[name for name, _ in columns],
                *_published_header(entries, markdown), "seconds", "checkpoint", "best", "error"]

    def cells(row: dict, markdown: bool) -> list[str]:
        is_best = row["job"] in best_jobs
        job = f"**{row['job']}**" if markdown and is_best else str(row["job"])
        seconds = row.get("seconds")
        time_cell = ("" if seconds is None else format_duration(seconds)) if markdown else (
            "" if seconds is None else f"{seconds:.3f}")
        path = row.get("checkpoint") or row.get("output") or ""
        return [job, *[row["_cells"][k] for k in varying_keys], row["status"],
                *[fmt(get(row)) for _, get in columns],
                *_published_cells(entries, lambda entry: (reference_results.ours(row, entry["split"], entry["metric"]),
                                                          None)),
                time_cell, short_path(path) if (markdown and path) else path, "best" if is_best else "",
                row.get("error") or ""]

    group_of = {job: index for index, group in enumerate(groups) for job in group["jobs"]}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*header(markdown=False), *(["group"] if groups else []), "overrides", "run_dir"])
    for row in rows:
        group = [str(group_of.get(row["job"], ""))] if groups else []
        writer.writerow([*cells(row, markdown=False), *group, " ".join(row["overrides"]), row["run_dir"]])
    csv_path = sweep_dir / TABLE_CSV
    write_atomic(csv_path, buffer.getvalue())

    failed = sum(row["status"] == "failed" for row in rows)
    stopped = sum(row["status"] == "interrupted" for row in rows)
    metric_names = sorted({row["metric"] for row in rows if row.get("metric")})
    what = " / ".join(metric_names) or "the value each job returned"
    better = "lower" if direction == "minimize" else "higher"
    lines = ["# Sweep results", ""]
    if command:
        lines += [f"`python main.py -m {command}`", ""]
    if groups:
        summary = (f"; best: jobs {', '.join(map(str, best['jobs']))} (mean)." if best is not None
                   else "; no group has a score.")
    else:
        summary = f"; best: job {best['job']}." if best is not None else "; no job has a score."
    if interrupted:
        lines += [f"**Interrupted by {interrupted}**: the sweep stopped before its end; jobs it did not reach are "
                  "not listed.", ""]
    counts = f"{len(rows)} job(s), {failed} failed" + (f", {stopped} interrupted" if stopped else "")
    lines.append(f"{counts}. score = {what} ({better} is better){summary}")
    for entry in entries:
        lines.append(f"Published {reference_results.label(entry)}: {entry['value']:.4f} ({entry['source']}); "
                     "difference = ours - published.")
    if groups:
        lines += ["", "## Mean ± standard deviation over seeds", "",
                  f"Jobs that differ only in `{SEED}` are one group; n = its jobs that finished; "
                  "± = sample standard deviation.", ""]
        lines += _markdown(*_group_table(groups, varying_keys, columns, entries, best, markdown=True))
        lines += ["", "## Jobs", ""]
        write_atomic(sweep_dir / SEEDS_CSV, _csv(*_group_table(groups, varying_keys, columns, entries, best,
                                                               markdown=False)))
    else:
        lines.append("")
    lines += _markdown(header(markdown=True), [cells(row, markdown=True) for row in rows])
    md_path = sweep_dir / TABLE_MD
    write_atomic(md_path, "\n".join(lines) + "\n")
    for row in rows:
        row.pop("_cells", None)
    return csv_path, md_path, best


def seed_groups(rows: list[dict], varying_keys: list[str], columns: list[tuple[str, Callable]]) -> list[dict]:
    """The jobs that differ only in ``seed``, grouped (in job order), each with ``stats``:
    ``column -> (mean, sample std)`` over its finished jobs (None where there is no number, std
    None for one job)."""
    others = [k for k in varying_keys if k != SEED]
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        grouped.setdefault(tuple(row["_cells"][k] for k in others), []).append(row)
    groups = []
    for key, members in grouped.items():
        ok = [row for row in members if row["status"] == "ok"]
        stats = {name: mean_std([get(row) for row in ok]) for name, get in columns}
        groups.append({"cells": dict(zip(others, key)), "jobs": [row["job"] for row in members],
                       "seeds": [row["_cells"][SEED] for row in members], "n": len(ok),
                       "failed": sum(row["status"] == "failed" for row in members),
                       "interrupted": sum(row["status"] == "interrupted" for row in members), "stats": stats,
                       "metric": next((row.get("metric") for row in ok if row.get("metric")), None),
                       "varying": [f"{k}={v}" for k, v in zip(others, key)], "overrides": []})
    return groups


def mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the finite numbers of ``values`` (std None below two)."""
    finite = [float(v) for v in values if number(v) is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else None


def describe_best(best: dict) -> str:
    """``job 3 (lr=1e-4) dev acc 0.8125`` or, for a group, ``jobs 0, 1, 2 (lr=1e-4) dev acc 0.8125 ± 0.0100 (n=3)``."""
    overrides = " ".join(best["varying"]) or " ".join(best["overrides"])
    settings = f" ({overrides})" if overrides else ""
    metric = best.get("metric") or "score"
    if "stats" in best:
        mean, std = best["stats"]["score"]
        return f"jobs {', '.join(map(str, best['jobs']))}{settings} {metric} {fmt_mean(mean, std)} (n={best['n']})"
    return f"job {best['job']}{settings} {metric} {fmt(best['score'])}"


def _group_table(groups, varying_keys, columns, entries, best, markdown: bool) -> tuple[list[str], list[list[str]]]:
    others = [k for k in varying_keys if k != SEED]
    names = [name for name, _ in columns]
    if markdown:
        header = [*others, "n", *names, *_published_header(entries), "seeds", "jobs", "best"]
    else:
        header = [*others, "n", "failed", *[f"{name}_{what}" for name in names for what in ("mean", "std")],
                  *_published_header(entries, markdown=False), "seeds", "jobs", "best"]
    rows = []
    for group in groups:
        is_best = group is best
        if markdown:
            values = [fmt_mean(*group["stats"][name]) for name in names]
            left = [f"{group[status]} {status}" for status in ("failed", "interrupted") if group[status]]
            n = f"{group['n']}" + (f" ({', '.join(left)})" if left else "")
            counts = [f"**{n}**" if is_best else n]
        else:
            values = [fmt(v) for name in names for v in group["stats"][name]]
            counts = [str(group["n"]), str(group["failed"])]
        pub = _published_cells(entries, lambda entry: _group_value(group, entry))
        rows.append([*[group["cells"][k] for k in others], *counts, *values, *pub, " ".join(group["seeds"]),
                     " ".join(map(str, group["jobs"])), "best" if is_best else ""])
    return header, rows


def _group_value(group: dict, entry: dict) -> tuple[float | None, float | None]:
    """The group's mean and std of the score a published entry compares with."""
    facts_key = "test" if entry["split"] == "test" else "dev"
    scored = str(group.get("metric") or "dev").split(" ", 1)[0]
    if facts_key == "dev" and scored != entry["split"]:
        return None, None
    return group["stats"].get(f"{facts_key}_{entry['metric']}", (None, None))


def _published_entries(rows: list[dict]) -> list[dict]:
    """The published numbers the jobs reproduce, each once (by split and metric)."""
    seen: dict[tuple, dict] = {}
    for row in rows:
        for entry in row.get("published") or []:
            seen.setdefault((entry["split"], entry["metric"]), entry)
    return list(seen.values())


def _published_header(entries: list[dict], markdown: bool = True) -> list[str]:
    names = [name for entry in entries for name in (f"published {reference_results.label(entry)}",
                                                    f"difference {reference_results.label(entry)}")]
    return names if markdown else [name.replace(" ", "_") for name in names]


def _published_cells(entries: list[dict], value_of: Callable[[dict], tuple]) -> list[str]:
    cells = []
    for entry in entries:
        value, _ = value_of(entry)
        cells += [fmt(entry["value"]), "" if value is None else f"{value - entry['value']:+.4f}"]
    return cells


def _metric_columns(rows: list[dict]) -> list[tuple[str, Callable[[dict], Any]]]:
    """``(column name, getter of a row's value)`` for the score and every train/dev/test metric."""
    columns: list[tuple[str, Callable[[dict], Any]]] = [("score", lambda row: row.get("score"))]
    for part in ("train", "dev", "test"):
        for key in _keys(rows, part):
            columns.append((f"{part}_{key}", lambda row, part=part, key=key: (row.get(part) or {}).get(key)))
    return columns


def _varying_keys(rows: list[dict]) -> list[str]:
    """The overrides that tell the jobs apart, in command-line order."""
    values: dict[str, set] = {}
    for row in rows:
        for text in row["overrides"]:
            key, value = split_override(text)
            values.setdefault(key, set()).add(value)
    return [k for k in _ordered_keys(rows) if len(values[k]) > 1 or any(
        k not in {split_override(t)[0] for t in row["overrides"]} for row in rows)]


def split_override(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.lstrip("+~"), value


def _ordered_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for text in row["overrides"]:
            key = split_override(text)[0]
            if key not in keys:
                keys.append(key)
    return keys


def _keys(rows: list[dict], part: str) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for key, value in (row.get(part) or {}).items():
            if key not in keys and number(value) is not None:
                keys.append(key)
    return keys


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in rows)]


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_mean(mean: float | None, std: float | None) -> str:
    if mean is None:
        return ""
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half a table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
