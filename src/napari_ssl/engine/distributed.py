"""torchrun / DistributedDataParallel: process-group setup, rank queries and reductions.

Under ``torchrun --nproc_per_node=N -m napari_ssl ...`` every process trains a replica on its own
random patches (each rank's sampler has its own seed and draws 1/N of the epoch's patches, the
patch-sampling counterpart of a DistributedSampler); DDP averages the gradients; rank 0 writes
all files. CUDA uses NCCL, CPU uses gloo (which the tests run).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from napari_ssl.engine.device import resolve_device


def local_rank() -> int | None:
    """This process's local rank under torchrun, or None when not launched by it."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank (from torchrun's environment before the group is joined)."""
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main_process() -> bool:
    return rank() == 0


def init(device: torch.device) -> None:
    """Join the process group torchrun prepared (no-op outside torchrun or when joined)."""
    if not launched_by_torchrun() or active():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def shutdown() -> None:
    if active():
        dist.barrier()
        dist.destroy_process_group()


def mean_across_ranks(value: float, device: torch.device) -> float:
    """Average a number over all processes (identity for a single process)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()


def wrap_model(model: torch.nn.Module, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """DDP-wrap when distributed (SyncBatchNorm first when asked); the model itself otherwise."""
    if not active():
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def device_for_rank(name: str) -> torch.device:
    """Under torchrun on GPUs, 'auto' means this process's local GPU."""
    rank = local_rank()
    if rank is not None and name in ("", "auto") and torch.cuda.is_available():
        return torch.device("cuda", rank)
    return resolve_device(name)
