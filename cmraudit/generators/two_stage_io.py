"""Save / load of the two-stage generators: ``config.json`` plus one safetensors file per network.

:class:`TwoStageIO` is a base of :class:`~cmraudit.generators.two_stage.TwoStageGenerator`; the format is that of
``cmraudit/generators/checkpoint.py`` (weights + JSON config, never pickled code).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import CheckpointError
from .base import check_is_fitted
from .checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    atomic_dir,
    load_weights,
    read_config,
    save_weights,
    write_json_atomic,
)
from .distributed import is_main_process

if TYPE_CHECKING:  # pragma: no cover
    from .two_stage import TwoStageGenerator


class TwoStageIO:
    """Mixin: ``save`` (EMA weights of the mask model and of each image module, plus the config) and ``load``."""

    def _fitted_meta(self) -> dict:
        return {
            "image_size_": self.image_size_,
            "vendors_": list(self.vendors_),
            "training_time_s_": self.training_time_s_,
            "seed_": self.seed_,
            "dp_": getattr(self, "dp_", None),
            "mask_class_freq_": getattr(self, "mask_class_freq_", None),
            "training_": {
                k: ({kk: vv for kk, vv in v.items() if kk != "losses"} if isinstance(v, dict) else v)
                for k, v in self.training_.items()
            },
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` plus one safetensors file per network (EMA weights), atomically."""
        check_is_fitted(self, ("mask_model_", "image_modules_"))
        if not is_main_process():
            return
        cls = type(self)
        with atomic_dir(path) as tmp:
            save_weights(tmp / "mask_model.safetensors", self.mask_model_.state_dict())
            for k, m in self.image_modules_.items():
                save_weights(tmp / f"{k}.safetensors", m.state_dict())
            write_json_atomic(tmp / "config.json", {
                "format": FORMAT, "format_version": FORMAT_VERSION, "generator": self.name,
                "class": f"{cls.__module__}:{cls.__qualname__}", "cmraudit_version": __version__,
                "params": self.get_params(), "fitted": self._fitted_meta(), "modules": sorted(self.image_modules_),
            })

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TwoStageGenerator":
        path = Path(path)
        cfg = read_config(path)
        if cfg.get("generator") != cls.name:
            raise CheckpointError(
                f"{path}: saved generator is {cfg.get('generator')!r}, not {cls.name!r}; load it with its own class or "
                "cmraudit.generators.checkpoint.load_generator"
            )
        params = {k: v for k, v in cfg["params"].items() if k in cls._defaults()}
        for k in (
            "mask_size",
            "mask_sampling_steps",
        ):  # added in 0.1: older checkpoints ran the mask model at full size
            params.setdefault(k, None)
        params.setdefault("mask_position_bins", 0)  # added after 0.1: older checkpoints: an unconditional mask model
        gen = cls(**params)
        for k, v in cfg["fitted"].items():
            setattr(gen, k, v)
        gen.mask_model_ = gen._mask_model().load_state_dict(load_weights(path / "mask_model.safetensors"))
        freq = getattr(gen, "mask_class_freq_", None)
        gen.mask_model_.class_freq_ = None if freq is None else np.asarray(freq, dtype=np.float64)
        modules = gen.build_image_modules(seed=0, n_classes=gen._n_classes())
        for k, m in modules.items():
            try:
                m.load_state_dict(load_weights(path / f"{k}.safetensors"))
            except RuntimeError as e:
                raise CheckpointError(
                    f"{path / (k + '.safetensors')}: weights do not match the network of config.json "
                    f"({str(e).splitlines()[0]})"
                ) from e
            m.eval()
        gen.image_modules_ = modules
        return gen
