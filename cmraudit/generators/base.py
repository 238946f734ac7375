"""The generator contract (docs/design.md § 5), sklearn-style.

``__init__`` stores hyper-parameters only; ``fit`` returns self and sets fitted state
(attributes ending in ``_``); ``sample`` draws a synthetic :class:`~cmraudit.data.Dataset`;
``save``/``load`` round-trip through a directory (weights + JSON config, never pickled code).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..data.dataset import Dataset
from ..errors import NotFittedError


@dataclass(frozen=True)
class GeneratorTags:
    """What a generator can do; the pipeline and the conformance suite read these."""

    conditional: bool = True  # sample(masks=...) honours the masks
    two_stage: bool = True  # has its own mask model: sample(n=...) works
    supports_dp: bool = False  # fit(dp=DPConfig) trains with DP-SGD
    has_loss: bool = False  # loss(images, masks, t=...) for white-box attacks
    vendor_conditional: bool = False  # sample(..., vendor=...) renders a vendor style
    needs_reference_data: bool = False  # reference generators (copycat/holdout) replay data
    deterministic_fit: bool = True  # same seed -> same fitted state on CPU
    # white-box hooks offered to the attacks (cmraudit.privacy.mia.attacks; each attack lists what it needs):
    # "loss" (loss(images, masks, t=, seed=)), "prediction_pair" (legacy FCRE), "noise_prediction"
    # (noise_schedule(t) and predict_noise(x_t, masks, t=); cmraudit.generators.noise_hooks), "velocity_loss"
    # (loss is the flow-matching reconstruction error at interpolation time u = 1 − t/T)
    hooks: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hooks"] = list(self.hooks)
        return d


@runtime_checkable
class Generator(Protocol):
    tags: GeneratorTags

    def fit(self, train: "Dataset", *, seed: int, dp: Any = None, progress: bool = True) -> "Generator": ...

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int) -> "Dataset": ...

    def save(self, path) -> None: ...

    @classmethod
    def load(cls, path) -> "Generator": ...

    def get_params(self) -> dict: ...


def check_is_fitted(gen: Any, attributes: tuple[str, ...] | None = None) -> None:
    """Raise NotFittedError unless ``gen`` has fitted attributes (names ending in ``_``)."""
    if attributes is None:
        fitted = [k for k, v in vars(gen).items() if k.endswith("_") and not k.startswith("__") and v is not None]
    else:
        fitted = [a for a in attributes if getattr(gen, a, None) is not None]
        if len(fitted) < len(attributes):
            fitted = []
    if not fitted:
        raise NotFittedError(
            f"this {type(gen).__name__} is not fitted yet; call fit(train, seed=...) before using it"
        )
