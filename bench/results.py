"""bench/results.json, and the Benchmarks table (docs/benchmarks.md) generated from it.

Every bench script takes ``--json PATH`` and records there what it printed: each figure
with its unit, the reference it was measured against in the same run, the ratio, and
the goal where the project has one; each bench with its command, date, machine, threads
and library versions.  ``python bench/run_all.py`` runs the set and rewrites the table
between the markers in docs/benchmarks.md; ``python bench/results.py`` only rewrites the table.
A test checks that the committed table is what :func:`render` makes of the committed
JSON, so no number in it is typed by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import suite  # noqa: E402  (bench/suite.py)
from uer.io.atomic import atomic_write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results.json"
TABLE_DOC = ROOT / "docs" / "benchmarks.md"  # the file holding the generated table (the README links to it)
BEGIN = ("<!-- benchmarks table: generated from bench/results.json by `python bench/results.py` "
         "(python bench/run_all.py measures); do not edit by hand -->")
END = "<!-- end of the generated benchmarks table -->"
SCHEMA = 1


@dataclass
class Figure:
    """One measured (or, with ``estimate``, computed) number and what it is compared with."""

    name: str
    value: float
    unit: str
    reference: str | None = None  # short name of what it is compared with, e.g. "transformers"
    reference_value: float | None = None
    goal: float | None = None  # the ratio the project aims for (at least)
    at_most: float | None = None  # a ceiling the project aims to stay under (in ``unit``)
    estimate: bool = False  # arithmetic from stated assumptions, not a measurement
    fraction: bool = False  # the ratio is a fraction of the reference (a share of a peak), not a speed-up
    note: str = ""
    ratio: float | None = field(default=None, init=False)

    def __post_init__(self):
        if self.reference_value is not None:
            self.ratio = self.value / self.reference_value


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
        info["avx512_bf16"] = " avx512_bf16" in cpuinfo
    except OSError:
        pass
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Recorder:
    """Collects one bench's figures; :meth:`save` merges them into the results file (if a path was given)."""

    def __init__(self, bench: str, title: str, reference: str, path: str | None, *, device: str = "cpu",
                 provisional: bool = False, threads: int | str | None = None):
        self.bench, self.title, self.reference, self.path = bench, title, reference, path
        self.device, self.provisional, self.threads = device, provisional, threads
        self.figures: list[Figure] = []
        self.load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        if path and Path(path).exists():
            load(Path(path))  # a file the figures could not be merged into stops the bench before it runs

    def add(self, name: str, value: float, unit: str, reference: str | None = None,
            reference_value: float | None = None, *, goal: float | None = None, at_most: float | None = None,
            estimate: bool = False, fraction: bool = False, note: str = "") -> Figure:
        reference_value = None if reference_value is None else float(reference_value)
        figure = Figure(name, float(value), unit, reference, reference_value, goal, at_most, estimate, fraction, note)
        self.figures.append(figure)
        return figure

    def entry(self) -> dict:
        import torch

        script = Path(sys.argv[0]).resolve()
        script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
        return {
            "title": self.title, "reference": self.reference,
            "command": " ".join(["python", str(script), *_arguments()]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "device": self.device,
            "threads": torch.get_num_threads() if self.threads is None else self.threads,
            "torch": torch.__version__, "machine": machine(),
            "load_before": self.load_before, "provisional": self.provisional,
            "figures": [asdict(f) for f in self.figures],
        }

    def save(self) -> None:
        if not self.path:
            return
        path = Path(self.path)
        data = load(path) if path.exists() else {"schema": SCHEMA, "benches": {}}
        data["benches"][self.bench] = self.entry()
        save(data, path)
        print(f"recorded {len(self.figures)} figures of {self.bench} in {path}")


def add_arguments(parser) -> None:
    """``--json PATH`` and ``--provisional``, for every bench script."""
    parser.add_argument("--json", metavar="PATH", help="record the figures in this results file (bench/results.json)")
    parser.add_argument("--provisional", action="store_true",
                        help="mark the figures provisional (measured on a busy machine)")


def _arguments() -> list[str]:
    """The script's command-line arguments without --json PATH and --provisional."""
    out, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--provisional" or arg.startswith("--json="):
            skip = False
            continue
        if arg == "--json":
            skip = True
            continue
        out.append(arg)
    return out


def load(path: Path = RESULTS) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path} is not a results file ({error}); give --json a new path or a results file")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise SystemExit(f"{path}: schema {schema}, this code reads {SCHEMA}")
    return data


def save(data: dict, path: Path = RESULTS) -> None:
    """Write a results file whole or not at all (a bench stopped while it writes leaves the old one)."""
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def describe(figure: dict) -> str:
    text = f"{figure['name']}: {number(figure['value'])} {figure['unit']}"
    times = "" if figure.get("fraction") else "x"
    if figure["reference_value"] is not None:
        text += f" vs {figure['reference']} {number(figure['reference_value'])} = **{figure['ratio']:.2f}{times}**"
    if figure["goal"] is not None:
        met = "met" if figure["ratio"] >= figure["goal"] else "**not met**"
        text += f" (goal {figure['goal']:.2f}{times}: {met})"
    if figure.get("at_most") is not None:
        met = "met" if figure["value"] <= figure["at_most"] else "**not met**"
        text += f" (goal at most {number(figure['at_most'])} {figure['unit']}: {met})"
    if figure["estimate"]:
        text += " (estimate, not measured)"
    if figure["note"]:
        text += f" ({figure['note']})"
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(data: dict) -> str:
    """The Markdown between the table markers: a row per bench of the set (bench/suite.py), those
    without results marked not measured, then any other recorded bench."""
    benches = data["benches"]
    lines = ["| benchmark (command) | reference, same run | result | measured |", "| --- | --- | --- | --- |"]
    order = [*suite.SUITE, *suite.GPU, *(name for name in benches if name not in suite.SUITE and name not in suite.GPU)]
    for name in order:
        if name not in benches:
            command = "bash bench/gpu.sh" if name in suite.GPU else f"python bench/run_all.py --only {name}"
            lines.append(f"| {suite.GPU.get(name, f'`{name}`')}<br>`{command}` | — | not measured yet | — |")
            continue
        entry = benches[name]
        result = "<br>".join(describe(f) for f in entry["figures"])
        threads = f"{entry['threads']} thread" + ("" if entry["threads"] == 1 else "s")
        when = f"{entry['date'][:10]}, {entry['device']}, {threads}, torch {entry['torch']}"
        if entry["provisional"]:
            when += ", **provisional** (busy machine)"
        lines.append(f"| {_cell(entry['title'])}<br>`{_cell(entry['command'])}` | {_cell(entry['reference'])} "
                     f"| {_cell(result)} | {_cell(when)} |")
    footer = [f"Measured on: {line}." for line in sorted({_machine_line(e) for e in benches.values()})]
    return "\n".join([BEGIN, *lines, "", *footer, END])


def _machine_line(entry: dict) -> str:
    m = entry["machine"]
    parts = [m["cpu"], f"{m['cores']} cores"]
    if m.get("avx512_bf16"):
        parts.append("AVX-512 BF16")
    if m.get("gpu"):
        parts.append(m["gpu"])
    parts += [f"Python {m['python']}", f"torch {m['torch']}"]
    if m.get("transformers"):
        parts.append(f"transformers {m['transformers']}")
    return ", ".join(parts)


def table_in(text: str) -> str:
    """The generated block in the text of docs/benchmarks.md (markers included)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{TABLE_DOC.relative_to(ROOT)} has no benchmarks table markers ({BEGIN!r} ... {END!r})")
    return text[start:end + len(END)]


def write_table(results: Path = RESULTS, doc: Path = TABLE_DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    new = text.replace(table_in(text), render(load(results)))
    if new != text:
        atomic_write_text(doc, new)
    where = doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc
    print(f"{where} benchmarks table {'rewritten' if new != text else 'already current'} from {results}")


if __name__ == "__main__":
    write_table()
