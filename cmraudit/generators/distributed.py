"""DDP helpers: rank / world size, joining the process group under ``torchrun``, rank-0 checks."""
from __future__ import annotations

import os

from .._lazy import LazyModule

torch = LazyModule("torch")  # imported on first use: importing this module stays light


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank); (0, 1, 0) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); return this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not torch.distributed.is_available():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return device


def is_main_process() -> bool:
    return dist_info()[0] == 0
