"""Progress reports: one log line per ``report_steps``, the same numbers as JSON lines and to the run's logger.

The log line ends with the time left at the average pace so far (``eta``); on a terminal a
progress bar follows every step between reports (:mod:`uer.progress`).  The logger
(``logger=``, TensorBoard by default: :mod:`uer.training.loggers`) gets ``train/<name>`` for
every reported number (each target part's loss and accuracy, ``lr``, ``tokens_per_s``,
``real_tokens_per_s``) and whatever a stage adds with :meth:`Reporter.scalars` and
:meth:`Reporter.text` (fine-tuning: ``dev/<metric>`` and the per-class table after every
evaluation) or :meth:`Reporter.evaluation` (pre-training's held-out numbers, which also go
into ``metrics.jsonl``, marked ``"split": "dev"``).

Statistics arrive from the model as ``name -> (numerator, denominator)`` tensors and are
summed over the report window and over the ranks of a multi-process run, so e.g. ``mlm_acc`` is correct/masked over the window,
not a mean of per-batch means.  Tensors stay on the device until a report is due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch

from uer.distributed import all_reduce_sum
from uer.io.atomic import reporting_write_errors
from uer.progress import Progress, format_duration
from uer.training.loggers import RunLogger, build_logger

log = logging.getLogger("uer.train")

METRICS = "metrics.jsonl"


class Reporter:
    def __init__(self, out_dir: Path | None, total_steps: int, enabled: bool = True, logger=None,
                 reduce_device: torch.device | str = "cpu"):
        """``logger``: the run's ``logger`` config (None: log lines and metrics.jsonl only)."""
        self.total_steps = total_steps
        self._reduce_device = torch.device(reduce_device)  # NCCL reduces CUDA tensors only
        self.enabled = enabled
        self.out_dir = out_dir
        self._logger_cfg = logger if enabled and out_dir is not None else None
        self._logger: RunLogger | None = None
        self._bar: Progress | None = None
        self._first_add: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._sums: dict[str, list[torch.Tensor]] = {}
        self._tokens = 0
        self._real_tokens = 0
        self._start = time.perf_counter()

    def add(self, stats: dict, src: torch.Tensor) -> None:
        if self._first_add is None:
            self._first_add = time.perf_counter()
        for name, (num, den) in stats.items():
            acc = self._sums.get(name)
            if acc is None:
                self._sums[name] = [num.detach().double(), den.detach().double()]
            else:
                acc[0] += num.detach()
                acc[1] += den.detach()
        self._tokens += src.numel()
        self._real_tokens = self._real_tokens + src.ne(0).sum()  # stays on the device until the report

    def step_done(self, step: int) -> None:
        """Optimizer step ``step`` is done (called by the Trainer after every step): advance the bar."""
        if self._bar is None:
            self._bar = Progress(self.total_steps, "train", "steps", initial=step - 1, enabled=self.enabled,
                                 plain=False, start=self._first_add)
        self._bar.update(step - self._bar.done)

    def eta(self) -> float | None:
        """Seconds until ``total_steps`` at the average pace of this process so far."""
        return self._bar.eta() if self._bar is not None else None

    def report(self, step: int, lr: float) -> dict:
        """Summarise the window (over all ranks of a multi-process run; every rank must call this)."""
        seconds = max(time.perf_counter() - self._start, 1e-9)
        names = sorted(self._sums)
        totals = torch.stack([torch.stack([self._sums[n][0].cpu(), self._sums[n][1].cpu()]) for n in names]
                             + [torch.tensor([self._tokens, float(self._real_tokens)], dtype=torch.float64)])
        totals = all_reduce_sum(totals.to(self._reduce_device)).cpu()
        values = {n: float(num / den) if den > 0 else float("nan") for n, (num, den) in zip(names, totals.tolist())}
        tokens, real_tokens = totals[-1].tolist()
        record = {"step": step, "lr": lr, **values,
                  "tokens_per_s": tokens / seconds, "real_tokens_per_s": real_tokens / seconds}
        if self.enabled:
            parts = " | ".join(f"{k} {v:.4f}" for k, v in values.items())
            eta = self.eta() if step < self.total_steps else None
            log.info("step %d/%d | lr %.3g | %s | %.0f tokens/s (%.0f non-padding)%s",
                     step, self.total_steps, lr, parts, record["tokens_per_s"], record["real_tokens_per_s"],
                     f" | eta {format_duration(eta)}" if eta is not None else "")
            if self.out_dir is not None:
                append_record(self.out_dir / METRICS, record)
            self.scalars("train", {key: value for key, value in record.items() if key != "step"}, step)
        self._reset()
        return record

    @contextlib.contextmanager
    def not_training(self):
        """Time spent inside (an evaluation between steps) does not count in the window's tokens/s."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._start += time.perf_counter() - started

    def evaluation(self, split: str, step: int, values: dict[str, float]) -> None:
        """An evaluation's ``values`` at ``step`` (e.g. pre-training's held-out loss): one log line, a
        ``metrics.jsonl`` record marked ``"split": split`` and ``split/<name>`` to the logger."""
        if not self.enabled:
            return
        log.info("%s step %d/%d | %s", split, step, self.total_steps,
                 " | ".join(f"{k} {v:.4f}" for k, v in values.items()))
        if self.out_dir is not None:
            append_record(self.out_dir / METRICS, {"step": step, "split": split, **values})
        self.scalars(split, values, step)

    @property
    def logger(self) -> RunLogger | None:
        if self._logger is None and self._logger_cfg is not None:
            self._logger = build_logger(self._logger_cfg, self.out_dir)
        return self._logger

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        """``prefix/<name>`` scalars at ``step`` (e.g. ``dev/acc``) to the logger; numbers only, main process only."""
        if self.logger is not None:
            self.logger.scalars(prefix, values, step)

    def text(self, tag: str, text: str, step: int) -> None:
        """A Markdown table (e.g. ``dev/report``) at ``step`` to the logger; main process only."""
        if self.logger is not None:
            self.logger.text(tag, text, step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._logger is not None:
            self._logger.close()


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (a write error is one line naming the file)."""
    with reporting_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
