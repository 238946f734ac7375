"""Public plugin conformance suite (docs/design.md § 5).

>>> from cmraudit.testing import check_generator
>>> results = check_generator(MyGenerator)            # list of CheckResult (passed / failed / skipped + reason)
>>> check_generator(MyGenerator, raise_on_fail=True)  # AssertionError naming every failed check

In a plugin's own pytest suite, one test per check:

>>> from cmraudit.testing import parametrize_with_checks
>>> @parametrize_with_checks([MyGenerator])
... def test_conformance(check):
...     check()

The class provides micro hyper-parameters through ``conformance_params()`` (a classmethod
returning a dict; CPU, seconds) and optionally ``conformance_bad_params()`` (a list of
parameter dicts that must be rejected with a UsageError) and ``conformance_fit_kwargs()``
(:class:`cmraudit.generators.BaseGenerator` derives ``conformance_params`` from the micro preset).
Checks the generator's tags make inapplicable are *skipped* with the reason (``yield_checks``), never "passed".
"""
from __future__ import annotations

from typing import Sequence

from .applicable import yield_checks
from .checks import CHECKS
from .harness import CheckContext, CheckResult, make_context, run_check
from .toy import make_toy_dataset

__all__ = ["check_generator", "parametrize_with_checks", "yield_checks", "CheckResult", "CHECKS", "make_toy_dataset"]


def check_generator(cls: type, *, name: str | None = None, params: dict | None = None, fit_kwargs: dict | None = None,
                    seed: int = 0, raise_on_fail: bool = False) -> list[CheckResult]:
    """Run every conformance check on generator class ``cls``; one CheckResult per check.

    ``params`` default to ``cls.conformance_params()``; the generator is fitted once on a
    toy dataset (6 patients × 4 slices) and shared by the checks that need a fitted model.
    """
    ctx = make_context(cls, params=params, fit_kwargs=fit_kwargs, seed=seed)
    results = [run_check(c, ctx, skip) for c, skip in yield_checks(cls)]
    if raise_on_fail:
        failed = [r for r in results if r.failed]
        if failed:
            label = name or getattr(cls, "name", cls.__name__)
            raise AssertionError(
                f"{label}: {len(failed)} conformance check(s) failed: "
                + "; ".join(f"{r.name}: {r.message}" for r in failed)
            )
    return results


class _Check:
    """A zero-argument callable running one check on a shared context (pytest id = check name)."""

    def __init__(self, check, ctx_factory, skip: str | None = None):
        self.check, self._ctx, self.skip = check, ctx_factory, skip

    def __call__(self) -> None:
        if self.skip is not None:
            import pytest

            pytest.skip(self.skip)
        res = run_check(self.check, self._ctx())
        if res.failed:
            raise AssertionError(f"{res.name}: {res.message}")

    def __repr__(self) -> str:
        return self.check.__name__


def parametrize_with_checks(generators: Sequence[type | tuple[type, dict]]):
    """pytest decorator: one test case per (generator, check); the fitted model is shared per generator."""
    import pytest

    cases, ids = [], []
    for g in generators:
        cls, params = (g if isinstance(g, tuple) else (g, None))
        holder: dict = {}

        def factory(cls=cls, params=params, holder=holder) -> CheckContext:
            if "ctx" not in holder:
                holder["ctx"] = make_context(cls, params=params)
            return holder["ctx"]

        for c, skip in yield_checks(cls):
            cases.append(_Check(c, factory, skip))
            ids.append(f"{getattr(cls, 'name', cls.__name__)}-{c.__name__}")
    return pytest.mark.parametrize("check", cases, ids=ids)
