"""Reference generators that validate the auditor (docs/design.md §§ 5, 6): copycat, holdout, noise.

- ``copycat`` replays training slices: a planted share ``rate`` of its samples are copies of
  training slices, each passed through one of ``transforms`` (the copy transforms of
  :mod:`cmraudit.data.copy_transforms`: exact, flip, rot90, rotation (|angle| in [5°, max_rotation_deg]),
  shift (1..max_shift_px pixels per axis at 64², scaled with the image size), gamma, window, contrast,
  noise (Gaussian, σ up to noise_sigma on the [-1, 1] scale), blur, elastic; "all" = every one). The remaining samples
  are drawn from a
  *reference* set of real patients disjoint from train (novel images). The ground truth of
  the last ``sample`` call is in ``last_sample_info_`` (``is_copy``, ``train_index``, ``transform``).
- ``holdout`` replays slices of real patients disjoint from train: the ideal private generator.
- ``noise`` draws smoothed Gaussian noise images with simple procedural masks.

Where the reference data comes from (copycat with rate < 1, holdout): either the parameter
``source`` (a prepared-dataset directory, e.g. ``RUN/data/test``) or the keyword
``fit(train, seed=..., reference=ds)``; ``tags.needs_reference_data`` tells the pipeline to
pass the test split. Use patients that are *not* the audit's holdout set: the audit uses its
holdout as non-members, and a generator replaying them would look anti-private.

``sample(masks=...)`` replays, for each given mask, the stored slice whose mask differs in the
fewest pixels and returns the given masks. ``save`` writes the replay data (real slices: keep
the model folder local).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset, read_dataset, write_dataset
from ..data.copy_transforms import COPY_TRANSFORMS as TRANSFORMS  # one definition of a copy
from ..data.copy_transforms import apply_transform
from ..errors import CheckpointError, DataError, UsageError
from ..features.masks import mask_features
from ..features.neighbours import knn
from .base import BaseGenerator, GeneratorTags, check_is_fitted
from .checkpoint import atomic_dir


def _synthetic_dataset(images, masks, name: str, spacing=None) -> Dataset:
    n = len(images)
    return Dataset(
        images=np.clip(np.asarray(images, dtype=np.float32), -1, 1),
        masks=np.asarray(masks, dtype=np.uint8),
        patient_id=np.array([f"syn-{i:06d}" for i in range(n)], dtype=object),
        source=np.full(n, f"synthetic:{name}", dtype=object),
        spacing_mm=spacing,
        meta={"provenance": {"generator": name}},
    )


def _nearest_mask(stored: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the stored mask with the fewest differing pixels, per query mask (batched)."""
    return knn(mask_features(query, size=0), mask_features(stored, size=0), k=1).indices[:, 0]


class _Replay(BaseGenerator):
    name = "replay"

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def _load_reference(self, train: Dataset, reference: Dataset | None) -> Dataset:
        if reference is None and getattr(self, "source", None):
            reference = read_dataset(self.source, mmap=False)
        if reference is None:
            raise UsageError(
                f"{self.name}: needs reference data (real patients disjoint from train): pass source=DIR "
                "(a prepared dataset, e.g. RUN/data/test) or fit(train, seed=..., reference=ds)"
            )
        overlap = set(train.patient_id.astype(str)) & set(reference.patient_id.astype(str))
        if overlap:
            raise DataError(
                f"{self.name}: reference data shares {len(overlap)} patient(s) with train (e.g. "
                f"{sorted(overlap)[:3]}); "
                "it must hold other patients"
            )
        return reference.subset(np.arange(len(reference)))

    @property
    def image_size_(self) -> tuple[int, int] | None:
        """The slice size of the data it replays (sample --masks and audit --model check it)."""
        for attr in ("train_", "reference_"):
            ds = getattr(self, attr, None)
            if ds is not None:
                return tuple(int(v) for v in ds.shape)
        return None

    def save(self, path) -> None:
        check_is_fitted(self)
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        if params.get("source") is not None:
            params["source"] = str(params["source"])
        with atomic_dir(path) as tmp:  # marked as a model, replaced whole, nothing half-written
            (tmp / "config.json").write_text(
                json.dumps(
                    {"format": "cmraudit-generator", "format_version": 1, "generator": self.name, "params": params},
                    indent=2,
                )
            )
            for attr in ("train_", "reference_"):
                ds = getattr(self, attr, None)
                if ds is not None:
                    write_dataset(ds, tmp / attr.rstrip("_"), overwrite=True)

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: cannot read config.json ({e})") from e
        if cfg.get("generator") != cls.name:
            raise CheckpointError(f"{path}: holds generator {cfg.get('generator')!r}, not {cls.name!r}")
        params = cfg.get("params", {})
        if isinstance(params.get("transforms"), list):
            params["transforms"] = tuple(params["transforms"])
        obj = cls(**params)
        for attr in ("train_", "reference_"):
            p = path / attr.rstrip("_")
            setattr(obj, attr, read_dataset(p, mmap=False) if p.is_dir() else None)
        return obj


class CopycatGenerator(_Replay):
    """Returns (transformed) training slices at a planted rate; see the module docstring."""

    name = "copycat"
    tags = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False, needs_reference_data=True)

    def __init__(
        self,
        *,
        rate: float = 1.0,
        transforms=("exact",),
        max_rotation_deg: float = 20.0,
        max_shift_px: int = 4,
        noise_sigma: float = 0.05,
        source: str | None = None,
        device: str = "cpu",
    ):
        self.device = device  # the contract's; replay runs on the CPU
        self.rate = rate
        self.transforms = transforms
        self.max_rotation_deg = max_rotation_deg
        self.max_shift_px = max_shift_px
        self.noise_sigma = noise_sigma
        self.source = source

    def _check(self) -> tuple[str, ...]:
        problems = []
        if not 0 <= float(self.rate) <= 1:
            problems.append(f"rate must be in [0, 1], got {self.rate}")
        tr = (self.transforms,) if isinstance(self.transforms, str) else tuple(self.transforms)
        if tr == ("all",):
            tr = TRANSFORMS
        bad = [t for t in tr if t not in TRANSFORMS]
        if bad or not tr:
            problems.append(f"transforms {bad or tr} unknown; expected some of {TRANSFORMS} or 'all'")
        if self.max_rotation_deg <= 0 or self.max_shift_px < 1 or self.noise_sigma < 0:
            problems.append("max_rotation_deg must be > 0, max_shift_px >= 1, noise_sigma >= 0")
        if problems:
            raise UsageError("copycat: " + "; ".join(problems))
        return tr

    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True, work_dir=None, resume: bool = False,
            reference: Dataset | None = None):
        self._check()
        if dp is not None:
            raise UsageError("copycat does not train, so it cannot train with DP (tags.supports_dp is False)")
        if len(train) == 0:
            raise DataError("copycat: train is empty")
        self.train_ = train.subset(np.arange(len(train)))
        self.reference_ = self._load_reference(train, reference) if float(self.rate) < 1 else None
        return self

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> Dataset:
        check_is_fitted(self, ("train_",))
        tr = self._check()
        rng = np.random.default_rng(seed)
        if masks is not None:
            masks = np.asarray(masks, dtype=np.uint8)
            n = len(masks)
        if n is None or n < 0:
            raise UsageError(f"copycat.sample needs n >= 0 or masks, got n={n}")
        n_copy = int(round(float(self.rate) * n))
        is_copy = np.zeros(n, bool)
        is_copy[rng.permutation(n)[:n_copy]] = True
        N = len(self.train_)
        if masks is not None:
            src_train = _nearest_mask(np.asarray(self.train_.masks), masks)
        else:
            src_train = np.concatenate([rng.permutation(N) for _ in range(n // N + 1)])[:n]
        H, W = self.train_.shape
        images = np.empty((n, H, W), np.float32)
        out_masks = np.empty((n, H, W), np.uint8)
        kinds = np.array([""] * n, dtype=object)
        train_index = np.full(n, -1)
        for i in np.flatnonzero(is_copy):
            j = int(src_train[i])
            kind = tr[int(rng.integers(len(tr)))]
            images[i], out_masks[i] = apply_transform(
                np.asarray(self.train_.images[j]),
                kind,
                rng,
                msk=np.asarray(self.train_.masks[j]),
                max_rotation_deg=self.max_rotation_deg,
                max_shift_px=self.max_shift_px,
                noise_sigma=self.noise_sigma,
            )
            kinds[i], train_index[i] = kind, j
        rest = np.flatnonzero(~is_copy)
        if len(rest):
            ref = self.reference_
            if ref is None:
                raise UsageError("copycat with rate < 1 needs reference data; refit with source= or reference=")
            if masks is not None:
                pick = _nearest_mask(np.asarray(ref.masks), masks[rest])
            else:
                pick = np.concatenate([rng.permutation(len(ref)) for _ in range(len(rest) // len(ref) + 1)])[
                    : len(rest)
                ]
            images[rest], out_masks[rest] = np.asarray(ref.images)[pick], np.asarray(ref.masks)[pick]
            kinds[rest] = "novel"
        if masks is not None:
            out_masks = masks
        self.last_sample_info_ = {"is_copy": is_copy, "train_index": train_index, "transform": kinds}
        ds = _synthetic_dataset(images, out_masks, self.name)
        ds.meta["provenance"].update({"planted_copies": int(n_copy), "rate": float(self.rate), "transforms": list(tr)})
        return ds


class HoldoutGenerator(_Replay):
    """Replays real slices of patients disjoint from train: the ideal private generator."""

    name = "holdout"
    tags = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False, needs_reference_data=True)

    def __init__(self, *, source: str | None = None, device: str = "cpu"):
        self.source = source
        self.device = device  # the contract's; replay runs on the CPU

    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True, work_dir=None, resume: bool = False,
            reference: Dataset | None = None):
        if dp is not None:
            raise UsageError("holdout does not train, so it cannot train with DP (tags.supports_dp is False)")
        self.reference_ = self._load_reference(train, reference)
        if len(self.reference_) == 0:
            raise DataError("holdout: reference data is empty")
        self.train_ = None
        return self

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> Dataset:
        check_is_fitted(self, ("reference_",))
        ref = self.reference_
        rng = np.random.default_rng(seed)
        if masks is not None:
            masks = np.asarray(masks, dtype=np.uint8)
            pick = _nearest_mask(np.asarray(ref.masks), masks)
            return _synthetic_dataset(np.asarray(ref.images)[pick], masks, self.name)
        if n is None or n < 0:
            raise UsageError(f"holdout.sample needs n >= 0 or masks, got n={n}")
        pick = np.concatenate([rng.permutation(len(ref)) for _ in range(n // len(ref) + 1)])[:n]
        return _synthetic_dataset(np.asarray(ref.images)[pick], np.asarray(ref.masks)[pick], self.name)


class NoiseGenerator(BaseGenerator):
    """Smoothed Gaussian noise images (σ ``sigma``, smoothing ``smooth_px``) with procedural ring masks."""

    name = "noise"
    tags = GeneratorTags(conditional=True, two_stage=True, supports_dp=False, has_loss=False)

    def __init__(self, *, sigma: float = 0.5, smooth_px: float = 1.5, device: str = "cpu"):
        self.sigma = sigma
        self.smooth_px = smooth_px
        self.device = device  # the contract's; noise is drawn on the CPU

    def fit(self, train: Dataset, *, seed: int, dp=None, progress: bool = True, work_dir=None, resume: bool = False,
            reference: Dataset | None = None):
        if self.sigma <= 0 or self.smooth_px < 0:
            raise UsageError(
                f"noise: sigma must be > 0 and smooth_px >= 0, got sigma={self.sigma}, smooth_px={self.smooth_px}"
            )
        if dp is not None:
            raise UsageError("noise does not train, so it cannot train with DP (tags.supports_dp is False)")
        self.shape_ = tuple(train.shape)
        return self

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> Dataset:
        from scipy import ndimage

        check_is_fitted(self, ("shape_",))
        rng = np.random.default_rng(seed)
        H, W = self.shape_
        if masks is not None:
            masks = np.asarray(masks, dtype=np.uint8)
            n = len(masks)
        if n is None or n < 0:
            raise UsageError(f"noise.sample needs n >= 0 or masks, got n={n}")
        imgs = rng.normal(0, 1, (n, H, W))
        if self.smooth_px:
            imgs = ndimage.gaussian_filter(imgs, (0, self.smooth_px, self.smooth_px))
            imgs = imgs / max(imgs.std(), 1e-9)
        imgs = (self.sigma * imgs).astype(np.float32)
        if masks is None:
            yy, xx = np.mgrid[:H, :W]
            masks = np.zeros((n, H, W), np.uint8)
            for i in range(n):
                cy, cx = H / 2 + rng.normal(0, H / 20), W / 2 + rng.normal(0, W / 20)
                r = np.hypot(yy - cy, xx - cx)
                r_lv = H * rng.uniform(0.08, 0.14)
                masks[i][(r < r_lv + H * 0.06) & (np.hypot(yy - cy, xx - cx - r_lv * 2) < r_lv * 1.3)] = 1
                masks[i][r < r_lv + H * 0.06] = 2
                masks[i][r < r_lv] = 3
        return _synthetic_dataset(imgs, masks, self.name)

    @property
    def image_size_(self) -> tuple[int, int] | None:
        shape = getattr(self, "shape_", None)
        return None if shape is None else tuple(int(v) for v in shape)

    def save(self, path) -> None:
        check_is_fitted(self, ("shape_",))
        with atomic_dir(path) as tmp:  # marked as a model, replaced whole
            (tmp / "config.json").write_text(
                json.dumps(
                    {
                        "format": "cmraudit-generator",
                        "format_version": 1,
                        "generator": self.name,
                        "params": self.get_params(),
                        "shape": list(self.shape_),
                    }
                )
            )

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: cannot read config.json ({e})") from e
        obj = cls(**cfg.get("params", {}))
        obj.shape_ = tuple(cfg["shape"])
        return obj
