"""The audit stages of a run (docs/design.md § 9): each ``(StageContext) -> dict``, one section of report.json.

``STAGES`` lists them in order (privacy first: it fits the domain encoder that fidelity reuses); ``run`` and
``evaluate`` (cmraudit/pipeline.py, cmraudit/evaluate.py) call each and mark a stage that raises a CmrAuditError
``skipped`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .data.dataset import Dataset
from .features import fit_features
from .fidelity.evaluate import evaluate_fidelity
from .privacy.audit import audit_privacy
from .utility.evaluate import utility_stage


@dataclass
class StageContext:
    run_dir: Path
    train: Dataset
    holdout: Dataset
    test: Dataset
    synthetic: Dataset
    synthetic_paired: Dataset | None
    generator: Any
    seed: int
    device: str
    progress: bool
    config: Any  # cmraudit.pipeline.RunConfig (or evaluate's EvaluateConfig)
    shared: dict = field(default_factory=dict)  # objects stages share (fitted feature extractors)


def _audit_features(ctx: StageContext) -> tuple:
    """Fit the pixel and domain feature spaces once per run (the domain encoder on train ∪ holdout only)."""
    if "features" not in ctx.shared:
        pool = np.concatenate([np.asarray(ctx.train.images), np.asarray(ctx.holdout.images)])
        ctx.shared["features"] = (fit_features("pixel", seed=ctx.seed),
                                  fit_features("domain", pool=pool, seed=ctx.seed, progress=ctx.progress))
    return ctx.shared["features"]


def _stage_privacy(ctx: StageContext) -> dict:
    res = audit_privacy(train=ctx.train, holdout=ctx.holdout, synthetic=ctx.synthetic, generator=ctx.generator,
                        features=_audit_features(ctx), seed=ctx.seed, out_dir=ctx.run_dir, progress=ctx.progress,
                        reference=ctx.test)
    return res.to_dict()


def _stage_fidelity(ctx: StageContext) -> dict:
    pool = Dataset.concat([ctx.train, ctx.holdout])
    domain = _audit_features(ctx)[1]  # paired rows follow synthetic_paired.meta["test_rows"]
    return evaluate_fidelity(real=ctx.test, synthetic=ctx.synthetic, paired=ctx.synthetic_paired, pool=pool,
                             seed=ctx.seed, extractors={"domain": domain}, progress=ctx.progress).to_dict()


def _stage_utility(ctx: StageContext) -> dict:
    return utility_stage(ctx)


#: privacy first: it fits the domain encoder that fidelity reuses
STAGES: list[tuple[str, Callable[[StageContext], dict]]] = [
    ("privacy", _stage_privacy), ("fidelity", _stage_fidelity), ("utility", _stage_utility),
]
