"""Multi-process training with PyTorch's own engine: torchrun + torch.distributed + DistributedDataParallel.

`smcvae train` started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment)
joins the process group: NCCL when the rank drives a CUDA device, gloo on CPU. Started plainly it is
one process and nothing here does anything. Each rank samples its own shard of the clips with its own
seed; rank 0 alone validates, logs and writes checkpoints.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

RANK_SEED_STRIDE = 1 << 20     # rank r's data seed = seed + r * stride (rank 0 = single-process stream)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: str = ''          # '' = not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return bool(self.backend)


def launched_by_torchrun() -> bool:
    return 'RANK' in os.environ and 'WORLD_SIZE' in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device if there is one, else CPU; 'cuda' -> cuda:<local_rank>."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(name)
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', local_rank % max(1, torch.cuda.device_count()))
    return device


def setup(device: str = 'auto') -> Dist:
    """Join torchrun's process group (env:// rendezvous) or return the single-process Dist."""
    if not launched_by_torchrun():
        return Dist(device=resolve_device(device))
    rank, world, local = (int(os.environ[k]) for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'))
    dev = resolve_device(device, local)
    backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    if dev.type == 'cuda':
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=dev if dev.type == 'cuda' else None)
    return Dist(rank, world, local, dev, backend)


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DistributedDataParallel around the model when distributed (gradients averaged over ranks)."""
    if not d.enabled:
        return model
    ids = [d.device.index] if d.device.type == 'cuda' else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def shard(items: list, d: Dist) -> list:
    """This rank's share (every world_size-th item); all items when there are fewer than ranks."""
    return list(items) if len(items) < d.world_size else list(items)[d.rank::d.world_size]


def rank_seed(seed: int, d: Dist) -> int:
    return seed + d.rank * RANK_SEED_STRIDE


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when it is true on any rank (e.g. a time limit), so all stop at the same step."""
    if not d.enabled:
        return flag
    t = torch.tensor([float(flag)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_same(name: str, value: int, d: Dist) -> None:
    """Raise on every rank when ranks disagree on `value` (e.g. the resumed step: out_dir not shared)."""
    if not d.enabled:
        return
    t = torch.tensor([value, -value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t[0].item() != -t[1].item():
        raise RuntimeError(f'ranks disagree on {name} (rank {d.rank}: {value}, range {-t[1].item():g}..'
                           f'{t[0].item():g}); every rank must see the same out_dir (a shared filesystem)')


def cleanup(d: Dist) -> None:
    """Leave the group together: every rank waits for the others, then frees its communicator while
    still inside the program. Callers drop their DistributedDataParallel wrapper first (its reducer holds
    the group), so that no communicator is left for interpreter shutdown to tear down."""
    if d.enabled and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()
