"""The attack interface and registry: every membership attack of the audit is one registered :class:`Attack`.

An attack declares what it ``needs`` — ``"synthetic"`` (black-box: the released samples and their features),
``"loss"`` (the generator's per-example loss, ``tags.has_loss``) or white-box hook names the generator lists in
``GeneratorTags.hooks`` — and turns an :class:`AuditContext` into one score per candidate slice (``score``: train
members first, then holdout non-members; higher = more likely a member; it never sees the labels).
:meth:`Attack.evaluate` checks the needs (a block ``skipped`` with the reason when they are not met), scores and
calls :func:`~.metrics.evaluate_attack` (slice and patient level, patient-bootstrap CIs); an attack that reports
several blocks (one per feature space, say) overrides ``evaluate``. Built-ins are registered by reference in
:data:`cmraudit.registry.ATTACKS` (one line each); another distribution adds an entry point in the group
``cmraudit.attacks`` (docs/plugins.md, "A membership attack").
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from ...errors import UsageError
from ...estimates import skipped
from ...registry import ATTACKS
from .metrics import evaluate_attack

#: needs that are not generator hooks
DATA_NEEDS = ("synthetic",)


def subsample_patients(ds, cap: int, seed: int):
    """At most about ``cap`` slices of ``ds``, whole patients drawn with ``seed``."""
    if len(ds) <= cap:
        return ds
    rng = np.random.default_rng(seed)
    pats = np.unique(ds.patient_id.astype(str))
    rng.shuffle(pats)
    per = max(1, int(round(len(ds) / len(pats))))
    keep = pats[: max(1, cap // per)]
    return ds.select_patients(keep)


def audit_timesteps(generator, default) -> tuple:
    """The white-box timestep grid: the generator's ``audit_timesteps`` when it has one, else ``default``."""
    ts = getattr(generator, "audit_timesteps", None)
    return tuple(ts) if ts else tuple(default)


def offered_hooks(generator) -> set[str]:
    """The white-box hooks a generator offers (``GeneratorTags.hooks``, plus ``loss`` when ``tags.has_loss``)."""
    tags = getattr(generator, "tags", None)
    hooks = set(getattr(tags, "hooks", ()) or ())
    if getattr(tags, "has_loss", False):
        hooks.add("loss")
    return hooks


@dataclass
class AuditContext:
    """What the audit hands every attack. ``feats``: space → (train, holdout, synthetic) embeddings;
    ``member`` / ``groups``: labels and patients of the candidates train ∪ holdout (for evaluation only);
    ``folds``: (holdout, train) 2-fold cross-fit of the black-box reference by patient; ``ev``: bootstrap settings;
    ``steps(name)``: a timing context; ``cache``: results attacks may share (e.g. one network pass)."""

    train: Any
    holdout: Any
    seed: int
    config: Any
    synthetic: Any = None
    generator: Any = None
    feats: dict = field(default_factory=dict)
    folds: Any = None
    steps: Callable = lambda name: contextlib.nullcontext()  # noqa: E731
    shadow: Any = None
    reference: Any = None
    out_dir: Any = None
    cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.member = np.r_[np.ones(len(self.train), bool), np.zeros(len(self.holdout), bool)]
        self.groups = np.r_[self.train.patient_id.astype(str), self.holdout.patient_id.astype(str)]
        self.ev = dict(seed=self.seed, n_resamples=self.config.n_resamples, confidence=self.config.confidence)

    def whitebox_candidates(self):
        """(members, non-members): train and holdout subsampled by patient to ``config.max_whitebox_slices``."""
        cap = self.config.max_whitebox_slices
        return (subsample_patients(self.train, cap // 2, self.seed),
                subsample_patients(self.holdout, cap // 2, self.seed + 1))


class Attack:
    """Base class of every registered attack: set the class attributes, implement :meth:`score`."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()
    threat_model: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise UsageError(
                f"attack {self.name!r}: unknown parameter(s) {unknown}; "
                f"valid: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params = {**self.defaults, **params}

    def missing(self, ctx: AuditContext) -> str | None:
        """Why this attack cannot run on ``ctx`` (None when it can)."""
        hooks = [n for n in self.needs if n not in DATA_NEEDS]
        if "synthetic" in self.needs and (ctx.synthetic is None or not ctx.feats):
            return "no synthetic set (or no feature space) to attack"
        if not hooks:
            return None
        if ctx.generator is None:
            return "no generator given (white-box attacks need --model)"
        lacking = [h for h in hooks if h not in offered_hooks(ctx.generator)]
        if lacking:
            gen = getattr(ctx.generator, "name", type(ctx.generator).__name__)
            return (f"the generator {gen!r} does not offer the hook(s) {', '.join(lacking)} that {self.name} needs "
                    "(GeneratorTags.hooks)")
        return None

    def score(self, ctx: AuditContext) -> np.ndarray:
        """One float per candidate (``ctx.train`` then ``ctx.holdout``); higher = more likely a member."""
        raise NotImplementedError

    def info(self, ctx: AuditContext) -> dict:
        """Extra facts for the report block (``threat_model`` is added)."""
        return {"params": dict(self.params)} if self.params else {}

    def evaluate(self, ctx: AuditContext) -> dict[str, Any]:
        """``{name: AttackResult}`` or ``{name: skipped}``: the attack's blocks of ``privacy.mia``."""
        why = self.missing(ctx)
        if why:
            return {self.name: skipped(why)}
        with ctx.steps(self.name):
            scores = np.asarray(self.score(ctx), dtype=np.float64)
        if scores.shape != ctx.member.shape:
            raise UsageError(f"attack {self.name!r} returned {scores.shape} scores for {len(ctx.member)} candidates")
        info = {"threat_model": self.threat_model, **self.info(ctx)}
        return {self.name: evaluate_attack(self.name, scores=scores, member=ctx.member, groups=ctx.groups, info=info,
                                           **ctx.ev)}


__all__ = ["ATTACKS", "DATA_NEEDS", "Attack", "AuditContext", "audit_timesteps", "offered_hooks", "subsample_patients"]
