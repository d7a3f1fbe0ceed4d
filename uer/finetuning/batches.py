"""The training batches of one fine-tuning file: a fresh permutation every epoch, resumable."""

from __future__ import annotations

import numpy as np

from uer.data.sampler import EpochSampler
from uer.distributed import DistEnv
from uer.tasks import Task


class SampledBatches:
    """Collated batches of ``examples``, each epoch a fresh permutation drawn from ``seed``.

    An epoch is ``len(examples) // batch_size`` batches.  With ``length_bucketing`` the
    sampler groups rows of similar length (``task.length``) into batches, visited in
    random order (:mod:`uer.data.sampler`): a batch is padded to its longest row, so this
    cuts the padding that a few long rows otherwise add to most batches.
    """

    def __init__(self, task: Task, examples: list, batch_size: int, seed: int, *, source: str,
                 length_bucketing: bool = False, env: DistEnv = DistEnv()):
        self.task = task
        self.examples = examples
        lengths = np.array([task.length(example) for example in examples]) if length_bucketing else None
        self.sampler = EpochSampler(len(examples), batch_size, seed, source=source, lengths=lengths,
                                    rank=env.rank, world_size=env.world_size)
        self.batches_per_epoch = self.sampler.batches_per_epoch

    def next_batch(self) -> dict:
        indices, _ = self.sampler.next_indices()
        return self.task.collate([self.examples[i] for i in indices.tolist()])

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
