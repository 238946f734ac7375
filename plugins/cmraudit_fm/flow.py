"""Conditional flow matching pieces, kept apart: the probability path, the training loss, the ODE solvers.

Convention (Lipman et al. 2023; MOTFM): ``x0 ~ N(0, I)`` is noise, ``x1`` is data, time ``s`` runs
from 0 (noise) to 1 (data). The linear path is ``x_s = s·x1 + (1 − s)·x0`` and the velocity target
is ``x1 − x0``. Networks take time as ``s · TIME_SCALE`` so MONAI's sinusoidal timestep embedding
sees the same numeric range as for a 1000-step diffusion model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

SOLVERS = ("euler", "midpoint", "heun")
#: network time input = s · TIME_SCALE (s in [0, 1])
TIME_SCALE = 1000.0
#: function evaluations per ODE step
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_path(x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point and target velocity of the linear path at times ``s`` [N]: (s·x1 + (1−s)·x0, x1 − x0)."""
    sv = s.view(-1, *([1] * (x1.dim() - 1))).to(x1.dtype)
    return sv * x1 + (1 - sv) * x0, x1 - x0


def ot_pair(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Minibatch optimal-transport pairing (Tong et al. 2024): permute the noise ``x0`` so that the
    pairs (x0[π(i)], x1[i]) minimise the summed squared Euclidean distance (exact, Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    with torch.no_grad():
        cost = torch.cdist(x1.flatten(1).float(), x0.flatten(1).float()).pow(2).cpu().numpy()
    _, cols = linear_sum_assignment(cost)
    return x0[torch.as_tensor(cols, device=x0.device)]


def velocity_loss(
    net_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x1: torch.Tensor,
    *,
    generator: torch.Generator,
    s: torch.Tensor | None = None,
    ot: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Conditional flow-matching loss: MSE between ``net_fn(x_s, s·TIME_SCALE)`` and ``x1 − x0``.

    ``s`` (times in [0, 1], one per sample) and the noise ``x0`` are drawn from ``generator``
    (a CPU generator) unless ``s`` is given; ``ot=True`` pairs noise and data by minibatch OT.
    ``reduction="none"`` returns the per-sample mean squared velocity error [N]; ``"pair"`` the maps
    (predicted velocity, target velocity), each [N, C, H, W] (the FCRE white-box hook).
    """
    n = x1.shape[0]
    if s is None:
        s = torch.rand(n, generator=generator)
    x0 = torch.randn(x1.shape, generator=generator).to(x1.device)
    if ot and n > 1:
        x0 = ot_pair(x0, x1)
    s = s.to(x1.device).float()
    xs, target = linear_path(x0, x1, s)
    pred = net_fn(xs, s * TIME_SCALE)
    if reduction == "pair":
        return pred.float(), target.float()
    err = F.mse_loss(pred.float(), target.float(), reduction="none")
    if reduction == "none":
        return err.flatten(1).mean(1)
    return err.mean()


@dataclass(frozen=True)
class ODEResult:
    """Endpoint of an ODE solve and its cost in network function evaluations (NFE)."""

    x: torch.Tensor
    nfe: int

    def to_dict(self) -> dict:
        return {"nfe": self.nfe, "shape": list(self.x.shape)}


@dataclass(frozen=True)
class SolverSpec:
    """Fixed-step ODE solver from s = 0 to 1: ``solver`` in SOLVERS, ``steps`` equal steps of 1/steps."""

    solver: str = "midpoint"
    steps: int = 10

    @property
    def nfe(self) -> int:
        return NFE_PER_STEP.get(self.solver, 0) * int(self.steps)

    def problems(self, prefix: str = "") -> list[str]:
        out = []
        if self.solver not in SOLVERS:
            out.append(f"{prefix}solver must be one of {SOLVERS}, got {self.solver!r}")
        if int(self.steps) < 1:
            out.append(f"{prefix}ode_steps must be >= 1, got {self.steps}")
        return out

    def to_dict(self) -> dict:
        return asdict(self) | {"nfe": self.nfe}


@torch.no_grad()
def solve_ode(velocity: VelocityFn, x0: torch.Tensor, spec: SolverSpec) -> ODEResult:
    """Integrate dx/ds = velocity(x, s·TIME_SCALE) from s = 0 (``x0``, noise) to s = 1 (data).

    Euler: 1 NFE per step (first order); midpoint and Heun: 2 NFE per step (second order).
    """
    n, h = x0.shape[0], 1.0 / int(spec.steps)
    x, nfe = x0, 0

    def v(x, s):
        nonlocal nfe
        nfe += 1
        return velocity(x, torch.full((n,), s * TIME_SCALE, device=x.device, dtype=torch.float32)).float()

    for i in range(int(spec.steps)):
        s = i * h
        if spec.solver == "euler":
            x = x + h * v(x, s)
        elif spec.solver == "midpoint":
            x = x + h * v(x + 0.5 * h * v(x, s), s + 0.5 * h)
        elif spec.solver == "heun":
            k1 = v(x, s)
            k2 = v(x + h * k1, s + h)
            x = x + 0.5 * h * (k1 + k2)
        else:
            raise ValueError(f"unknown solver {spec.solver!r}; expected one of {SOLVERS}")
    return ODEResult(x=x, nfe=nfe)


def noise_like(shape: tuple[int, ...], *, seed: int, device: torch.device) -> torch.Tensor:
    """Starting noise x0 ~ N(0, I) drawn on CPU from ``seed`` (identical on every device)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))).to(device)
