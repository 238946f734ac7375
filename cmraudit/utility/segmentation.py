"""2-D segmentation network for the utility stage: MONAI DynUNet trained with Dice + cross-entropy.

:class:`Segmenter` is an sklearn-style estimator: ``__init__`` stores parameters, ``fit``
returns self, fitted state ends in ``_``. Presets:

- ``quick`` — CPU-friendly: DynUNet filters (16, 32, 64, 128), 3 stride-2 levels, batch 8,
  AdamW 1e-2 with cosine decay, 200 iterations, no augmentation. Reaches mean Dice ≈ 0.93 on
  held-out patients of the 64² phantom (≈ 15–25 s on 2 idle cores).
- ``paper`` — filters (32, 64, 128, 256, 320), 4 levels, batch 16, 4000 iterations, flips.

Loss: MONAI ``DiceCELoss`` (softmax, one-hot target) when every training slice annotates all
three structures. With partial labels (e.g. Sunnybrook: no RV) the *marginal* Dice + CE is
used instead: on a slice, the probability of every unannotated structure is merged into
background before the cross-entropy, and Dice is taken only over annotated structures —
unknown is never treated as background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..cpu import GLOBAL_RNG_LOCK
from ..data.dataset import ALL_STRUCTURES, STRUCTURE_BIT, STRUCTURES
from ..device import select_device
from ..errors import NotFittedError, UsageError
from ..progress import bars_here, end_task, update
from ..progress import task as status_task


@dataclass(frozen=True)
class SegmentationPreset:
    filters: tuple[int, ...]
    iterations: int
    batch_size: int
    lr: float
    flips: bool = True


PRESETS = {
    # micro: the smoke test's segmenter (a run's utility stage in seconds; its Dice is not meant to be read)
    "micro": SegmentationPreset(filters=(8, 16, 32), iterations=40, batch_size=8, lr=1e-2, flips=False),
    "quick": SegmentationPreset(filters=(16, 32, 64, 128), iterations=200, batch_size=8, lr=1e-2, flips=False),
    "paper": SegmentationPreset(filters=(32, 64, 128, 256, 320), iterations=4000, batch_size=16, lr=1e-3),
}


def _cpu_autocast(device):
    """bfloat16 autocast on native-bf16 CPUs (cmraudit.device.cpu_precision), float32 elsewhere: the segmenter's
    float16 path on CUDA would need loss scaling, which this loop does not do."""
    import contextlib

    from ..device import autocast

    return autocast(device, training=True) if device.type == "cpu" else contextlib.nullcontext()


def make_dynunet(filters: tuple[int, ...], *, n_classes: int = 4):
    from monai.networks.nets import DynUNet

    levels = len(filters)
    return DynUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=n_classes,
        kernel_size=[3] * levels,
        strides=[1] + [2] * (levels - 1),
        upsample_kernel_size=[2] * (levels - 1),
        filters=list(filters),
        norm_name=("INSTANCE", {"affine": True}),
    )


def _marginal_dice_ce(logits, target, annotated):
    """Dice + CE where, per slice, unannotated structures are merged into background."""
    import torch
    import torch.nn.functional as F

    prob = torch.softmax(logits, 1)
    bits = torch.as_tensor([STRUCTURE_BIT[s] for s in STRUCTURES], device=logits.device)
    known = (annotated[:, None] & bits[None]) > 0  # [B, 3]
    unknown = (~known).float()[:, :, None, None]
    merged_bg = prob[:, :1] + (prob[:, 1:] * unknown).sum(1, keepdim=True)
    probs_m = torch.cat([merged_bg, prob[:, 1:] * (1 - unknown) + 1e-8 * unknown], 1)
    ce = F.nll_loss(torch.log(probs_m.clamp_min(1e-8)), target[:, 0].long())
    onehot = F.one_hot(target[:, 0].long(), 4).permute(0, 3, 1, 2).float()
    inter = (prob * onehot).sum((2, 3))
    den = prob.sum((2, 3)) + onehot.sum((2, 3))
    dice = 1 - (2 * inter + 1e-5) / (den + 1e-5)  # [B, 4]
    w = torch.cat([torch.ones_like(known[:, :1]), known], 1).float()
    return ce + (dice * w).sum() / w.sum()


class Segmenter:
    """DynUNet 2-D segmentation of RV / MYO / LV. ``predict`` returns label maps in ACDC numbering."""

    def __init__(self, *, preset: str = "quick", iterations: int | None = None, batch_size: int | None = None,
                 filters: tuple[int, ...] | None = None, lr: float | None = None, flips: bool | None = None,
                 device: str = "auto"):
        self.preset = preset
        self.iterations = iterations
        self.batch_size = batch_size
        self.filters = filters
        self.lr = lr
        self.flips = flips
        self.device = device

    def _config(self) -> SegmentationPreset:
        if self.preset not in PRESETS:
            raise UsageError(f"segmentation preset {self.preset!r} is unknown; expected one of {', '.join(PRESETS)}")
        cfg = PRESETS[self.preset]
        over = {
            k: getattr(self, k)
            for k in ("iterations", "batch_size", "filters", "lr", "flips")
            if getattr(self, k) is not None
        }
        cfg = replace(cfg, **over)
        if cfg.iterations < 1 or cfg.batch_size < 1 or len(cfg.filters) < 2:
            raise UsageError(
                f"segmentation settings invalid: iterations={cfg.iterations}, batch_size={cfg.batch_size}, "
                f"filters={cfg.filters}"
            )
        return cfg

    def fit(self, train, *, seed: int, progress: bool = False, desc: str = "segmentation") -> "Segmenter":
        """Train on a Dataset's images and masks (``train.annotated`` honoured)."""
        import torch
        from monai.losses import DiceCELoss

        cfg = self._config()
        if len(train) == 0:
            raise UsageError("cannot train a segmenter on an empty dataset")
        h, w = train.shape
        div = 2 ** (len(cfg.filters) - 1)
        if h % div or w % div:
            raise UsageError(
                f"image size {h}x{w} must be divisible by {div} for filters {cfg.filters}; use fewer levels"
            )
        dev = select_device(self.device)
        gen = torch.Generator().manual_seed(seed)
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):  # init from the seeded global RNG, one at a time
            torch.manual_seed(seed)
            net = make_dynunet(cfg.filters)
        net = net.to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, cfg.iterations) / cfg.iterations))
        )
        # copies: torch.from_numpy warns on a read-only memmap (a prepared dataset read from disk)
        images = torch.from_numpy(np.array(train.images, dtype=np.float32))[:, None]
        masks = torch.from_numpy(np.ascontiguousarray(train.masks, dtype=np.int64))[:, None]
        ann = torch.from_numpy(np.asarray(train.annotated, dtype=np.int64))
        partial = bool((ann != ALL_STRUCTURES).any())
        dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
        net.train()
        it = range(cfg.iterations)
        bar = None
        if progress:
            status_task(desc, cfg.iterations)  # status lines without a terminal (cmraudit/progress.py)
        if progress and bars_here():
            from rich.progress import Progress

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task("segmentation", total=cfg.iterations)
        losses = []
        try:
            for i in it:
                idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
                x, y, a = images[idx], masks[idx], ann[idx]
                if cfg.flips:
                    f = torch.rand(2, generator=gen)
                    if f[0] < 0.5:
                        x, y = x.flip(-1), y.flip(-1)
                    if f[1] < 0.5:
                        x, y = x.flip(-2), y.flip(-2)
                x, y, a = x.to(dev), y.to(dev), a.to(dev)
                opt.zero_grad(set_to_none=True)
                with _cpu_autocast(dev):
                    logits = net(x)
                logits = logits.float()
                loss = _marginal_dice_ce(logits, y, a) if partial else dice_ce(logits, y)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                if progress:
                    update(i + 1, loss=losses[-1])
                if bar is not None:
                    bar.update(task, advance=1, description=f"segmentation loss {losses[-1]:.3f}")
        finally:
            if progress:
                end_task()
            if bar is not None:
                bar.stop()
        net.eval()
        self.model_ = net
        self.device_ = dev
        self.loss_history_ = np.asarray(losses)
        self.config_ = cfg
        return self

    def predict(self, images: np.ndarray, *, batch: int = 64) -> np.ndarray:
        """Label maps uint8 [N, H, W] (0 bg, 1 RV, 2 MYO, 3 LV) for images [N, H, W] in [-1, 1]."""
        import torch

        if getattr(self, "model_", None) is None:
            raise NotFittedError("this Segmenter is not fitted yet; call fit(train, seed=...) first")
        out = np.empty(np.shape(images), dtype=np.uint8)
        with torch.no_grad():
            for s in range(0, len(images), batch):
                x = torch.from_numpy(np.array(images[s : s + batch], dtype=np.float32))[:, None].to(
                    self.device_
                )
                with _cpu_autocast(self.device_):
                    logits = self.model_(x)
                out[s : s + batch] = logits.float().argmax(1).cpu().numpy().astype(np.uint8)
        return out
