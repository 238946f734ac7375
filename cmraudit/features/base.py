"""The feature-space interface and registry (docs/design.md § 6, § 10).

A feature space is fitted on a pool of images the auditor may learn from (train ∪ holdout; most spaces need none),
then embeds images as float32 ``[N, D]`` vectors whose Euclidean distance the copy search and the black-box attacks
use. It declares what it is invariant to: ``invariances`` (machine-readable names from :data:`INVARIANCES`) and
``invariance`` (the sentence report.json carries in ``copy_detection.space.invariance``). Register a space in
:data:`cmraudit.registry.FEATURE_SPACES` (built-ins: one line there) or, from another distribution, with an entry
point in the group ``cmraudit.feature_spaces``; ``cmraudit audit --feature`` and the privacy audit then accept it.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..registry import FEATURE_SPACES

#: the names a space may list in ``invariances``
INVARIANCES = ("flips", "rotations", "shifts", "contrast", "window_level", "gamma", "noise", "blur")


class FeatureSpace:
    """Base class: set ``name``, ``invariances``, ``invariance``, ``needs_pool``; implement ``transform_images``
    (and ``fit`` when the space is learned). ``__init__`` stores keyword parameters only."""

    name: ClassVar[str] = ""
    invariances: ClassVar[tuple[str, ...]] = ()
    invariance: ClassVar[str] = "none declared"
    needs_pool: ClassVar[bool] = False

    def fit(self, pool=None, *, seed: int = 0, progress: bool = False) -> "FeatureSpace":
        """Learn from ``pool`` (images [N, H, W] of train ∪ holdout); a weight-free space only marks itself fitted."""
        self.fitted_ = True
        return self

    def transform_images(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, D] embeddings of images [N, H, W] on the [-1, 1] scale."""
        raise NotImplementedError

    def transform(self, ds) -> np.ndarray:
        return self.transform_images(np.asarray(ds.images))

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


__all__ = ["FEATURE_SPACES", "INVARIANCES", "FeatureSpace"]
