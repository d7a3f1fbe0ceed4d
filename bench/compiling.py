"""What the ``--compile`` variants of the speed benches share: a cold inductor cache, and the compile
time and its pay-back read from the same run's step times.

The compiled models are what ``hardware.compile=true`` trains (:func:`uer.training.process.compiled`:
``torch.compile``, inductor, torch's automatic dynamic shapes); the transformers peer is compiled the
same way, so the compiled ratio is compiled against compiled.  A compile happens inside the first
steps of each compiled variant (and once more at the first batch of another length, which compiles
the graph with the length symbolic), so those steps are timed apart (:func:`timed_rounds`): the compile
time is their time less as many of the variant's timed steps, and never counts in a rate.
"""

from __future__ import annotations

import os
import statistics
import tempfile

COMPILED = " compiled"  # suffix of a compiled variant's side: "uer compiled", "transformers compiled"


def cold_inductor_cache() -> str:
    """Point inductor at an empty cache directory, so the compile times are a first run's, not a cache's
    (it keeps one under /tmp across processes); returns the directory."""
    path = tempfile.mkdtemp(prefix="uer-bench-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    return path


def timed_rounds(times: dict, warmup: int) -> list[int]:
    """The rounds that time steps: after ``warmup``, and none where a compiled variant compiled (a step over
    three times its median: torch recompiles once more when a size first differs, e.g. a length that first
    differs from the batch size).  The same rounds for every variant, so the rates compare the same batches."""
    compiled_steps = [values for key, values in times.items() if COMPILED in str(key)]
    medians = [statistics.median(values[warmup:]) for values in compiled_steps]
    return [i for i in range(warmup, len(next(iter(times.values()))))
            if all(values[i] <= 3 * median for values, median in zip(compiled_steps, medians))]


def compile_seconds(steps: list[float], timed: list[int]) -> float:
    """Seconds the untimed steps took beyond as many steps at the timed mean: the compile time."""
    mean, timed_set = sum(steps[i] for i in timed) / len(timed), set(timed)
    return sum(t - mean for i, t in enumerate(steps) if i not in timed_set)


def payback_note(compile_s: float, eager_step_s: float, compiled_step_s: float) -> str:
    """How many steps at these step times the compile time takes to pay back."""
    saved = eager_step_s - compiled_step_s
    if saved <= 0:
        return f"compile time {compile_s:.0f} s; compiled steps are not faster here, so it is never paid back"
    return f"compile time {compile_s:.0f} s, paid back after {compile_s / saved:,.0f} steps at these rates"


def add_figures(recorder, label: str, unit: str, rate: dict, steps: dict, timed: list[int]) -> None:
    """Record and print, for ``label``: uer compiled vs transformers compiled, each side's compiled vs its
    eager rate, and each side's compile time.  ``rate``: side -> units/s over the ``timed`` rounds;
    ``steps``: side -> every step's seconds."""
    ours, theirs = rate["uer" + COMPILED], rate["transformers" + COMPILED]
    figure = recorder.add(f"{label}, compiled", ours, unit, "transformers compiled", theirs)
    print(f"  uer compiled / transformers compiled: {figure.ratio:.2f}x")
    for side in ("uer", "transformers"):
        times = steps[side + COMPILED]
        eager_step, compiled_step = (sum(steps[s][i] for i in timed) / len(timed) for s in (side, side + COMPILED))
        note = payback_note(compile_seconds(times, timed), eager_step, compiled_step)
        figure = recorder.add(f"{label}, {side} compiled vs eager", rate[side + COMPILED], unit, f"{side} eager",
                              rate[side], note=note)
        untimed = [f"{i + 1}: {t:.1f}" for i, t in enumerate(times) if i not in timed]
        print(f"  {side} compiled / eager: {figure.ratio:.2f}x; {note} (untimed steps, seconds: {', '.join(untimed)})")
