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
from .errors import CmrAuditError
from .estimates import skipped
from .fidelity.evaluate import evaluate_fidelity
from .privacy.audit import audit_privacy
from .privacy.canary import canary_audit
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


def dp_audit_stage(*, data: Dataset, canaries: int, make_generator: Callable[[], Any], dp, seed: int,
                   attack: str = "auto") -> dict:
    """The run's ``dp_audit`` block: a canary audit (cmraudit/privacy/canary.py) trained with the run's settings.

    A second generator is trained, with the run's preset, parameters and DP options, on all the run's patients
    except the canaries not drawn in; the run's own model is not changed. Canary patients are named by opaque
    labels (``canary-01`` …) in the block, so report.json names no training patient (the ids stay in the local
    ``dp_audit.json`` of ``cmraudit dp-audit``). A canary count the data cannot hold gives a skipped block."""
    try:
        res = canary_audit(make_generator=make_generator, data=data, canaries=canaries, seed=seed, dp=dp,
                           attack=attack)
    except CmrAuditError as e:
        return skipped(f"dp audit with {canaries} canaries: {e}")
    block = res.to_dict()
    for i, c in enumerate(block["canaries"], 1):
        c["patient_id"] = f"canary-{i:02d}"
    return block | {"trained_on": f"the run's {len(set(data.patient_id))} patients (canaries drawn in at random)"}
