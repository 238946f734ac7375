"""Device selection: CUDA when present, then MPS, else CPU; AMP only on CUDA.

torch is imported inside the functions, so this module is light to import (the CLI starts without torch).
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
#: most CPU threads --threads accepts (tens of thousands exhaust the address space of the OpenMP / BLAS pools)
MAX_THREADS = 1024


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


#: CPU precision of generator training and sampling (environment variable CMRAUDIT_CPU_PRECISION)
CPU_PRECISIONS = ("auto", "fp32", "bf16")
ENV_CPU_PRECISION = "CMRAUDIT_CPU_PRECISION"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags Linux lists for the CPU in /proc/cpuinfo (empty elsewhere or when unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (x86 AVX512-BF16 or AMX-BF16).

    Elsewhere oneDNN emulates bfloat16 and autocast is slower than float32, so ``auto`` keeps float32 there."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_precision() -> str:
    """``fp32`` or ``bf16``: CMRAUDIT_CPU_PRECISION (auto, fp32, bf16; default auto = bf16 on native-bf16 CPUs)."""
    v = os.environ.get(ENV_CPU_PRECISION, "auto").strip().lower() or "auto"
    if v not in CPU_PRECISIONS:
        raise UsageError(f"{ENV_CPU_PRECISION}={v!r}: expected one of {', '.join(CPU_PRECISIONS)}")
    if v == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return v


def autocast_dtype(device: torch.device, *, training: bool) -> torch.dtype | None:
    """The autocast dtype of generator training / sampling on ``device``, or None for float32.

    CUDA: float16 with loss scaling when training (the loop's GradScaler), bfloat16 when sampling where the card
    has it; CPU: bfloat16 when :func:`cpu_precision` says so (no scaler needed: bfloat16 has float32's range).
    Audits (features, searches) run in float32; white-box losses in the fit's precision
    (:func:`trained_precision_autocast`)."""
    import torch

    if device.type == "cuda":
        if training:
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_precision() == "bf16":
        return torch.bfloat16
    return None


def autocast(device: torch.device, *, training: bool):
    """``torch.autocast`` with :func:`autocast_dtype`, or a null context for float32."""
    import torch

    dtype = autocast_dtype(device, training=training)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(device: torch.device, *, training: bool = True) -> str:
    """What :func:`autocast` does on ``device``, for reports: ``fp32``, ``bf16-autocast`` or ``fp16-autocast``."""
    import torch

    dtype = autocast_dtype(device, training=training)
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + "-autocast"


def trained_precision_autocast(trained: str | None):
    """Autocast for *evaluating* a model in the precision it was trained in (the white-box hooks of the audit).

    ``trained``: the fit's recorded ``training.precision``. A model trained under bfloat16 autocast is evaluated under
    CPU bfloat16 autocast when :func:`cpu_precision` is ``bf16`` here (the losses its training minimised, at half the
    float32 cost); everything else (float32 fits, DP-SGD fits, float16 CUDA fits, ``CMRAUDIT_CPU_PRECISION=fp32``)
    is evaluated in float32. Returns (context manager, precision name)."""
    import torch

    if trained == "bf16-autocast" and cpu_precision() == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16), "bf16-autocast"
    return contextlib.nullcontext(), "fp32"


def set_cpu_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch intra-op work, FAISS's OpenMP pool and the BLAS / OpenMP pools
    numpy, scipy and scikit-learn have loaded (threadpoolctl, a scikit-learn dependency)."""
    if not 1 <= int(n) <= MAX_THREADS:
        raise UsageError(f"--threads {n}: must be in 1..{MAX_THREADS}")
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
