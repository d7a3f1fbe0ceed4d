"""What the FSDP test files share (see tests/README.md)."""

import pytest
import torch.distributed as dist


@pytest.fixture
def one_rank_group(tmp_path):
    """A process group of this process alone: FSDP's sharded parameters and hooks without starting workers."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
