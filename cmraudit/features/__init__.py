"""Feature spaces shared by the privacy and fidelity stages, and exact FAISS neighbours.

Shared entry point (the fidelity stage calls the same functions):

>>> from cmraudit.features import extract_features, fit_features
>>> # one call: fit the space on ``pool`` (data the auditor may use: train ∪ holdout),
>>> # then embed every dataset given; returns one float32 [N_i, D] array per dataset
>>> f_train, f_syn = extract_features("domain", train, synthetic, pool=pool, seed=0)
>>> # or keep the fitted extractor to embed more sets later
>>> fx = fit_features("pixel", pool=None, seed=0, size=32)
>>> fx.transform(ds)            # [N, D] float32

Spaces (the registry ``FEATURE_SPACES``, :mod:`cmraudit.registry`; third parties add theirs through the
entry-point group ``cmraudit.feature_spaces``):

- ``pixel`` — :class:`~cmraudit.features.pixel.PixelFeatures`: flattened pixels, area-downsampled
  to ``size``² (default 32; ``size=None`` keeps the native resolution). No fitting, no pool needed.
- ``domain`` — :class:`~cmraudit.features.domain.DomainFeatures`: a small conv encoder trained
  self-supervised on ``pool`` (augmentation-invariant contrastive learning; exactly flip
  invariant), deterministic by ``seed``; or a user encoder (``encoder=PATH``: TorchScript or
  config.json + weights). A ``pool`` is required unless ``encoder`` is given.
- ``polar`` — :class:`~cmraudit.features.polar.PolarFeatures`: weight-free polar-harmonic
  magnitudes around the intensity centroid (invariant to flips and rotations, approximately
  to shifts). No fitting.
- ``spectral`` — :class:`~cmraudit.features.spectral.SpectralFeatures`: weight-free log-magnitude
  spectrum in polar coordinates (invariant to the dihedral group, shifts, contrast and window/level);
  the candidate pre-filter of the registered copy search. No fitting.

Every space subclasses :class:`~cmraudit.features.base.FeatureSpace` and declares its ``invariances``. An
extractor object (anything with ``fit(pool, *, seed)`` and ``transform(ds)``) may be passed instead of a name.
Inputs may be :class:`~cmraudit.data.Dataset` objects or image arrays [N, H, W].
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UsageError
from .base import FEATURE_SPACES, FeatureSpace
from .domain import DomainFeatures, load_encoder
from .neighbours import Neighbours, build_index, knn
from .pixel import PixelFeatures
from .polar import PolarFeatures
from .spectral import SpectralFeatures

def make_features(space: str | Any, **params):
    """An unfitted extractor for a space name (or the object itself when one is passed)."""
    if not isinstance(space, str):
        if params:
            raise UsageError("parameters can only be given with a feature-space name, not with an extractor object")
        return space
    cls = FEATURE_SPACES.get(space)
    try:
        return cls(**params)
    except TypeError as e:
        raise UsageError(f"feature space {space!r} rejected its parameters {sorted(params)}: {e}") from e


def fit_features(space: str | Any, *, pool=None, seed: int, progress: bool = False, **params):
    """Make and fit an extractor. ``pool``: data the auditor may learn from (train ∪ holdout)."""
    fx = make_features(space, **params)
    if getattr(fx, "fitted_", None) is not None or getattr(fx, "model_", None) is not None:
        return fx
    name = getattr(fx, "name", str(space))
    if pool is None and getattr(fx, "needs_pool", False) and getattr(fx, "encoder", None) is None:
        raise UsageError(f"feature space {name!r} is learned and needs pool= (train ∪ holdout); got none")
    return fx.fit(pool, seed=seed, progress=progress)


def _images(x):
    return x.images if hasattr(x, "images") else np.asarray(x)


def extract_features(
    space: str | Any, *datasets, pool=None, seed: int, progress: bool = False, **params
) -> list[np.ndarray]:
    """Fit ``space`` on ``pool`` and embed each dataset: one float32 [N_i, D] array per input."""
    fx = fit_features(space, pool=pool, seed=seed, progress=progress, **params)
    return [fx.transform_images(_images(d)) for d in datasets]


__all__ = [
    "FEATURE_SPACES",
    "DomainFeatures",
    "FeatureSpace",
    "Neighbours",
    "PixelFeatures",
    "PolarFeatures",
    "SpectralFeatures",
    "build_index",
    "extract_features",
    "fit_features",
    "knn",
    "load_encoder",
    "make_features",
]
