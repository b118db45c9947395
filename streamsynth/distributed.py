"""A training process's place under ``torchrun``: world size, rank, its device, the process
group (gloo on CPU, nccl on GPU) and the few collectives the trainers need beyond DDP itself.

Sampling on a Ray cluster is :func:`sample_ray` here too (defined in ``streamsynth.ray_sample``
and loaded on first use, so importing this module never imports Ray).
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    """How many training processes ``torchrun`` started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Dist:
    """This process's place under torchrun (world 1 when not distributed).

    On CUDA each process takes the GPU of its ``LOCAL_RANK`` (``device``, also made the current
    device, so ``"cuda"`` means that GPU from then on). The process group is created here unless
    one exists already, and only then destroyed by :meth:`close`.
    """

    def __init__(self, device: torch.device) -> None:
        self.world = world_size()
        self.rank, self.local_rank, self.owned = 0, 0, False
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
                self.owned = True
            self.rank = dist.get_rank()

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` replaced in place by its mean over all processes (the same on every rank)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t)
            t.div_(self.world)
        return t

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes."""
        if self.world == 1:
            return value
        return float(self.average_(torch.tensor([value], dtype=torch.float64, device=self.device)).item())

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def __getattr__(name: str) -> object:
    # sample_ray lives with the pipeline it runs (streamsynth.ray_sample, the app layer) and needs
    # Ray; it is looked up only when asked for, so importing this torchrun module (which the
    # trainers do) imports neither Ray nor the pipeline
    if name == "sample_ray":
        import importlib

        return importlib.import_module("streamsynth.ray_sample").sample_ray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
