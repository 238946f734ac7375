"""Stage 1 of every two-stage generator: unconditional diffusion on one-hot masks.

Masks (uint8 [N, H, W], 0 bg 1 RV 2 MYO 3 LV) are encoded as 4 one-hot channels scaled to
[-1, 1]; a MONAI DiffusionModelUNet learns to denoise them (``noise.prediction_type``: ε as in
the reference study, or the clean one-hot x0 — much better after short CPU training, because
at high noise an x0-model predicts the background prior instead of amplified noise); sampling
runs DDPM or DDIM from noise and takes the argmax over channels. Plugin-independent: DDPM, LDM and FM share it.

``n_classes`` > 0 makes the model class-conditional (a MONAI class embedding): :func:`slice_classes` gives each
slice the class of its position along the patient's stack (``position_bins`` bins, base to apex) and its cardiac
phase (ED / ES). Heart size is mostly set by these two (on the phantom: correlation −0.80 between position and heart
area), and the unconditional quick model drew too few large and too few small hearts (the 95th percentile of heart
area 554 px against 788 px in the training masks). Sampling without labels draws classes with the training
frequencies (``class_freq_``). Under DP-SGD those frequencies would be a release the accountant does not cover, so
a DP fit draws positions uniformly within the phase groups present in the data (which phases a dataset has is
treated as public metadata, as the vendor list is).

``size`` lets the model work below the image resolution (the CPU ``quick`` preset uses 32² masks for
64² images): training targets are the area-averaged one-hot maps (soft at the borders), samples are
upsampled bilinearly channel by channel before the argmax, so outlines stay smooth. Measured on the
phantom (docs/generators.md): at equal CPU time a 32² model draws the LV in 95 % of samples where the
64² model drew it in 33 %, because 4× cheaper steps buy 3× more of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from .augment import flip_rotate
from .diffusion import (
    NoiseSpec,
    UNetSpec,
    alphas_cumprod,
    build_unet,
    eps_loss,
    onehot,
    sample_eps,
)
from .training import TrainConfig, TrainResult, seeded, train_loop

NUM_CLASSES = 4
PHASES = ("ED", "ES")


def slice_classes(slice_index: np.ndarray, frame: np.ndarray, patient_id: np.ndarray, *,
                  position_bins: int) -> np.ndarray:
    """Class per slice for a position-conditional mask model: ``phase · position_bins + bin``.

    bin: the slice's rank among its patient's distinct ``slice_index`` values (per frame group), scaled to
    [0, position_bins) (one slice: bin 0); phase: 0 for ED, 1 for ES, 2 for any other or unknown frame."""
    slice_index, frame = np.asarray(slice_index), np.asarray(frame).astype(str)
    patient_id = np.asarray(patient_id).astype(str)
    phase = np.array([PHASES.index(f.upper()) if f.upper() in PHASES else len(PHASES) for f in frame], np.int64)
    bins = np.zeros(len(slice_index), np.int64)
    for key in set(zip(patient_id.tolist(), phase.tolist())):
        sel = (patient_id == key[0]) & (phase == key[1])
        u = np.unique(slice_index[sel])
        rank = np.searchsorted(u, slice_index[sel])
        bins[sel] = np.minimum(rank * position_bins // max(1, len(u)), position_bins - 1)
    return phase * position_bins + bins


def n_slice_classes(position_bins: int) -> int:
    """Classes of :func:`slice_classes` (ED, ES and other frames, each ``position_bins`` positions)."""
    return (len(PHASES) + 1) * int(position_bins)


class MaskDiffusion:
    """Unconditional mask diffusion model (a component, not a registered generator).

    ``unet``/``noise``/``train`` configure the network, the forward process and the
    optimisation; ``sampler`` ("ddpm" = all training steps, "ddim" = ``sampling_steps``).
    Fitted attributes: ``net_`` (EMA weights), ``result_`` (:class:`TrainResult`).
    """

    def __init__(
        self,
        *,
        unet: UNetSpec,
        noise: NoiseSpec,
        train: TrainConfig,
        sampler: str = "ddim",
        sampling_steps: int = 50,
        augment: bool = False,
        size: int | None = None,
        n_classes: int = 0,
    ):
        self.size = None if size is None else int(size)
        self.n_classes = int(n_classes)
        self.class_freq_: np.ndarray | None = None
        self.unet = unet
        self.noise = noise
        self.train = train
        self.sampler = sampler
        self.sampling_steps = sampling_steps
        self.augment = augment
        self.net_: torch.nn.Module | None = None
        self.result_: TrainResult | None = None

    def targets(self, masks: np.ndarray) -> torch.Tensor:
        """One-hot training targets in [-1, 1] at the model's ``size`` (area-averaged when smaller than the masks)."""
        oh = onehot(masks, NUM_CLASSES)
        h = oh.shape[-1]
        if self.size is None or self.size == h:
            return oh
        if h % self.size:
            raise UsageError(f"mask model: mask size {h} is not a multiple of mask_size {self.size}")
        return F.avg_pool2d(oh, h // self.size)

    def build(self, *, seed: int) -> torch.nn.Module:
        with seeded(seed):
            return build_unet(self.unet, in_channels=NUM_CLASSES, out_channels=NUM_CLASSES,
                              num_class_embeds=self.n_classes or None)

    def fit(
        self,
        masks: np.ndarray,
        *,
        seed: int,
        device: torch.device,
        work_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        dp=None,
        callback=None,
        patient_ids=None,
        labels=None,
    ) -> "MaskDiffusion":
        """Train on ``masks``; with ``dp`` (DPConfig) under patient-level DP-SGD (``patient_ids``, one per mask).

        ``labels`` (int [N] in 0..n_classes-1): the classes of a conditional model (:func:`slice_classes`)."""
        masks = np.asarray(masks)
        if masks.ndim != 3 or len(masks) == 0:
            raise UsageError(f"mask model: expected masks [N, H, W] with N >= 1, got shape {masks.shape}")
        lab = None
        if self.n_classes:
            labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
            if labels.shape != (len(masks),) or labels.min() < 0 or labels.max() >= self.n_classes:
                raise UsageError(f"mask model: a conditional model needs one label in 0..{self.n_classes - 1} per "
                                 f"mask, got {labels.shape} labels for {len(masks)} masks")
            private = dp is not None and getattr(dp, "enabled", True)
            freq = np.bincount(labels, minlength=self.n_classes).astype(float)
            if private:  # uniform over the positions of each phase group present (public metadata, like vendors_)
                bins = self.n_classes // (len(PHASES) + 1)
                freq = np.repeat(np.bincount(labels // bins, minlength=len(PHASES) + 1) > 0, bins).astype(float)
            self.class_freq_ = freq / freq.sum()
            lab = torch.as_tensor(labels, device=device)
        net = self.build(seed=seed)
        data = self.targets(masks).to(device)
        acp = alphas_cumprod(self.noise)
        augment = self.augment

        def step_loss(model, idx, gen):
            x0 = data[torch.as_tensor(idx, device=data.device)]
            if augment:
                (x0,) = flip_rotate([x0], generator=gen, modes=["nearest"])
            cl = None if lab is None else lab[torch.as_tensor(idx, device=lab.device)]
            return eps_loss(model, x0, acp=acp, generator=gen, prediction_type=self.noise.prediction_type,
                            class_labels=cl)

        self.result_ = train_loop(
            net, step_loss, n_items=len(masks), config=self.train, seed=seed, device=device,
            work_dir=work_dir, resume=resume, progress=progress, desc="mask model", dp=dp, callback=callback,
            patient_ids=patient_ids, stage="mask_model",
        )
        net.load_state_dict(self.result_.ema_state)
        self.net_ = net.eval()
        return self

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        shape: tuple[int, int],
        seed: int,
        device: torch.device,
        batch_size: int = 32,
        progress=None,
        on_batch=None,
    ) -> np.ndarray:
        """``n`` label maps uint8 [n, H, W] (argmax of the denoised one-hot channels, upsampled to ``shape``).

        A conditional model draws the slice classes with ``class_freq_`` (seeded by ``seed``)."""
        if self.net_ is None:
            raise UsageError("mask model is not fitted")
        net = self.net_.to(device).eval()
        work = tuple(shape) if self.size is None else (self.size, self.size)
        classes = None
        if self.n_classes:
            freq = np.ones(self.n_classes) / self.n_classes if self.class_freq_ is None else self.class_freq_
            classes = np.random.default_rng([int(seed), 0xC1A55]).choice(self.n_classes, size=n, p=freq)
        out = []
        for b, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            cl = None if classes is None else torch.as_tensor(classes[start : start + m], device=device)
            x = sample_eps(
                lambda x, t: net(x, timesteps=t) if cl is None else net(x, timesteps=t, class_labels=cl),
                (m, NUM_CLASSES, *work),
                noise=self.noise,
                sampler=self.sampler,
                steps=self.sampling_steps,
                seed=int(seed) * 1009 + b,
                device=device,
                progress=progress,
            )
            if work != tuple(shape):
                x = F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)
            out.append(x.argmax(1).to(torch.uint8).cpu().numpy())
            if on_batch is not None:
                on_batch(m)
        return np.concatenate(out) if out else np.zeros((0, *shape), np.uint8)

    def state_dict(self) -> dict:
        return self.net_.state_dict() if self.net_ is not None else {}

    def load_state_dict(self, state: dict, *, seed: int = 0) -> "MaskDiffusion":
        net = self.build(seed=seed)
        net.load_state_dict(state)
        self.net_ = net.eval()
        return self
