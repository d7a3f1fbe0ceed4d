"""Which instances go into which batch, as a resumable position.

Each epoch visits the instances in a permutation drawn from ``(seed, epoch)``; rank ``r``
of ``world_size`` processes takes its slice of every global batch, so ranks see distinct
instances.  The position ``(epoch, cursor)`` is all the state there is: saving it in a
checkpoint and restoring it replays exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import numpy as np

from uer.errors import UerError


class EpochSampler:
    def __init__(self, num_instances: int, batch_size: int, seed: int, *, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, source: str = "dataset"):
        global_batch = batch_size * world_size
        if num_instances < global_batch:
            raise UerError(
                f"{source} has {num_instances} instances, fewer than one batch of {global_batch} "
                f"(batch_size={batch_size} x {world_size} processes); lower the batch size or use a larger corpus"
            )
        self.num_instances = num_instances
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.cursor = 0  # global batches already taken in this epoch
        self._order = None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_instances // (self.batch_size * self.world_size)

    def _epoch_order(self) -> np.ndarray:
        if self._order is None:
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_instances)
            else:
                self._order = np.arange(self.num_instances)
        return self._order

    def next_indices(self) -> tuple[np.ndarray, int]:
        """The next batch's instance indices for this rank, and the epoch they belong to."""
        if self.cursor >= self.batches_per_epoch:
            self.epoch += 1
            self.cursor = 0
            self._order = None
        start = (self.cursor * self.world_size + self.rank) * self.batch_size
        indices = self._epoch_order()[start:start + self.batch_size]
        self.cursor += 1
        return indices, self.epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "num_instances": self.num_instances}

    def load_state_dict(self, state: dict) -> None:
        if state["num_instances"] != self.num_instances:
            raise UerError(
                f"the checkpoint was trained on a dataset of {state['num_instances']} instances, "
                f"this one has {self.num_instances}; resume with the same dataset_path"
            )
        self.epoch, self.cursor, self._order = state["epoch"], state["cursor"], None
