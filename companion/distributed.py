"""Data-parallel training with ``torch.distributed``: several processes, one model copy each, one batch between them.

Each of the W processes (ranks) holds the same model and reads its own share of every batch (a
``DistributedSampler`` deals the shuffled examples out). ``DistributedDataParallel`` (DDP) all-reduces the gradients
during ``backward``, averaging them over the ranks, so every copy takes the same optimiser step, the step that one
process would take on the combined batch (the mean of W means over equal shares is the mean over the whole batch).

Two ways to start the processes, one training function (:func:`train`) for both:

- ``torchrun --standalone --nproc_per_node=W -m companion.distributed`` (:func:`main`): torchrun starts W processes
  and tells each its rank through the environment; on GPUs each rank takes one GPU and the NCCL backend, on the CPU
  the gloo backend.
- :func:`run_data_parallel`: ``torch.multiprocessing.spawn`` on this machine, gloo over a free localhost port; the
  unit tests use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from companion.data.batching import next_token_pairs
from companion.data.corpora import pydoc_text
from companion.language_models import RNNLanguageModel, next_token_loss


@dataclass(frozen=True)
class DataParallelConfig:
    """A small character language model (bytes of the Python reference's help topics) trained with SGD.

    ``batch_size`` is the combined batch: each of W ranks reads ``batch_size // W`` windows per step, so the
    optimiser sees the same batch whatever W is (it must divide ``batch_size``).
    """

    steps: int = 8
    batch_size: int = 32
    length: int = 32
    hidden_size: int = 64
    embedding_dim: int = 16
    lr: float = 0.5
    seed: int = 0
    corpus_chars: int = 40_000


def language_model_data(config: DataParallelConfig) -> TensorDataset:
    """Windows of the corpus' bytes: inputs and targets (N, length) ids in [0, 256), N a multiple of the batch."""
    ids = torch.tensor(list(pydoc_text(config.corpus_chars).encode("utf-8")), dtype=torch.long)  # (time,)
    inputs, targets = next_token_pairs(ids, config.length)  # (N, length) each
    usable = len(inputs) // config.batch_size * config.batch_size
    return TensorDataset(inputs[:usable], targets[:usable])


def build_model(config: DataParallelConfig) -> RNNLanguageModel:
    """The model, from ``config.seed``: every rank builds the same weights (DDP also broadcasts rank 0's)."""
    torch.manual_seed(config.seed)
    return RNNLanguageModel(256, config.hidden_size, embedding_dim=config.embedding_dim)


# rank_loader, train and main are shown on the scaling-out page: keep their lines within its 78-character code column.
def rank_loader(
    dataset: TensorDataset,
    config: DataParallelConfig,
    world_size: int,
    rank: int,
) -> DataLoader:
    """This rank's share of every batch: ``batch_size // world_size`` windows.

    A DistributedSampler deals them out. All ranks shuffle with the same seed
    and epoch, so their shares never overlap and together make the batch that
    one process (``world_size=1``) would read.
    """
    if config.batch_size % world_size:
        multiple = f"a multiple of world_size={world_size}"
        raise ValueError(f"batch_size={config.batch_size} must be {multiple}")
    sampler = DistributedSampler(
        dataset,
        num_replicas=world_size,
        rank=rank,
        shuffle=True,
        seed=config.seed,
    )
    share = config.batch_size // world_size
    return DataLoader(
        dataset,
        batch_size=share,
        sampler=sampler,
        drop_last=True,
    )


def train(
    config: DataParallelConfig,
    world_size: int = 1,
    rank: int = 0,
    device: str = "cpu",
) -> nn.Module:
    """The loop every rank runs; returns the model, unwrapped from DDP.

    With ``world_size > 1`` the process group must be initialised first
    (:func:`main`, :func:`run_data_parallel`).
    """
    model = build_model(config).to(device)
    if world_size > 1:
        # Wrapping broadcasts rank 0's weights and hooks an all-reduce of the
        # gradients into backward().
        device_ids = [device] if device != "cpu" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    data = language_model_data(config)
    loader = rank_loader(data, config, world_size, rank)
    step, epoch = 0, 0
    while step < config.steps:
        # A new shuffle each epoch, the same on every rank.
        loader.sampler.set_epoch(epoch)
        for inputs, targets in loader:
            batch = (inputs.to(device), targets.to(device))
            loss = next_token_loss(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == config.steps:
                break
        epoch += 1
    wrapped = isinstance(model, DistributedDataParallel)
    return model.module if wrapped else model


def max_weight_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same names and shapes."""
    if first.keys() != second.keys():
        raise ValueError(f"state dicts hold different parameters: {sorted(first)} against {sorted(second)}")
    return max((first[name].cpu() - second[name].cpu()).abs().max().item() for name in first)


def free_port() -> int:
    """A TCP port on localhost that no program is listening on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawned_rank(rank: int, world_size: int, port: int, config: DataParallelConfig, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        model = train(config, world_size, rank)
        torch.save(model.state_dict(), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_data_parallel(config: DataParallelConfig, world_size: int = 2) -> list[dict[str, torch.Tensor]]:
    """Train with ``world_size`` CPU processes (gloo over localhost) and return each rank's final state dict."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_spawned_rank, args=(world_size, port, config, folder), nprocs=world_size, join=True)
        return [torch.load(Path(folder) / f"rank{rank}.pt") for rank in range(world_size)]


def main(argv: list[str] | None = None) -> None:
    """The script torchrun starts on every rank: train with DDP, then rank 0
    trains one process on the combined batch and prints how far the two sets
    of weights are apart.

    NCCL on one GPU per rank when CUDA is there, gloo on the CPU otherwise.
    Options: ``--steps``, ``--batch-size``.
    """
    defaults = DataParallelConfig()
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    arguments = parser.parse_args(argv)
    config = dataclasses.replace(
        defaults,
        steps=arguments.steps,
        batch_size=arguments.batch_size,
    )
    # torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
    # for each process it starts.
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    else:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device != "cpu" else "gloo")
    try:
        model = train(config, world_size, rank, device)
        if rank == 0:
            alone = train(config, 1, 0, device)
            difference = max_weight_difference(
                model.state_dict(),
                alone.state_dict(),
            )
            ranks = f"{world_size} ranks ({dist.get_backend()})"
            steps = f"{config.steps} steps of {config.batch_size} windows"
            print(f"{ranks}, {steps}")
            gap = f"one process on the combined batch: {difference:.1e}"
            print(f"largest weight difference from {gap}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
