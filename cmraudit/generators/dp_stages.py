"""The DP-SGD side of a two-stage generator: which stages train on patient data and their sampling plan.

:class:`DPStages` is a base of :class:`~cmraudit.generators.two_stage.TwoStageGenerator`: ``fit(dp=...)`` asks
:meth:`DPStages._dp_plan` for each stage's patient sample rate and planned steps, calibrates the noise of all stages
jointly (:meth:`cmraudit.dp.DPConfig.calibrate`) and trains each stage with ``train_loop(dp=...)`` (docs/dp.md).
"""
from __future__ import annotations

from ..errors import UsageError
from .training import TrainConfig


class DPStages:
    """Mixin: ``dp_stages`` (class attribute of the generator) and the per-stage plan of the joint DP budget."""

    def _dp_train_configs(self) -> dict[str, TrainConfig]:
        """The training config of each stage in ``dp_stages`` (override when a plugin adds a stage)."""
        return {"mask_model": self._train_config(steps=self.mask_steps, epochs=self.mask_epochs),
                "image_model": self._train_config(steps=self.steps, epochs=self.epochs)}

    def _dp_plan(self, *, n_items: int, n_patients: int) -> dict[str, tuple[float, int]]:
        """Stage → (patient sample rate q, planned steps): what the joint noise calibration needs up front."""
        configs = self._dp_train_configs()
        missing = sorted(set(self.dp_stages) - set(configs))
        if missing:
            raise UsageError(f"{type(self).__name__}: no training config for DP stage(s) {missing}; "
                             "override _dp_train_configs")
        return {s: (min(1.0, int(configs[s].batch_size) / max(1, n_patients)), configs[s].total_steps(n_items))
                for s in self.dp_stages}
