"""Samples at a few points of training: ``<log dir>/snapshots/image_model.npz`` for the report's training section.

Inside :func:`cmraudit.generators.train_log.log_to` (``cmraudit run``), the two-stage image stage draws
:data:`K` images at each of :data:`FRACTIONS` of its steps, from :data:`K` masks the (already trained) mask model
drew once — never a patient's mask — with fixed seeds, so the grid shows how the same draws sharpen as
training goes. When the mask model trains side by side with the image stage (:mod:`.side_by_side`), the image
weights at a mark it has not finished by are kept and drawn once it has: the same file. The global RNG state is
saved and restored around each draw, so training is unchanged (the same weights with and without snapshots).
Off under DP-SGD (Opacus owns the module then) and off the main process. File: ``images`` float16 [T, K, H, W]
in [-1, 1], ``masks`` uint8 [T, K, H, W], ``steps`` int [T].
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .distributed import is_main_process
from .train_log import current_log_dir

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
K = 4
SNAPSHOT_DIR = "snapshots"  # RUN/logs/snapshots/


def _read(path: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    try:
        with np.load(path) as z:
            return [(int(s), z["images"][i], z["masks"][i]) for i, s in enumerate(z["steps"])]
    except (OSError, ValueError, KeyError):
        return []


def _write(path: Path, rows: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    from ..io_guard import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, steps=np.array([r[0] for r in rows], dtype=np.int64),
                            images=np.stack([r[1] for r in rows]).astype(np.float16),
                            masks=np.stack([r[2] for r in rows]).astype(np.uint8))


def snapshot_callback(gen: Any, net, *, total: int, size: tuple[int, int], seed: int, device, dp: bool,
                      callback: Callable[[int, float], None] | None, stage: str = "image_model"):
    """``callback`` for the image stage's ``train_loop`` that also stores the snapshots (``callback`` unchanged
    when no log directory is set, under DP, or off the main process)."""
    directory = current_log_dir()
    ready = getattr(gen, "mask_model_", None)
    pending = getattr(gen, "pending_mask_model_", None)  # the mask model still training beside (side_by_side.py)
    if directory is None or dp or not is_main_process() or (ready is None and pending is None):
        return callback
    import copy

    import torch

    marks = sorted({max(1, round(f * int(total))) for f in FRACTIONS})
    path = Path(directory) / SNAPSHOT_DIR / f"{stage}.npz"
    rows = _read(path)  # a resumed stage keeps the snapshots taken before the interruption
    state: dict[str, Any] = {"masks": None, "on": True, "mask_model": ready, "stash": []}

    def _mask_model(wait: bool):
        if state["mask_model"] is None:
            state["mask_model"] = pending(wait)
        return state["mask_model"]

    def _draw(step: int, net) -> None:
        from .diffusion import onehot

        with torch.random.fork_rng(devices=[]), torch.no_grad():
            if state["masks"] is None:
                state["masks"] = np.asarray(_mask_model(True).sample(K, shape=size, seed=seed + 7_000_003,
                                                                      device=device, batch_size=K))
            had = "image_modules_" in gen.__dict__
            old, was_training = gen.__dict__.get("image_modules_"), net.training
            gen.image_modules_ = {"image": net}
            try:
                x = gen.sample_images(onehot(state["masks"]).to(device), labels=None, seed=seed + 7_000_019,
                                       device=device)
            finally:
                if had:
                    gen.image_modules_ = old
                else:
                    del gen.image_modules_
                net.train(was_training)
        rows[:] = [r for r in rows if r[0] < step]
        rows.append((step, x[:, 0].clamp(-1, 1).float().cpu().numpy(), state["masks"].astype(np.uint8)))
        _write(path, rows)

    def _snapshot(step: int) -> None:
        if _mask_model(step >= marks[-1]) is None:  # keep the weights; draw once the mask model is trained
            state["stash"].append((step, {k: v.detach().clone() for k, v in net.state_dict().items()}))
            return
        for s, weights in state["stash"]:
            earlier = copy.deepcopy(net)
            earlier.load_state_dict(weights)
            _draw(s, earlier)
        state["stash"] = []
        _draw(step, net)

    def _cb(step: int, loss: float) -> None:
        if state["on"] and step in marks:
            try:
                _snapshot(step)
            except Exception as e:  # noqa: BLE001 - a diagnostic must never stop training
                state["on"] = False
                warnings.warn(f"training snapshots off for {stage}: {type(e).__name__}: {e}", stacklevel=2)
        if callback is not None:
            callback(step, loss)

    return _cb
