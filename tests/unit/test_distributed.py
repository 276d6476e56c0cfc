"""Data-parallel training really run: two CPU processes on the gloo backend take the same steps as one process on the
combined batch, and the sampler deals every rank a disjoint share of that batch."""

import dataclasses

import pytest
import torch

from companion import distributed
from companion.distributed import DataParallelConfig

CONFIG = DataParallelConfig(steps=6, batch_size=16, corpus_chars=12_000)


def test_two_gloo_processes_give_the_weights_of_one_process_on_the_combined_batch():
    ranks = distributed.run_data_parallel(CONFIG, world_size=2)
    alone = distributed.train(CONFIG).state_dict()
    start = distributed.build_model(CONFIG).state_dict()
    # The copies stay in step, and they took the combined batch's steps (up to float32 summation order).
    assert distributed.max_weight_difference(ranks[0], ranks[1]) == 0
    assert distributed.max_weight_difference(ranks[0], alone) < 1e-5
    # Not vacuous: training moved the weights far more than the tolerance.
    assert distributed.max_weight_difference(alone, start) > 1e-2


def test_the_ranks_shares_are_disjoint_and_make_the_combined_batch():
    dataset = distributed.language_model_data(CONFIG)
    combined = next(iter(distributed.rank_loader(dataset, CONFIG, 1, 0)))[0]
    shares = [next(iter(distributed.rank_loader(dataset, CONFIG, 2, rank)))[0] for rank in (0, 1)]
    assert [len(share) for share in shares] == [CONFIG.batch_size // 2] * 2
    rows = lambda batch: sorted(map(tuple, batch.tolist()))  # noqa: E731
    assert rows(torch.cat(shares)) == rows(combined)
    assert not set(rows(shares[0])) & set(rows(shares[1]))


def test_a_batch_that_the_ranks_cannot_share_equally_is_refused():
    config = dataclasses.replace(CONFIG, batch_size=15)
    with pytest.raises(ValueError, match="batch_size=15 must be a multiple of world_size=2"):
        distributed.rank_loader(distributed.language_model_data(config), config, 2, 0)


def test_state_dicts_with_different_parameters_are_refused():
    with pytest.raises(ValueError, match="different parameters"):
        distributed.max_weight_difference({"a": torch.zeros(1)}, {"b": torch.zeros(1)})


def test_free_port_is_a_port_number():
    assert 1024 <= distributed.free_port() <= 65535
