"""Pre-training batches built ahead in background processes (``pretrain.data_workers``).

By default stage=pretrain builds each batch (read the rows, draw dynamic masks, pad) in
the training loop, between steps.  On a CPU that is the right thing: the cores are busy
with the model either way.  A GPU, though, waits while the host builds the next batch:
at ``size=base``, batch 32, seq 128 an H100 step takes a few milliseconds, about as long
as one core takes to build a batch (bench/data_pipeline.py measures both).  With
``data_workers=N``, N processes build the next batches while the model trains.

The batches are exactly the in-loop ones, in the same order: a batch is a function of
its indices, its epoch and the seed alone.  The training process keeps the sampler: a
copy of it runs ahead to hand indices to the workers, while the sampler itself advances
only as batches are taken, so a checkpoint stores the position of the batches the model
has seen and a resumed run continues with the right ones.
"""

from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from uer.data.pretrain_dataset import PretrainDataset
from uer.data.sampler import EpochSampler


class _Batches(Dataset):
    """Item ``(indices, epoch)`` -> the collated batch, as numpy arrays.

    Arrays travel to the training process pickled, a copy of a few hundred kilobytes at most;
    tensors would travel as shared-memory files, whose set-up costs the receiving process more
    than the copy for batches this small.
    """

    def __init__(self, dataset: PretrainDataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, item: tuple[np.ndarray, int]) -> dict[str, np.ndarray]:
        indices, epoch = item
        return {name: value.numpy() for name, value in self.dataset.batch(indices, epoch, self.seed).items()}


def _as_is(batch):
    return batch


class _Ahead(Sampler):
    """The sampler's future ``(indices, epoch)``, drawn from a copy of it (endless: epochs follow each other)."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = copy.deepcopy(sampler)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        while True:
            yield self.sampler.next_indices()


class BatchSource:
    """``next_batch()`` for the Trainer: built in this process (``workers=0``) or by ``workers`` processes ahead."""

    def __init__(self, dataset: PretrainDataset, sampler: EpochSampler, seed: int, *, workers: int = 0,
                 pin_memory: bool = False):
        self.dataset, self.sampler, self.seed = dataset, sampler, seed
        self._ahead = None
        if workers > 0:
            # The loader draws its workers' base seed from ``generator``; without one it would take a draw
            # from the global torch RNG and change the dropout masks of the run.
            loader = DataLoader(_Batches(dataset, seed), sampler=_Ahead(sampler), batch_size=None, num_workers=workers,
                                collate_fn=_as_is, prefetch_factor=2, generator=torch.Generator().manual_seed(seed))
            self._ahead = iter(loader)
        self.pin_memory = pin_memory

    def next_batch(self) -> dict[str, torch.Tensor]:
        indices, epoch = self.sampler.next_indices()
        if self._ahead is None:
            return self.dataset.batch(indices, epoch, self.seed)
        batch = {name: torch.from_numpy(value) for name, value in next(self._ahead).items()}
        # pinned host memory lets the copy to the GPU run asynchronously (Trainer: non_blocking=True)
        return {name: value.pin_memory() for name, value in batch.items()} if self.pin_memory else batch

    def close(self) -> None:
        """Stop the workers (dropping the loader's iterator shuts them down)."""
        self._ahead = None
