"""The generator contract (docs/design.md § 5, docs/plugins.md), sklearn-style.

``__init__`` stores hyper-parameters only (explicit keywords, ``device`` among them); ``fit`` returns self and
sets fitted state (attributes ending in ``_``); ``sample`` draws a synthetic :class:`~cmraudit.data.Dataset`;
``save``/``load`` round-trip through a directory (weights + JSON config, never pickled code).
:class:`BaseGenerator` is the class every plugin subclasses: parameters, validation and presets derive from its
``__init__`` signature, and its name is the entry point's (:func:`cmraudit.generators.registry.name_of`).
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..data.dataset import Dataset
from ..errors import NotFittedError, UsageError
from .presets import PRESET_NAMES
from .registry import name_of


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
    """The contract as a type (for annotations); plugins subclass :class:`BaseGenerator`, which implements it."""

    tags: GeneratorTags

    def fit(self, train: "Dataset", *, seed: int, dp: Any = None, progress: bool = True, work_dir: Any = None,
            resume: bool = False, reference: "Dataset | None" = None) -> "Generator": ...

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> "Dataset": ...

    def save(self, path) -> None: ...

    @classmethod
    def load(cls, path) -> "Generator": ...

    def get_params(self) -> dict: ...


class _EntryPointName:
    """``cls.name``: the entry-point name the class is registered under (the nearest registered ancestor's,
    else the class name): the name is written once, in the plugin's pyproject.toml."""

    def __get__(self, obj: Any, cls: type) -> str:
        return name_of(cls)


class BaseGenerator:
    """The base class of every generator plugin (docs/plugins.md).

    A subclass declares its hyper-parameters as keyword arguments of ``__init__`` (``device`` included) and
    stores each under its own name; ``get_params``, ``set_params``, presets and the conformance parameters
    follow from that signature. It implements ``fit``, ``sample``, ``save`` and ``load`` with the keywords of
    the contract below; the pipeline calls every generator exactly this way (no probing)::

        fit(train, *, seed, dp=None, progress=True, work_dir=None, resume=False, reference=None) -> self
        sample(*, masks=None, n=None, seed, progress=True) -> Dataset

    ``param_problems()`` (a public hook) lists what is wrong with the parameters; ``validate_params()`` raises
    them as one UsageError. ``presets`` maps micro / quick / paper to parameter overrides (may be empty).
    """

    name = _EntryPointName()
    tags: ClassVar[GeneratorTags] = GeneratorTags()
    presets: ClassVar[dict[str, dict]] = {}

    # ------------------------------------------------------------ parameters
    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The constructor's keyword parameters, in signature order."""
        sig = inspect.signature(cls)
        return tuple(n for n, p in sig.parameters.items()
                     if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self")

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls)
        return {n: sig.parameters[n].default for n in cls.param_names()}

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params: Any) -> "BaseGenerator":
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise UsageError(f"{type(self).__name__}: unknown parameter(s) {unknown}; "
                             f"valid parameters: {', '.join(self.param_names())}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def param_problems(self) -> list[str]:
        """Every problem with the parameters (override; collected, raised once by :meth:`validate_params`)."""
        return []

    def check_dp(self) -> None:
        """Hook: raise UsageError when these parameters cannot train under DP-SGD (``tags.supports_dp`` plugins)."""

    def validate_params(self) -> None:
        problems = self.param_problems()
        if problems:
            raise UsageError(f"{type(self).__name__}: invalid parameters: " + "; ".join(problems))

    @classmethod
    def from_preset(cls, preset: str = "quick", **overrides: Any) -> "BaseGenerator":
        """The preset's parameters (none if the class declares no presets) plus ``overrides``."""
        if preset not in PRESET_NAMES:
            raise UsageError(f"preset {preset!r} is unknown; expected one of {', '.join(PRESET_NAMES)}")
        unknown = sorted(set(overrides) - set(cls.param_names()))
        if unknown:
            raise UsageError(f"{cls.__name__}: unknown parameter(s) {unknown}; "
                             f"valid parameters: {', '.join(cls.param_names())}")
        return cls(**{**dict(cls.presets.get(preset, {})), **overrides})

    @classmethod
    def conformance_params(cls) -> dict[str, Any]:
        """Micro parameters for :func:`cmraudit.testing.check_generator`: the micro preset, on the CPU."""
        params = dict(cls.presets.get("micro", {}))
        if "device" in cls.param_names():
            params["device"] = "cpu"
        return params

    # ------------------------------------------------------------ the contract (implemented by plugins)
    def fit(self, train: "Dataset", *, seed: int, dp: Any = None, progress: bool = True, work_dir: Any = None,
            resume: bool = False, reference: "Dataset | None" = None) -> "BaseGenerator":
        raise NotImplementedError(f"{type(self).__name__} does not implement fit()")

    def sample(self, *, masks: np.ndarray | None = None, n: int | None = None, seed: int,
               progress: bool = True) -> "Dataset":
        raise NotImplementedError(f"{type(self).__name__} does not implement sample()")

    def save(self, path: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement save()")

    @classmethod
    def load(cls, path: Any) -> "BaseGenerator":
        raise NotImplementedError(f"{cls.__name__} does not implement load()")


def synthetic_dataset(images: Any, masks: Any, *, generator: str, spacing_mm: Any = None,
                      vendor: Any = None) -> "Dataset":
    """The :class:`Dataset` a plugin's ``sample`` returns: float32 images clipped to [-1, 1], uint8 masks,
    one synthetic patient id per slice (``syn-<generator>-000000`` …) and source ``synthetic:<generator>``."""
    images = np.clip(np.asarray(images, dtype=np.float32), -1, 1)
    n = len(images)
    return Dataset(images=images, masks=np.asarray(masks, dtype=np.uint8),
                   patient_id=np.array([f"syn-{generator}-{i:06d}" for i in range(n)], dtype=object),
                   source=np.full(n, f"synthetic:{generator}", dtype=object), vendor=vendor, spacing_mm=spacing_mm,
                   meta={"provenance": {"generator": generator}})


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
