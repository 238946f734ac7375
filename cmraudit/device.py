"""Device selection: CUDA when present, then MPS, else CPU; AMP only on CUDA.

torch is imported inside the functions, so this module is light to import (the CLI starts without torch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def select_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU. An explicit device that is absent is a usage error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("--device mps: Apple MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device {name!r} is not a device; expected one of {', '.join(DEVICES)} (or cuda:N)")


def amp_enabled(device: torch.device) -> bool:
    """Mixed precision only on CUDA (CPU autocast is slower for these networks and changes numerics)."""
    return device.type == "cuda"


def set_cpu_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch intra-op work, FAISS's OpenMP pool and the BLAS / OpenMP pools
    numpy, scipy and scikit-learn have loaded (threadpoolctl, a scikit-learn dependency)."""
    if int(n) < 1:
        raise UsageError(f"--threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(int(n))
    try:
        import faiss

        faiss.omp_set_num_threads(int(n))
    except ImportError:  # pragma: no cover - faiss is a dependency
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(n))  # not used as a context manager: applies for the rest of the process
    except ImportError:  # pragma: no cover - comes with scikit-learn
        pass
