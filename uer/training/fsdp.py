"""``hardware.strategy=fsdp``: the model's parameters, gradients and optimizer state sharded across the ranks
with torch's FSDP2 (``torch.distributed.fsdp.fully_shard``), and its checkpoints.

Each transformer layer of an encoder's or decoder's layer list is one FSDP unit (gathered for its forward and
backward, freed after), and the root module holds the rest: embeddings, the target's layers, and so a word
embedding tied to an output layer stays one parameter of one unit.  ``hardware.precision=bf16`` computes in
bf16 (``MixedPrecisionPolicy``: bf16 parameters in forward and backward) and reduces gradients in fp32; the
sharded fp32 parameters are what the optimizer updates.  The optimizer, built on the sharded parameters, holds
only this rank's shard of its state.

A checkpoint of an FSDP run is the usual single file (``step_N.pt``: the full weights, gathered to rank 0,
so every stage and tool reads it as it is) and, beside it, a directory ``step_N.optim`` of the optimizer
state written by every rank with ``torch.distributed.checkpoint`` (one file per rank and its metadata).  The
directory is written under a temporary name and renamed once every rank is done, before ``step_N.pt`` is
written: a ``step_N.pt`` exists only with its complete shards.  ``step_N.pt`` records each shard file's
sha256 (inside its own checksum); resuming checks them as it checks ``step_N.pt`` itself, and continues from
the newest checkpoint whose shards pass.  Fine-tuning's ``best.pt`` and ``last.pt`` are such single files
too, ``last.pt``'s shards in a directory of their own per step (:mod:`uer.finetuning.checkpoints`).

A sharded model is scored unsharded (fine-tuning's dev and test evaluations): :func:`shard` keeps a copy of
the model's modules whose parameters take no memory (the meta device), and :func:`unsharded` fills a copy of
it with the full weights, so a model whose forward is no collective scores the data (a generation, whose
steps depend on what is generated, could otherwise leave the ranks in different collectives).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import sys
import weakref
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from uer import distributed
from uer.errors import UerError
from uer.io.atomic import reporting_write_errors, signals_held
from uer.models.decoders import TransformerDecoderLayer
from uer.models.layers import TransformerLayer

log = logging.getLogger("uer.fsdp")

STRATEGIES = ("ddp", "fsdp")
LAYERS = (TransformerLayer, TransformerDecoderLayer)  # the FSDP units, where they sit in a layer list
SHARDS_SUFFIX = ".optim"
_HASH_CHUNK = 1 << 20
# Each sharded model's modules as they were before sharding, their parameters on the meta device (see unsharded).
_STRUCTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_sharded(model: nn.Module) -> bool:
    """Whether ``fully_shard`` sharded ``model``: never while torch's FSDP is not imported, which keeps that
    import (half a second: DTensor, sympy) out of every run that does not shard."""
    module = sys.modules.get("torch.distributed.fsdp")
    return module is not None and isinstance(model, module.FSDPModule)


def check_strategy(cfg: DictConfig) -> None:
    """Before any worker starts: ``hardware.strategy`` is known, and fsdp is asked only where it is supported."""
    hardware = cfg.get("hardware")
    if hardware is None or cfg.stage not in distributed.DISTRIBUTED_STAGES:
        return
    if hardware.strategy not in STRATEGIES:
        raise UerError(f"hardware.strategy={hardware.strategy} is not known; choose ddp or fsdp")
    if hardware.strategy != "fsdp":
        return
    processes = distributed.world_size(cfg)
    refusals = [
        (processes < 2, f"{processes} process shards nothing (hardware.nproc_per_node x hardware.nnodes = "
                        f"{processes}); set hardware.nproc_per_node=2 or more, or hardware.strategy=ddp"),
        (hardware.precision == "fp16", "hardware.precision=fp16: its grad scaler is not wired to sharded "
                                       "gradients here; use hardware.precision=bf16"),
        (hardware.compile, "hardware.compile=true: torch.compile of the sharded model is not supported here; "
                           "set hardware.compile=false"),
    ]
    for refused, why in refusals:
        if refused:
            raise UerError(f"hardware.strategy=fsdp with {why}")


def sharded(hardware: DictConfig, env: distributed.DistEnv) -> bool:
    """Whether this process of the run trains an FSDP-sharded model."""
    return hardware.strategy == "fsdp" and env.active


def mixed_precision(precision: str) -> MixedPrecisionPolicy:
    """The FSDP policy of ``hardware.precision``: bf16 computes in bf16 and reduces gradients in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy  # lazy: see is_sharded

    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """Shard ``model`` in place across every rank (each layer of a layer list, then the root); the optimizer
    must be built after, on the sharded parameters."""
    from torch.distributed.device_mesh import init_device_mesh  # lazy: see is_sharded
    from torch.distributed.fsdp import fully_shard  # lazy: see is_sharded

    _STRUCTURES[model] = structure(model)
    mesh = init_device_mesh(device.type, (distributed.current_rank_and_size()[1],))
    policy = mixed_precision(precision)
    units = [module for list_ in model.modules() if isinstance(list_, nn.ModuleList)
             for module in list_ if isinstance(module, LAYERS)]
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    log.info("fsdp: %d layer unit(s) and the root sharded across %d ranks (%s)", len(units), mesh.size(),
             "bf16 compute, fp32 gradient reduction" if precision == "bf16" else "fp32")
    return model


def full_model_state(model: nn.Module, *, every_rank: bool = False) -> dict:
    """The full weights of ``model`` on the CPU, gathered to rank 0 (the others get an empty dict), or with
    ``every_rank`` on every rank, on the device; every rank must call it.  A model that is not sharded gives
    its own state dict."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # lazy: sharded only

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not every_rank))


def structure(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules whose parameters are on the meta device (no memory; a tied parameter
    stays one), its buffers copied."""
    memo = {id(parameter): nn.Parameter(torch.empty_like(parameter, device="meta"),
                                        requires_grad=parameter.requires_grad)
            for parameter in model.parameters()}
    return copy.deepcopy(model, memo)


def unsharded(model: nn.Module, state: dict) -> nn.Module:
    """A model to score holding the full weights ``state``: ``model`` itself, loaded with them, when it is not
    sharded; for a sharded ``model``, a new copy of its modules as they were before :func:`shard` whose
    parameters are the tensors of ``state`` (no collective in its forward)."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return model
    filled = copy.deepcopy(_STRUCTURES[model])
    filled.load_state_dict(state, assign=True)
    return filled


def shards_path(checkpoint: Path) -> Path:
    """The optimizer shards' directory of ``step_N.pt``: ``step_N.optim``."""
    return checkpoint.with_suffix(SHARDS_SUFFIX)


def save_optimizer(model: nn.Module, optimizer, checkpoint: Path, shards: Path | None = None) -> dict | None:
    """Write this rank's shard of ``optimizer``'s state into ``checkpoint``'s shards directory (``shards``,
    beside it; by default :func:`shards_path`) (every rank must call it); rank 0 gets what ``step_N.pt``
    records of them (the directory's name and each file's sha256)."""
    final = shards or shards_path(checkpoint)
    temporary = final.with_name(f".{final.name}.tmp")
    is_main = distributed.current_rank_and_size()[0] == 0
    if is_main:
        shutil.rmtree(temporary, ignore_errors=True)  # a crashed save's
    distributed.barrier()
    import torch.distributed.checkpoint as dcp  # lazy: see is_sharded
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict  # lazy: see is_sharded

    state = get_optimizer_state_dict(model, optimizer)
    with signals_held(), reporting_write_errors(final):
        dcp.save({"optimizer": state}, checkpoint_id=temporary)
        distributed.barrier()
        if not is_main:
            return None
        digests = _digests(temporary)
        shutil.rmtree(final, ignore_errors=True)  # an earlier run's, whose step_N.pt is gone
        os.replace(temporary, final)
    return {"shards": final.name, "sha256": digests}


def holds_shards(record) -> bool:
    """Whether a checkpoint's trainer ``optimizer`` entry is a record of shards (:func:`save_optimizer`)."""
    return isinstance(record, dict) and "shards" in record


def check_shards(checkpoint: Path, record) -> None:
    """When ``checkpoint``'s optimizer state is sharded (``record``, its trainer's ``optimizer``), a UerError
    unless the shards are all there with the sha256 it recorded (resuming skips such a checkpoint)."""
    if not holds_shards(record):
        return
    directory = checkpoint.parent / record["shards"]
    if not directory.is_dir():
        raise UerError(f"its optimizer shards {directory} are missing")
    found = _digests(directory)
    damaged = sorted(name for name in set(found) | set(record["sha256"])
                     if found.get(name) != record["sha256"].get(name))
    if damaged:
        raise UerError(f"its optimizer shards {directory} do not match the checksums it recorded "
                       f"({', '.join(damaged)} missing or changed since)")


def check_resumed_strategy(checkpoint: Path, record, sharded: bool) -> None:
    """A UerError unless ``checkpoint``, whose trainer ``optimizer`` entry is ``record``, was written under the
    strategy of the run resuming it (``sharded``: hardware.strategy=fsdp)."""
    if sharded and not holds_shards(record):
        raise UerError(f"{checkpoint} was written by a run without hardware.strategy=fsdp (its optimizer state is "
                       "one file); resume it with hardware.strategy=ddp")
    if not sharded and holds_shards(record):
        raise UerError(f"{checkpoint} was written by a run with hardware.strategy=fsdp (its optimizer state is "
                       "sharded); resume it with hardware.strategy=fsdp")


def load_optimizer(model: nn.Module, optimizer, checkpoint: Path, record) -> None:
    """Restore ``optimizer``'s shard on every rank from ``checkpoint``'s shards directory (checked by
    :func:`check_shards` when the checkpoint was chosen, and by :func:`check_resumed_strategy`)."""
    import torch.distributed.checkpoint as dcp  # lazy: see is_sharded
    from torch.distributed.checkpoint.state_dict import (  # lazy: see is_sharded
        get_optimizer_state_dict, set_optimizer_state_dict)

    state = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=checkpoint.parent / record["shards"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])


def remove_shards(checkpoint: Path) -> None:
    """Delete ``checkpoint``'s shards directory with it (keep_checkpoints), if it has one."""
    shutil.rmtree(shards_path(checkpoint), ignore_errors=True)


def _digests(directory: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(directory.iterdir()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                digest.update(chunk)
        digests[path.name] = digest.hexdigest()
    return digests
