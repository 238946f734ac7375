"""Domain feature space: a small convolutional encoder learned on data the auditor may use.

The encoder is trained self-supervised (SimCLR-style instance discrimination, NT-Xent loss)
on the pool ``train ∪ holdout`` — never on synthetic data, never on test data — with the
generators' training augmentations as positive pairs: horizontal/vertical flips, rotations
within ±``max_rotation_deg``, shifts within ±``max_shift_px`` (at the native resolution),
additive Gaussian noise up to ``max_noise`` on the [-1, 1] scale. Two views of one slice are
pulled together, views of different slices pushed apart, so a slice that was flipped,
slightly rotated or shifted maps close to its source while other slices stay apart.

The embedding is made *exactly* invariant to the flip group by averaging the encoder
output over the four flips (identity, horizontal, vertical, both) before L2 normalisation;
invariance to rotations and shifts is learned (approximate). Distances are Euclidean between
unit vectors (``sqrt(2 - 2·cos)``), in [0, 2].

Training is deterministic by ``seed`` on a given machine (CPU) and takes a few CPU-seconds at
64² (``steps`` × ``batch_size`` image pairs at ``input_size``²). It runs on ``threads`` torch threads (default 2,
at most the CPUs the process may use: affinity and cgroup quota, never the current load, so that a run's embedding
does not depend on what else the machine was doing; 1 vs 2 threads change the embedding by ≈ 4e-7). Measured on 2
idle cores: 1.6 s with two threads against 2.3–3.1 s with one. The embedding itself runs one thread per batch, the
batches on that many workers: it does not depend on the number of workers.

A user may pass their own encoder instead (:func:`load_encoder`): a TorchScript file, or a
directory holding ``config.json`` + ``weights.safetensors`` (or ``weights.pt``) of a
:class:`ConvEncoder`. It receives float32 tensors [B, 1, S, S] in [-1, 1] (S =
``input_size`` from its config, else the native size) and returns [B, D].
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, NotFittedError, UsageError
from .base import FeatureSpace
from .pixel import resize_images


def _torch():
    import torch

    return torch


def make_conv_encoder(*, dim: int = 64, width: int = 16):
    """A ~25k-parameter conv encoder: 3 stride-2 stages, GroupNorm, global average pooling."""
    torch = _torch()
    nn = torch.nn
    w = width

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(4, cout), nn.SiLU()]

    return nn.Sequential(
        *block(1, w, 2),
        *block(w, 2 * w, 2),
        *block(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, dim),
    )


def augment(x, *, gen, max_rotation_deg: float, max_shift_frac: float, max_noise: float):
    """Random flips, rotation, shift and noise of a batch [B,1,S,S] (torch, seeded by ``gen``)."""
    torch = _torch()
    F = torch.nn.functional
    b = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    hflip = (u(b) < 0.5).float() * 2 - 1
    vflip = (u(b) < 0.5).float() * 2 - 1
    ang = (u(b) * 2 - 1) * math.radians(max_rotation_deg)
    tx = (u(b) * 2 - 1) * max_shift_frac * 2
    ty = (u(b) * 2 - 1) * max_shift_frac * 2
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack(
        [torch.stack([cos * hflip, -sin * vflip, tx], 1), torch.stack([sin * hflip, cos * vflip, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    sigma = u(b, 1, 1, 1) * max_noise
    y = y + sigma * torch.randn(y.shape, generator=gen)
    scale = 1 + (u(b, 1, 1, 1) * 2 - 1) * 0.05
    return y * scale


def nt_xent(z1, z2, *, temperature: float):
    torch = _torch()
    F = torch.nn.functional
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


class DomainFeatures(FeatureSpace):
    """Self-supervised domain embedding (see module docstring). ``fit(pool, seed=)`` then ``transform(ds)``."""

    name = "domain"
    invariances = ("flips", "rotations", "shifts", "noise")
    invariance = "exact flip invariance (averaged over flips); rotation/shift/noise invariance learned"
    needs_pool = True  # learned on train ∪ holdout unless a user encoder is given

    def __init__(
        self,
        *,
        dim: int = 64,
        width: int = 16,
        input_size: int = 32,
        steps: int = 120,
        batch_size: int = 64,
        lr: float = 3e-3,
        temperature: float = 0.2,
        max_rotation_deg: float = 20.0,
        max_shift_px: float = 4.0,
        max_noise: float = 0.05,
        max_pool: int = 4096,
        threads: int | None = 2,
        encoder: str | os.PathLike | None = None,
    ):
        self.dim = dim
        self.width = width
        self.input_size = input_size
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.max_rotation_deg = max_rotation_deg
        self.max_shift_px = max_shift_px
        self.max_noise = max_noise
        self.max_pool = max_pool
        self.threads = threads
        self.encoder = encoder

    def get_params(self) -> dict:
        return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in vars(self).items() if not k.endswith("_")}

    def _threads(self) -> int | None:
        """The torch threads of training (None: torch's current setting): ``threads``, at most the available CPUs."""
        from ..cpu import available_cpus

        return None if self.threads is None else max(1, min(int(self.threads), available_cpus()))

    # ------------------------------------------------------------------ fit
    def fit(self, pool, *, seed: int, progress: bool = False) -> "DomainFeatures":
        """Train on ``pool`` (a Dataset or an image array: train ∪ holdout only), or load the user encoder."""
        torch = _torch()
        if self.encoder is not None:
            self.model_, self.native_size_ = load_encoder(self.encoder)
            self.train_seconds_ = 0.0
            return self
        import time

        images = pool.images if hasattr(pool, "images") else pool
        n = len(images)
        if n < 2:
            raise UsageError(f"the domain encoder needs at least 2 pool slices to train, got {n}")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, size=min(n, self.max_pool), replace=False))
        native = images.shape[-1]
        x_all = torch.from_numpy(resize_images(np.asarray(images[pick]), self.input_size))[:, None]
        t0 = time.perf_counter()
        with _seeded(seed, self._threads()):
            model = make_conv_encoder(dim=self.dim, width=self.width)
            opt = torch.optim.Adam(model.parameters(), lr=self.lr)
            gen = torch.Generator().manual_seed(int(seed))
            shift = self.max_shift_px / native
            bs = min(self.batch_size, len(x_all))
            model.train()
            losses = []
            for step in range(self.steps):
                idx = torch.from_numpy(rng.choice(len(x_all), size=bs, replace=False))
                xb = x_all[idx]
                kw = dict(
                    gen=gen, max_rotation_deg=self.max_rotation_deg, max_shift_frac=shift, max_noise=self.max_noise
                )
                v1, v2 = augment(xb, **kw), augment(xb, **kw)
                loss = nt_xent(model(v1), model(v2), temperature=self.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for g in opt.param_groups:  # cosine decay
                    g["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / self.steps))
                losses.append(float(loss.detach()))
        model.eval()
        self.model_ = model
        self.native_size_ = self.input_size
        self.train_seconds_ = time.perf_counter() - t0
        self.final_loss_ = float(np.mean(losses[-10:]))
        return self

    # ------------------------------------------------------------ transform
    def transform_images(self, images: np.ndarray, *, batch: int = 1024) -> np.ndarray:
        """[N, dim] float32 unit vectors, averaged over the four flips (exactly flip invariant)."""
        torch = _torch()
        model = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError("DomainFeatures is not fitted; call fit(pool, seed=...) first")
        from ..cpu import available_cpus, map_chunks

        size = self.native_size_

        def part(sl: slice) -> np.ndarray:
            with torch.no_grad():  # grad mode is per thread
                x = torch.from_numpy(resize_images(np.asarray(images[sl]), size))[:, None]
                z = sum(model(v) for v in (x, x.flip(-1), x.flip(-2), x.flip(-1, -2))) / 4
                z = torch.nn.functional.normalize(z.reshape(len(z), -1).float(), dim=1)
                return z.numpy().astype(np.float32)

        # one thread per op, the batches on workers: each batch is computed alone, as on one thread, so the
        # embedding does not depend on the number of workers.
        with _seeded(0, 1):
            outs = map_chunks(part, len(images), batch, workers=self._threads() or available_cpus())
        return np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)

    def transform(self, ds) -> np.ndarray:
        return self.transform_images(ds.images)

    def save(self, path) -> None:
        """config.json + weights.safetensors: reusable later as ``encoder=path``."""
        from safetensors.torch import save_file

        model = getattr(self, "model_", None)
        if model is None or not isinstance(model, _torch().nn.Sequential):
            raise NotFittedError("only a fitted built-in encoder can be saved")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cfg = {"kind": "cmraudit.conv_encoder", "dim": self.dim, "width": self.width, "input_size": self.native_size_}
        (path / "config.json").write_text(json.dumps(cfg, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "weights.safetensors"))


class _seeded:
    """Fork torch's global RNG (module init uses it) and fix the CPU thread count for a block.

    A thread count fixed by the caller (not by the current load) keeps the float reductions, hence the
    embedding, reproducible from run to run.
    """

    def __init__(self, seed: int, threads: int = 1):
        self.seed = int(seed)
        self.threads = threads

    def __enter__(self):
        torch = _torch()
        self._ctx = torch.random.fork_rng(devices=[])
        self._ctx.__enter__()
        torch.manual_seed(self.seed)
        self._threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))

    def __exit__(self, *exc):
        _torch().set_num_threads(self._threads)
        return self._ctx.__exit__(*exc)


def load_encoder(path) -> tuple[object, int | None]:
    """Load a user encoder: a TorchScript file, or a directory with config.json + weights.

    Returns (module in eval mode, input size or None for native). Weights are loaded with
    ``weights_only=True`` / safetensors; no code is unpickled.
    """
    torch = _torch()
    path = Path(path)
    if path.is_file():
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", FutureWarning
                )  # torch.jit.load deprecation: still the format users have
                m = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a TorchScript encoder ({type(e).__name__}: {e}); "
                                  "expected a torch.jit.save file or a directory with config.json + weights") from e
        m.eval()
        return m, None
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{path}: no config.json; an encoder is a TorchScript file or a directory with config.json + weights"
        )
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("kind", "cmraudit.conv_encoder") != "cmraudit.conv_encoder":
        raise CheckpointError(
            f"{cfg_path}: kind {cfg.get('kind')!r} unknown; expected 'cmraudit.conv_encoder' (or pass TorchScript)"
        )
    model = make_conv_encoder(dim=int(cfg.get("dim", 64)), width=int(cfg.get("width", 16)))
    if (path / "weights.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "weights.safetensors"))
    elif (path / "weights.pt").is_file():
        state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(f"{path}: no weights.safetensors or weights.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match config {cfg}: {e}") from e
    model.eval()
    return model, cfg.get("input_size")
