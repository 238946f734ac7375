"""The settings and the outcome of one training stage (:func:`cmraudit.generators.training.train_loop`)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage. ``steps`` wins over ``epochs`` when both are set.

    ``batch_size`` is the global batch (split across DDP ranks); ``lr`` the peak learning
    rate reached after ``warmup_steps``; ``ema_decay`` the EMA factor per step (with the
    usual (1+s)/(10+s) warm-up); ``checkpoint_every`` in steps (0 = only at the end).
    """

    steps: int | None = 200
    epochs: int | None = None
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 20
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 0

    def problems(self, prefix: str = "") -> list[str]:
        out = []
        numeric = ("steps", "epochs", "batch_size", "warmup_steps", "checkpoint_every", "lr", "ema_decay", "grad_clip")
        for name in numeric:
            v = getattr(self, name)
            integral = name not in ("lr", "ema_decay", "grad_clip")
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or (integral and not float(v).is_integer()) or not math.isfinite(float(v))):
                out.append(f"{prefix}{name} must be {'an integer' if integral else 'a finite number'}, got {v!r}")
        if out:
            return out
        if self.steps is None and self.epochs is None:
            out.append(f"{prefix}give steps or epochs")
        if self.steps is not None and int(self.steps) < 1:
            out.append(f"{prefix}steps must be >= 1, got {self.steps}")
        if self.epochs is not None and int(self.epochs) < 1:
            out.append(f"{prefix}epochs must be >= 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            out.append(f"{prefix}batch_size must be >= 1, got {self.batch_size}")
        if not float(self.lr) > 0:
            out.append(f"{prefix}lr must be > 0, got {self.lr}")
        if not 0 <= float(self.ema_decay) < 1:
            out.append(f"{prefix}ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and not float(self.grad_clip) > 0:
            out.append(f"{prefix}grad_clip must be > 0 or None, got {self.grad_clip}")
        if int(self.warmup_steps) < 0 or int(self.checkpoint_every) < 0:
            out.append(f"{prefix}warmup_steps and checkpoint_every must be >= 0")
        return out

    def total_steps(self, n_items: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return int(self.epochs) * max(1, math.ceil(n_items / int(self.batch_size)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """Outcome of one stage: EMA weights, per-step mean losses, wall time in seconds."""

    ema_state: dict
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    time_s: float = 0.0
    resumed_from: int = 0
    dp: object | None = None  # cmraudit.dp.StageBudget when trained with DP-SGD, else None

    def to_dict(self) -> dict:
        fin = [x for x in self.losses if math.isfinite(x)]  # a DP run may start with empty (noise-only) batches
        head = float(np.mean(fin[: max(1, len(fin) // 10)])) if fin else None
        tail = float(np.mean(fin[-max(1, len(fin) // 10):])) if fin else None
        return {
            "steps": self.steps,
            "time_s": round(self.time_s, 3),
            "loss_start": head,
            "loss_end": tail,
            "resumed_from": self.resumed_from,
            "dp": None if self.dp is None else self.dp.to_dict(),
        }
