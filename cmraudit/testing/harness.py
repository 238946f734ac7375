"""What the conformance checks share and how one is run: the :class:`CheckContext` (the class, its micro params,
toy data and a lazily fitted instance), :func:`make_context`, :func:`run_check` and its :class:`CheckResult`
(passed / failed / skipped with the message and time).
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..data.dataset import Dataset
from ..errors import CmrAuditError, UsageError
from .toy import make_toy_dataset


STATUSES = ("passed", "failed", "skipped")


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` passed / failed / skipped, ``message`` (the failure or skip reason), time."""

    name: str
    status: str
    message: str = ""
    time_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "passed": self.passed, "message": self.message,
                "time_s": round(self.time_s, 3)}


@dataclass
class CheckContext:
    """What the checks share: the class, its micro params, toy data and (lazily) a fitted instance."""

    cls: type
    params: dict
    fit_kwargs: dict = field(default_factory=dict)
    seed: int = 0
    _train: Dataset | None = None
    _fitted: Any = None
    _fit_error: BaseException | None = None

    @property
    def train(self) -> Dataset:
        if self._train is None:
            size = int(self.params.get("image_size") or 32)
            self._train = make_toy_dataset(n_patients=6, slices=4, size=size, seed=self.seed)
        return self._train

    def make(self, **overrides):
        return self.cls(**{**self.params, **overrides})

    def fitted(self):
        if self._fit_error is not None:
            raise AssertionError(f"fit failed earlier: {type(self._fit_error).__name__}: {self._fit_error}")
        if self._fitted is None:
            try:
                gen = self.make()
                out = gen.fit(self.train, seed=self.seed, progress=False, **self.fit_kwargs)
                self._fitted = (gen, out)
            except BaseException as e:  # noqa: BLE001 - recorded, reported by every dependent check
                self._fit_error = e
                raise
        return self._fitted[0]

    def tags(self):
        return getattr(self.cls, "tags", None)


def make_context(
    cls: type, *, params: dict | None = None, fit_kwargs: dict | None = None, seed: int = 0
) -> CheckContext:
    if not inspect.isclass(cls):
        raise UsageError(f"check_generator expects a generator class, got {type(cls).__name__}")
    if params is None:
        hook = getattr(cls, "conformance_params", None)
        params = dict(hook()) if callable(hook) else {}
    if fit_kwargs is None:
        hook = getattr(cls, "conformance_fit_kwargs", None)
        fit_kwargs = dict(hook()) if callable(hook) else {}
    tags = getattr(cls, "tags", None)
    if getattr(tags, "needs_reference_data", False) and "reference" not in fit_kwargs:
        size = int(params.get("image_size") or 32)
        fit_kwargs["reference"] = make_toy_dataset(n_patients=4, slices=4, size=size, seed=seed + 1, id_prefix="ref")
    return CheckContext(cls=cls, params=params, fit_kwargs=fit_kwargs, seed=seed)


def run_check(check: Callable[[CheckContext], None], ctx: CheckContext, skip: str | None = None) -> CheckResult:
    if skip is not None:
        return CheckResult(check.__name__, "skipped", skip)
    t0 = time.perf_counter()
    try:
        check(ctx)
        return CheckResult(check.__name__, "passed", "", time.perf_counter() - t0)
    except (AssertionError, CmrAuditError, Exception) as e:  # noqa: BLE001 - a check fails, the suite goes on
        msg = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
        return CheckResult(check.__name__, "failed", msg, time.perf_counter() - t0)
