"""Data-parallel training over several processes (GPUs, nodes) with torch.distributed.

Role in the flow: the trainer's multi-device path. A run started in W processes (a Slurm job with
``tasks_per_node`` = GPUs, launched by submitit, or ``torchrun``) trains one model: every process
sees the same global batch order (same seeds), takes its share of each global batch, computes the
plugin's losses on it, and before every optimizer step the gradients of that optimizer group are
averaged over the processes weighted by each share's size — the gradient of the global batch's mean
loss, as on one device. Evaluation is sharded and its counts summed. Rank 0 alone writes checkpoints,
records and W&B; the other ranks' parameters are identical by construction, and their buffers (BN
running statistics) are replaced by rank 0's after every epoch, as DDP's ``broadcast_buffers`` does.

Why not ``torch.nn.parallel.DistributedDataParallel``: plugins call the student's own methods
(``forward_taps``, partial traversals for hint stages, several optimizer groups stepped alternately
within one step); wrapping the student would hide those and tie one backward to one all-reduce. One
flat all-reduce per ``trainer.optimize`` call keeps every scheme (peers, generators, discriminators)
working unchanged. Batch-norm statistics stay per process (SyncBatchNorm needs CUDA; set
``sync_bn: true`` to convert on GPUs), so a BN model on W processes matches a one-device run only up
to that; a model without batch statistics matches it up to floating-point summation order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo()


def from_env() -> DistInfo:
    """The process's place in a distributed run, from ``torchrun`` / submitit variables (or a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device_type: str) -> DistInfo:
    """Join the process group described by the environment (no-op for one process)."""
    info = from_env()
    if info.active and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def slurm_export() -> None:
    """Inside a Slurm task started by submitit with several tasks: export MASTER_ADDR/PORT, RANK,
    WORLD_SIZE, LOCAL_RANK (submitit's own helper) so that :func:`init` finds them."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "WORLD_SIZE" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def shard(batch, info: DistInfo):
    """This rank's contiguous share of every tensor of a global batch (shares differ by at most one)."""
    if batch is None or not info.active:
        return batch
    return tuple(torch.tensor_split(t, info.world)[info.rank] for t in batch)


def allreduce_grads(params: Sequence[torch.nn.Parameter], local_n: int, info: DistInfo) -> None:
    """Replace each gradient by Σ_r n_r·g_r / Σ_r n_r over the ranks (in one flat all-reduce); a
    parameter without a gradient on every rank keeps none."""
    if not info.active:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    ref = params[0]
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() * float(local_n)
            for p in params]
    flags = torch.tensor([1.0 if p.grad is not None else 0.0 for p in params] + [float(local_n)],
                         device=ref.device)
    buf = torch.cat(flat + [flags])
    dist.all_reduce(buf)
    total = buf[-1]
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if buf[-1 - len(params) + i] > 0:
            g = (buf[offset:offset + n] / total).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)
        offset += n


def sum_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.active:
        dist.all_reduce(t)
    return t


def broadcast_buffers(modules: Iterable[torch.nn.Module], info: DistInfo) -> None:
    """Every rank takes rank 0's buffers (BN running statistics, memory banks …)."""
    if not info.active:
        return
    for m in modules:
        for b in m.buffers():
            dist.broadcast(b, 0)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def sharded_sampler(n: int, batch_size: int, info: DistInfo, generator: torch.Generator) -> "ShardedBatchSampler":
    return ShardedBatchSampler(n, batch_size, info, generator)


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Global batches of a seeded permutation, of which this rank yields its share: a DataLoader with it
    loads only this rank's images, and the union over ranks is exactly the one-process batch."""

    def __init__(self, n: int, batch_size: int, info: DistInfo, generator: torch.Generator):
        self.n, self.batch_size, self.info, self.generator = n, batch_size, info, generator

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        for b in order.split(self.batch_size):
            yield torch.tensor_split(b, self.info.world)[self.info.rank].tolist()


def shard_indices(n: int, info: DistInfo) -> List[int]:
    """Evaluation: this rank's samples (every W-th one)."""
    return list(range(info.rank, n, info.world))


def world_of(info: Optional[DistInfo]) -> DistInfo:
    return info or SINGLE
