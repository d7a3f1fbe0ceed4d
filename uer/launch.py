"""Start the workers of a multi-process run from ``main.py`` itself.

When ``hardware.nproc_per_node * hardware.nnodes > 1`` and this process is not already a
worker (torchrun sets ``RANK``), the checked and prepared config is resolved once and
handed to ``nproc_per_node`` workers (forks of a server that imported torch once) started by
torch.distributed's elastic launcher — the same machinery as ``torchrun``: c10d rendezvous at ``hardware.rdzv_endpoint``, ``nnodes``
machines, ``max_restarts`` restarts of failed workers.  Each worker calls ``entry`` (a
module-level function, passed by reference, so this module imports no stage) on the
config; workers write into this run's directory; a restarted worker
(:func:`uer.distributed.restarted`) resumes from the newest checkpoint.  Multi-node: run the
same command on every node.

A worker stopped by a :class:`~uer.errors.UerError` does not print it: it leaves its line in a
file of a directory this process made for the run, and this process raises the first failed
rank's line as its own -- one line, printed once, however many ranks met the same error (a bad
setting or file every rank finds).  A worker's unexpected error leaves its traceback in that
directory too: this process prints the first failed rank's, once, and names that rank in its line,
with the other ranks that failed summed up in the same line (a bug every rank meets is one
traceback, not one per rank).  SIGINT or SIGTERM stops the workers (the elastic agent passes it on)
and is raised here as :class:`~uer.errors.Interrupted`, so the run ends as one in a single process
does: one line, exit status 128 + the signal.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, record
from torch.distributed.elastic.rendezvous.api import RendezvousError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from uer.distributed import DISTRIBUTED_STAGES, world_size
from uer.errors import Interrupted, UerError

log = logging.getLogger("uer.launch")

RUN_DIR_ENV = "UER_RUN_DIR"

MONITOR_INTERVAL = 0.5  # seconds between the elastic agent's looks at its workers
# How long a worker that failed with an unexpected exception waits before reporting it: when another rank failed
# first (and closed its connections, so this rank's collective raised), the agent ends this worker meanwhile, and
# the run's only error is the rank that caused it.
FAILURE_GRACE = 10 * MONITOR_INTERVAL

# What torch's elastic agent sets for a worker over a value the launching process may hold too.
AGENT_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "TORCH_NCCL_ASYNC_ERROR_HANDLING")

# torch's own loggers that report a failed or stopped worker (with a traceback of the agent's) on the terminal.
TORCH_LAUNCH_LOGGERS = ("torch.distributed.elastic", "torch.multiprocessing")


def check_devices(cfg: DictConfig) -> None:
    """In the launching process, before any worker: the devices the run asks for are there."""
    hardware = cfg.get("hardware")
    if hardware is None:
        return
    device = str(hardware.device)
    if not device.startswith("cuda"):
        return
    wanted = hardware.nproc_per_node if world_size(cfg) > 1 and cfg.stage in DISTRIBUTED_STAGES else 1
    if wanted > 1 and device != "cuda":
        raise UerError(f"hardware.device={device} with hardware.nproc_per_node={wanted} would put every worker on "
                       f"one GPU; use hardware.device=cuda (each worker takes its local rank's GPU), and "
                       f"CUDA_VISIBLE_DEVICES to choose which GPUs")
    if not torch.cuda.is_available():
        raise UerError(f"hardware.device={device} but no CUDA device is visible (torch.cuda.is_available() is false); "
                       f"use hardware=cpu, or hardware.device=cpu to keep the other settings")
    visible = torch.cuda.device_count()
    if visible < wanted:
        raise UerError(f"hardware.nproc_per_node={wanted} wants one CUDA device per process but {visible} are "
                       f"visible; set hardware.nproc_per_node={visible}")


def launch(cfg: DictConfig, entry: Callable[[DictConfig], object]):
    """``entry(cfg)`` in ``nproc_per_node`` workers here (and as many on each other node); rank 0's result."""
    hw = cfg.hardware
    if hw.nnodes > 1 and hw.rdzv_endpoint.endswith(":0"):
        raise UerError(f"hardware.nnodes={hw.nnodes} needs a fixed rendezvous port every node can reach: "
                       "set hardware.rdzv_endpoint=HOST:PORT (the same on every node)")
    # Restarted workers often fail to reconnect to a rendezvous store shared with the agent.
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    share_cores(hw)
    config = LaunchConfig(
        min_nodes=hw.nnodes, max_nodes=hw.nnodes, nproc_per_node=hw.nproc_per_node, run_id=hw.rdzv_id,
        rdzv_backend="c10d", rdzv_endpoint=hw.rdzv_endpoint,
        rdzv_configs={"join_timeout": hw.rdzv_timeout, "timeout": hw.rdzv_timeout},
        max_restarts=hw.max_restarts, monitor_interval=MONITOR_INTERVAL, start_method=_start_method(entry),
    )
    container = OmegaConf.to_container(cfg, resolve=True)
    # Workers write into this Hydra run's directory; outside main.py (tests, notebooks)
    # they fall back to where the stage would write in-process (e.g. output_model_path).
    run_directory = os.environ.get(RUN_DIR_ENV) or (
        HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None)
    log.info("starting %d worker(s) on this node (%d node(s), rendezvous %s)", hw.nproc_per_node, hw.nnodes,
             hw.rdzv_endpoint)
    try:
        with _torch_reports_to_log_files(), tempfile.TemporaryDirectory(prefix="uer-errors-") as errors:
            try:
                results = elastic_launch(config, _worker)(entry, container, run_directory, errors,
                                                          dict(os.environ))
            except ChildFailedError as err:
                raise UerError(_failure_line(errors, err)) from None
    except SignalException as err:  # SIGINT/SIGTERM: the agent stopped the workers
        stopped = err.sigval
    except RendezvousError as err:
        raise UerError(f"rendezvous at {hw.rdzv_endpoint} did not complete within {hw.rdzv_timeout}s "
                       f"({hw.nnodes} node(s) expected): start the same command on every node, or check "
                       f"hardware.rdzv_endpoint ({type(err).__name__})") from None
    else:
        return results.get(0) if results else None
    # Stop as a run in one process does (uer.app, which exits at once): first the agent's frames go, and with them
    # its queues' semaphores, which the exit would otherwise leave to the resource tracker to warn about.
    gc.collect()
    raise Interrupted(stopped)


def _start_method(entry: Callable) -> str:
    """``forkserver`` where there is one: a server process imports torch, ``entry``'s module and
    :mod:`uer.forkserver_preload` once (for the first run this process launches; later runs reuse it) and each
    worker is a fork of it, instead of an interpreter importing them all again (``spawn``: seconds of CPU per worker, most of a short run's cost).
    The server only imports: it runs nothing on a device before it forks."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.set_forkserver_preload(["torch", entry.__module__, "uer.forkserver_preload"])
    return "forkserver"


def _take_environment(launcher: dict[str, str]) -> None:
    """A forked worker has the server's environment (the launching process's when the server started, perhaps
    an earlier run's) under the variables the agent set for it: make it the launching process's now, under the
    agent's -- the variables it sets that a launching process has too (the agent chose them), and those only
    workers have (RANK, LOCAL_RANK, WORLD_SIZE, ...; a variable the server has and the launching process has
    since dropped stays, as it cannot be told from those)."""
    agent = {key: value for key, value in os.environ.items() if key in AGENT_VARIABLES or key not in launcher}
    os.environ.clear()
    os.environ.update(launcher)
    os.environ.update(agent)


def share_cores(hardware) -> None:
    """Workers inherit ``OMP_NUM_THREADS``: unless it or ``hardware.num_threads`` is set, this node's cores
    shared among its workers.  Each would otherwise take every core (torch's default), and N workers
    would ask N times what the machine has; torchrun sets 1 for the same reason, sharing keeps the cores busy."""
    if "OMP_NUM_THREADS" in os.environ or hardware.num_threads or hardware.nproc_per_node < 2:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // hardware.nproc_per_node)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    log.info("each of the %d workers uses %d intra-op thread(s) (OMP_NUM_THREADS; set hardware.num_threads to choose)",
             hardware.nproc_per_node, threads)


@contextlib.contextmanager
def _torch_reports_to_log_files():
    """While the workers run, torch's launcher logs go to the run's log files only: a failed worker prints its own
    ``error:`` line and this process one naming its rank, so the terminal gets no traceback of the agent's."""
    files = [handler for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)]
    saved = []
    for name in TORCH_LAUNCH_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.handlers))
        logger.propagate, logger.handlers = False, files or [logging.NullHandler()]
    try:
        yield
    finally:
        for logger, propagate, handlers in saved:
            logger.propagate, logger.handlers = propagate, handlers


def _error_file(errors: str, rank: int) -> Path:
    return Path(errors) / f"rank{rank}"


def _traceback_file(errors: str, rank: int) -> Path:
    return Path(errors) / f"rank{rank}.traceback"


def _error_line(errors: str, rank: int) -> str | None:
    """The one line rank ``rank`` left when a UerError stopped it, or None (it met another error)."""
    path = _error_file(errors, rank)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _failure_line(errors: str, err: ChildFailedError) -> str:
    """The run's error line when workers failed: the first failed rank's UerError line; for another error, its
    traceback is printed here (once, whichever ranks met it) and the line names the rank and sums up the others."""
    rank, failure = err.get_first_failure()
    line = _error_line(errors, rank)
    if line is not None:
        return line
    first = _traceback_file(errors, rank)
    line = f"worker rank {rank} failed (exit code {failure.exitcode})"  # ended by a signal: it printed nothing
    if first.is_file():
        print(first.read_text(encoding="utf-8"), end="", file=sys.stderr, flush=True)
        line += "; its error is printed above"
    others = _other_failures(errors, err, rank)
    return f"{line}; also failed: {', '.join(others)}" if others else line


def _other_failures(errors: str, err: ChildFailedError, first: int) -> list[str]:
    """The other ranks that failed, a few words each: those that met the first rank's error (the agent may have
    stopped them meanwhile), and those the agent saw fail otherwise -- not a rank whose collective merely failed
    because the first one left, and was stopped waiting."""
    error = _last_line(_traceback_file(errors, first))
    ranks = {int(path.name[len("rank"):-len(".traceback")]) for path in Path(errors).glob("rank*.traceback")}
    told = []
    for rank in sorted((ranks | set(err.failures)) - {first}):
        last = _last_line(_traceback_file(errors, rank))
        if last is not None and last == error:
            told.append(f"rank {rank} (the same error)")
        elif rank in err.failures:
            told.append(f"rank {rank} ({last or f'exit code {err.failures[rank].exitcode}'})")
    return told


def _last_line(path: Path) -> str | None:
    """The exception line ending the traceback a rank left in ``path``, or None (it left none)."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    return lines[-1] if lines else None


def _stopped(signum, frame):
    """SIGINT/SIGTERM in a worker (the agent passes the run's on): end now, quietly -- the launching process says
    so once.  A checkpoint being written is finished first (:func:`uer.io.atomic.signals_held` holds the signal)."""
    os._exit(128 + signum)


def _worker(entry, container: dict, run_directory: str | None, errors: str, environment: dict[str, str]):
    """Entry point of one worker (a fork of the forkserver, see :func:`_start_method`)."""
    _take_environment(environment)
    return record(_run_worker)(entry, container, run_directory, errors)


def _run_worker(entry, container: dict, run_directory: str | None, errors: str):
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format=f"[%(asctime)s][%(name)s][%(levelname)s][rank {rank}] - %(message)s")
    for left in (_error_file(errors, rank), _traceback_file(errors, rank)):  # by this rank's attempt before a restart
        left.unlink(missing_ok=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stopped)
    if run_directory is not None:
        os.environ[RUN_DIR_ENV] = run_directory
    if rank == 0 and run_directory is not None:
        handler = logging.FileHandler(Path(run_directory) / "main.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logging.getLogger().addHandler(handler)
    try:
        return entry(OmegaConf.create(container))
    except UerError as err:  # the launching process prints the first failed rank's line, once
        _error_file(errors, rank).write_text(str(err), encoding="utf-8")
        sys.exit(2)
    except Exception:
        # Its traceback is for the launching process, which prints the first failed rank's (once, even when
        # every rank meets the same bug).  This may be the rank's collective failing because another rank
        # failed first and left: wait to be ended by the agent, so that the run's error is the rank that caused it.
        _traceback_file(errors, rank).write_text(traceback.format_exc(), encoding="utf-8")
        time.sleep(FAILURE_GRACE)
        raise
