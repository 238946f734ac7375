"""The shared training loop of every built-in generator stage (DDP helpers: distributed.py; bars: progress.py).

AdamW with linear warm-up then cosine decay, gradient clipping, EMA weights, AMP on CUDA,
atomic checkpoints every N steps, resume, a rich progress bar (loss, it/s, ETA) and DDP
when launched by ``torchrun`` (each rank takes a slice of the global batch; only rank 0
writes). Randomness is *stateless per step*: the batch of step ``s`` and its noise derive
from ``(seed, s, rank)``, so a resumed run replays exactly what an uninterrupted run does.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cpu import GLOBAL_RNG_LOCK
from ..device import autocast, autocast_dtype
from ..dp.private import make_private
from ..errors import CheckpointError, UsageError
from .checkpoint import safe_torch_load, save_state
from .distributed import dist_info, init_distributed, is_main_process  # noqa: F401 - also importable from here
from .progress import TrainProgress, progress_bar  # noqa: F401 - progress_bar also importable from here
from .train_config import TrainConfig, TrainResult  # the settings and outcome of a stage (defined there)
from .train_log import TrainLog, grad_norm

STATE_NAME = "train_state.pt"


# ------------------------------------------------------------------ helpers
def step_seed(seed: int, step: int, rank: int = 0) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(rank)]).generate_state(1)[0])


def batch_indices(n_items: int, *, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the global batch of ``step``: epoch-wise permutations, each a function of (seed, epoch)."""
    per_epoch = max(1, math.ceil(n_items / batch_size))
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7919, epoch]).permutation(n_items)
    idx = perm[pos * batch_size : (pos + 1) * batch_size]
    if len(idx) < min(batch_size, n_items):  # short last batch: top up from the next permutation
        extra = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7919, epoch + 1]).permutation(n_items)
        idx = np.concatenate([idx, extra[: min(batch_size, n_items) - len(idx)]])
    return idx


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / rest)))


def seeded(seed: int):
    """Context manager: fork the global torch RNG and seed it (deterministic weight init).

    Holds :data:`cmraudit.cpu.GLOBAL_RNG_LOCK`, so jobs running side by side (``cmraudit.cpu.map_side_by_side``)
    initialise their networks one at a time from the seeded RNG."""

    @contextlib.contextmanager
    def _cm():
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            yield

    return _cm()


def _apply_dp(dp, model, optimizer, *, patient_ids, n_items: int, world: int, config: TrainConfig, total: int,
              seed: int, desc: str):
    """Wrap ``model``/``optimizer`` for patient-level DP-SGD (:func:`cmraudit.dp.make_private`)."""
    if world > 1:
        raise UsageError(f"{desc}: DP-SGD training runs in one process; launch without torchrun (world size {world}) "
                         "or drop --dp-epsilon")
    if patient_ids is None or len(patient_ids) != n_items:
        got = "none" if patient_ids is None else len(patient_ids)
        raise UsageError(f"{desc}: DP-SGD needs one patient id per training item ({n_items}), got {got}; "
                         "pass patient_ids=list(train.patient_id)")
    return make_private(module=model, optimizer=optimizer, dataset=None, patient_ids=list(patient_ids), dp=dp,
                        batch_size=int(config.batch_size), steps=total, seed=seed)


def _finite(loss: torch.Tensor, desc: str, step: int, config: TrainConfig) -> torch.Tensor:
    if not torch.isfinite(loss):
        raise UsageError(
            f"{desc}: the loss became {loss.item()} at step {step}; lower the learning rate (lr={config.lr})"
        )
    return loss


# ------------------------------------------------------------------ the loop
StepLoss = Callable[[torch.nn.Module, np.ndarray, torch.Generator], torch.Tensor]


def train_loop(
    model: torch.nn.Module,
    step_loss: StepLoss,
    *,
    n_items: int,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    work_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    dp=None,
    callback: Callable[[int, float], None] | None = None,
    patient_ids=None,
    stage: str = "image_model",
) -> TrainResult:
    """Train ``model`` in place; return its EMA weights.

    ``step_loss(model, idx, generator)`` returns the mean loss over the items ``idx`` of
    this rank's share of the batch, drawing any randomness from ``generator`` (CPU).
    ``work_dir`` receives ``train_state.pt`` every ``config.checkpoint_every`` steps and at
    the end; ``resume=True`` continues from it. ``callback(step, loss)`` runs after each step.

    ``dp`` (a :class:`cmraudit.dp.DPConfig`) trains with patient-level DP-SGD: ``patient_ids``
    (one per item) define the sampling unit, ``config.batch_size`` is then the *expected number of
    patients* per step (Poisson sampling, one slice per sampled patient, the batch may be empty),
    per-patient gradients are clipped by Opacus (``config.grad_clip`` is not used), no AMP, one process.
    ``result.dp`` is the :class:`~cmraudit.dp.StageBudget` of ``stage``.
    Inside :func:`cmraudit.generators.train_log.log_to` (as in ``cmraudit run``) each step is logged to
    ``<log dir>/<stage>.csv`` (loss, lr, grad norm, ε under DP, img/s).
    """
    problems = config.problems()
    if problems:
        raise UsageError("training config: " + "; ".join(problems))
    rank, world, _ = dist_info()
    total = config.total_steps(n_items)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(config.lr), weight_decay=float(config.weight_decay))
    pt = None
    if dp is not None:
        pt = _apply_dp(dp, model, optimizer, patient_ids=patient_ids, n_items=n_items, world=world, config=config,
                       total=total, seed=seed, desc=desc)
        model, optimizer = pt.unwrapped, pt.optimizer
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    losses: list[float] = []
    start = 0
    state_path = Path(work_dir) / STATE_NAME if work_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        st = safe_torch_load(state_path)
        if not isinstance(st, dict) or not {"model", "optimizer", "ema", "losses", "step"} <= set(st):
            raise CheckpointError(f"{state_path}: not a cmraudit training state; use a fresh --work-dir")
        dp_state = None if dp is None else dp.to_dict()
        if st.get("dp") != dp_state:
            raise CheckpointError(
                f"{state_path}: was written with DP options {st.get('dp')} but this run has {dp_state}; "
                "resume with the same --dp-* options or use a fresh --work-dir"
            )
        if st.get("seed") != int(seed) or st.get("config") != config.to_dict():
            raise CheckpointError(
                f"{state_path}: was written with seed {st.get('seed')} and config {st.get('config')}, "
                f"but this run has seed {seed} and config {config.to_dict()}; resume with the same settings or use a "
                "fresh --work-dir"
            )
        try:
            model.load_state_dict(st["model"])
            optimizer.load_state_dict(st["optimizer"])
            ema = {k: v.to(device) for k, v in st["ema"].items()}
            losses = [float(x) for x in st["losses"]]
            start = int(st["step"])
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as e:
            line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{state_path}: holds another network's training state ({line}); "
                                  "use a fresh --work-dir") from e
    ema = {k: v.to(device) for k, v in ema.items()}
    if pt is not None:
        pt.resume_at(start)
    float_keys = [k for k, v in model.state_dict().items() if v.is_floating_point()]

    net = model if pt is None else pt.module
    if world > 1 and pt is None:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    # mixed precision (cmraudit.device.autocast): float16 + loss scaling on CUDA, bfloat16 on native-bf16 CPUs; not
    # under DP-SGD (the loss scaler would scale per-sample gradients before clipping)
    amp = pt is None and autocast_dtype(device, training=True) is not None
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None

    def _checkpoint(step: int) -> None:
        if state_path is None or rank != 0:
            return
        save_state(
            state_path,
            {
                "step": step,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "ema": {k: v.detach().cpu() for k, v in ema.items()},
                "optimizer": optimizer.state_dict(),
                "losses": list(losses),
                "seed": int(seed),
                "config": config.to_dict(),
                "dp": None if dp is None else dp.to_dict(),
            },
        )

    def _after_step(step: int, gnorm: float | None, items: int) -> None:  # EMA, progress, log, checkpoint, callback
        log.step(step, loss=losses[-1], lr=optimizer.param_groups[0]["lr"], grad_norm=gnorm, items=items)
        d = min(float(config.ema_decay), (1 + step) / (10 + step))
        with torch.no_grad():
            sd = model.state_dict()
            for k in float_keys:
                ema[k].lerp_(sd[k].float(), 1 - d)
        bar.update(step + 1, losses[-1])
        if config.checkpoint_every and (step + 1) % int(config.checkpoint_every) == 0 and step + 1 < total:
            _checkpoint(step + 1)
        if callback is not None:
            callback(step + 1, losses[-1])

    bar = TrainProgress(progress and rank == 0, desc, total, start)
    log = TrainLog(stage, total=total, start=start, enabled=rank == 0, epsilon=None if pt is None else pt.epsilon_spent)
    t0 = time.perf_counter()
    try:
        model.train()
        for step in range(start, total):
            for g in optimizer.param_groups:
                g["lr"] = float(config.lr) * lr_factor(step, warmup=int(config.warmup_steps), total=total)
            gen = torch.Generator().manual_seed(step_seed(seed, step, rank))
            if pt is not None:
                idx = pt.batch_indices(step)
                if getattr(pt.optimizer, "generator", None) is not None:
                    # stateless DP noise per step: a resumed run draws fresh (not repeated) noise, identical to an
                    # uninterrupted run; reusing the noise of earlier steps would void the accountant's analysis
                    pt.optimizer.generator.manual_seed(step_seed(seed, step, 1_000_003))
                with warnings.catch_warnings():  # Opacus hooks on a first layer whose input needs no grad: harmless
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    value = pt.step(lambda: _finite(step_loss(net, idx, gen), desc, step, config), empty=len(idx) == 0)
                # an empty Poisson batch is a noise-only step; log the previous loss (NaN at the start)
                losses.append(float(value) if value is not None else (losses[-1] if losses else float("nan")))
                _after_step(step, grad_norm(model.parameters()), len(idx))
                continue
            idx = batch_indices(n_items, step=step, batch_size=int(config.batch_size), seed=seed)
            if world > 1:
                idx = idx[rank::world]
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, training=True) if amp else contextlib.nullcontext():
                loss = step_loss(net, idx, gen)
            _finite(loss, desc, step, config)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            clip = float("inf") if config.grad_clip is None else float(config.grad_clip)
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))  # norm before clipping
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            losses.append(float(loss.detach()))
            _after_step(step, gnorm, len(idx) * world)
        _checkpoint(total)
    finally:
        bar.close()
        log.close()
        if pt is not None and hasattr(pt.module, "remove_hooks"):
            pt.module.remove_hooks()  # the trained network leaves clean: no per-sample capture on later passes
    dp_budget = None
    if pt is not None:
        pt.check_budget()
        dp_budget = pt.budget(stage)
    with torch.no_grad():
        sd = model.state_dict()
        out = {k: (ema[k] if k in float_keys else sd[k]).detach().to("cpu").to(sd[k].dtype).clone() for k in sd}
    model.eval()
    return TrainResult(
        ema_state=out, losses=losses, steps=total, time_s=time.perf_counter() - t0, resumed_from=start, dp=dp_budget
    )
