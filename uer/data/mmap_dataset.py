"""Flat arrays as ``.npy`` files: written shard by shard, merged in order, memory-mapped to read.

Variable-length records are stored as one flat ``values`` array plus an int64 ``offsets``
array of n+1 entries (record i is ``values[offsets[i]:offsets[i+1]]``).  Shards store
per-record counts instead; :func:`merge_shards` turns them into offsets while streaming
the shards into the final files, one shard at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uer.errors import UerError, reason


def save_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write 1-d ``arrays`` as ``NAME.npy`` (through Python's file writes: a full disk is an OSError naming
    ENOSPC, where numpy's own writer reports only a short write)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in arrays.items():
        _write(directory / f"{name}.npy", values.dtype, len(values), [values])


def merge_shards(shards: list[Path], out_dir: Path, flat: list[str], counts: dict[str, str]) -> dict[str, dict]:
    """Concatenate the ``flat`` arrays of all shards, in order, and turn each counts array
    (key) into an offsets array (value).  Returns ``{name: {"dtype", "shape"}}`` of the output."""
    written = {}
    for name in flat:
        paths = [shard / f"{name}.npy" for shard in shards]
        written[name] = _write(out_dir / f"{name}.npy", _header(paths[0])[1], sum(_header(p)[0] for p in paths),
                               map(_load, paths))
    for count_name, offsets_name in counts.items():
        paths = [shard / f"{count_name}.npy" for shard in shards]
        written[offsets_name] = _write(out_dir / f"{offsets_name}.npy", np.dtype(np.int64),
                                       1 + sum(_header(p)[0] for p in paths), _offsets(map(_load, paths)))
    return written


def open_arrays(directory: Path, expected: dict[str, dict], fix: str) -> dict[str, np.ndarray]:
    """Memory-map every array named in ``expected``, checking dtype and shape."""
    arrays = {}
    for name, spec in expected.items():
        path = directory / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise UerError(f"{path} is missing; {fix}") from None
        except (ValueError, OSError) as e:
            raise UerError(f"{path} is not a readable array ({reason(e)}); {fix}") from None
        if array.dtype.str != spec["dtype"] or list(array.shape) != list(spec["shape"]):
            raise UerError(
                f"{path} holds {array.dtype.str}{list(array.shape)} but meta.json says "
                f"{spec['dtype']}{list(spec['shape'])}; {fix}"
            )
        arrays[name] = array
    return arrays


def _load(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _header(path: Path) -> tuple[int, np.dtype]:
    """Length and dtype of a 1-d ``.npy`` file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape[0], dtype


def _offsets(count_parts):
    yield np.zeros(1, dtype=np.int64)
    base = 0
    for counts in count_parts:
        offsets = base + np.cumsum(counts, dtype=np.int64)
        if len(offsets):
            base = int(offsets[-1])
        yield offsets


def _write(path: Path, dtype: np.dtype, length: int, parts) -> dict:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for part in parts:
            f.write(np.ascontiguousarray(part, dtype=dtype).data)
    return {"dtype": dtype.str, "shape": [length]}
