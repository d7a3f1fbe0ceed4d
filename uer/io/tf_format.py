"""Google TensorFlow BERT checkpoints (TF1 variable names) <-> UER names.

The name table is :func:`uer.io.hf_format.bert_params` (``Param.tf``); this module adds
the TensorFlow file handling.  TensorFlow is an optional dependency (``pip install
"uer[tf]"``), imported only when a TF checkpoint is read or written.

* A checkpoint is a *prefix* (``.../bert_model.ckpt``): the files are
  ``PREFIX.index`` and ``PREFIX.data-00000-of-00001``.  Reading accepts the prefix, either
  of those file names, or a directory (its latest checkpoint); it uses
  ``tf.train.load_checkpoint``.  Variables that are not model weights (``global_step``,
  optimizer slots ``*/adam_m``, ``*/adam_v``) are ignored.
* Writing saves every tensor under Google's variable name with TF's ``SaveV2`` op, the
  format ``tf.compat.v1.train.Saver`` writes and ``tf.train.init_from_checkpoint`` reads.
  The files are written under a temporary prefix beside the target and renamed into
  place (data first, index last), so a failed write leaves no checkpoint.
* Dense ``kernel``s are ``(in, out)``, transposed relative to torch ``Linear.weight``;
  ``cls/seq_relationship/output_weights`` is already ``(2, H)``.  The MLM output matrix is
  the word embedding (no variable of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from uer.errors import UerError
from uer.io.atomic import reporting_write_errors
from uer.io.hf_format import StateDict, from_uer, to_uer

DATA_SUFFIX = re.compile(r"\.data-\d+-of-\d+$")
NOT_WEIGHTS = re.compile(r"(^|/)(global_step|adam_[mv]|Adam(_1)?|beta[12]_power|loss_scale|good_steps|"
                         r"current_loss_scale)$")


def tensorflow():
    """The ``tensorflow`` module, or a :class:`UerError` saying how to install it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf  # lazy: optional (the tf extra), and seconds to import
    except ImportError:
        raise UerError("TensorFlow checkpoints need tensorflow, which is not installed; "
                       "pip install 'uer[tf]' (or tensorflow-cpu)") from None
    return tf


def checkpoint_prefix(path) -> Optional[str]:
    """The checkpoint prefix ``path`` names (prefix, ``.index``/``.data-*`` file or directory), or None."""
    path = Path(path)
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        state = path / "checkpoint"
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(errors="replace"), re.M)
            if match and Path(path / (match.group(1) + ".index")).is_file():
                return str(path / match.group(1))
        return str(indexes[-1])[: -len(".index")] if len(indexes) == 1 else None
    name = str(path)
    if name.endswith(".index"):
        name = name[: -len(".index")]
    name = DATA_SUFFIX.sub("", name)
    return name if Path(name + ".index").is_file() else None


def load_tf_checkpoint(path) -> tuple[dict[str, np.ndarray], str]:
    """(variable name -> array, prefix) of the checkpoint at ``path``; optimizer/step variables left out."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise UerError(f"{path} is not a TensorFlow checkpoint (no {path}.index); "
                       "give the checkpoint prefix, e.g. .../bert_model.ckpt")
    tf = tensorflow()
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
        arrays = {name: np.asarray(reader.get_tensor(name)) for name in names if not NOT_WEIGHTS.search(name)}
    except Exception as err:  # DataLossError, NotFoundError, ... for broken files
        message = str(err).strip()
        reason = message.splitlines()[0] if message else type(err).__name__
        raise UerError(f"TensorFlow checkpoint {prefix} cannot be read ({reason[:200]}); it is corrupt or incomplete") \
            from None
    return arrays, prefix


def tf_to_uer(arrays: dict[str, np.ndarray], source: str) -> tuple[StateDict, list[str]]:
    """Google's variables -> (UER state dict, unused variable names)."""

    def fetch(name: str) -> torch.Tensor:
        array = arrays[name]
        if array.dtype not in (np.float16, np.float32, np.float64):
            array = array.astype(np.float32)  # bfloat16 (ml_dtypes) and the like
        return torch.from_numpy(np.array(array, copy=True))

    return to_uer(arrays, "tf", source, fetch=fetch)


def uer_to_tf(uer: StateDict, source: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """UER state dict -> (Google variable name -> array, dropped UER keys)."""
    tensors, dropped = from_uer(uer, "tf", source)
    return {name: tensor.numpy() for name, tensor in tensors.items()}, dropped


def save_tf_checkpoint(arrays: dict[str, np.ndarray], prefix) -> None:
    """Write ``arrays`` as the TF checkpoint ``prefix`` (``.index`` + ``.data-00000-of-00001``), atomically."""
    tf = tensorflow()
    prefix = Path(prefix)
    with reporting_write_errors(prefix):
        prefix.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.", suffix=".tmp", dir=prefix.parent))
        _save_in(tf, arrays, prefix, tmp_dir)


def _save_in(tf, arrays: dict[str, np.ndarray], prefix: Path, tmp_dir: Path) -> None:
    """Write the checkpoint into ``tmp_dir``, then move its files beside ``prefix``."""
    try:
        names = sorted(arrays)
        tf.raw_ops.SaveV2(prefix=str(tmp_dir / prefix.name), tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(arrays[name]) for name in names])
        written = sorted(tmp_dir.iterdir(), key=lambda f: f.name.endswith(".index"))  # index last
        stale = {old.name for old in prefix.parent.glob(f"{prefix.name}.data-*-of-*")} - {f.name for f in written}
        for file in written:
            os.replace(file, prefix.parent / file.name)
        for name in stale:  # shards of an earlier checkpoint of the same name
            (prefix.parent / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
