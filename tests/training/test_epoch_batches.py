"""With several processes each takes its slice of the batch one process would take."""

import torch
from torch.utils.data import DistributedSampler

from framework.training.resume import EpochBatches


def test_two_processes_split_each_single_process_batch():
    one = EpochBatches(100, 32, seed=3)
    ranks = [EpochBatches(100, 16, seed=3, sampler=DistributedSampler(range(100), num_replicas=2, rank=r))
             for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 3
    for epoch in (0, 1):
        both = torch.cat([r.order(epoch) for r in ranks], dim=1)  # [3, 32]: rank 0's half, then rank 1's
        assert torch.equal(both, one.order(epoch))
    assert set(ranks[0].order(0).flatten().tolist()).isdisjoint(ranks[1].order(0).flatten().tolist())


def test_one_process_order_is_unchanged():
    """The single-process order is what it was before processes were counted (resumed runs agree)."""
    batches = EpochBatches(10, 4, seed=0)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batches.order(0), perm[:8].view(2, 4))
