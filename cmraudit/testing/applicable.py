"""Which conformance checks apply to a generator, by its tags (docs/plugins.md § 3).

A check that does not apply is reported ``skipped`` with the reason — never "passed" — in the spirit of
scikit-learn's expected-failure tags.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from ..generators.base import GeneratorTags
from .checks import (
    CHECKS,
    check_bad_params_rejected,
    check_hooks,
    check_loss,
    check_sample_masks,
    check_sample_n,
)
from .harness import CheckContext

#: check -> (tag that makes it apply, why it is skipped otherwise); checks not listed always apply
APPLIES: dict[Callable, tuple[Callable[[Any], bool], str]] = {
    check_sample_n: (lambda t: t.two_stage, "tags.two_stage is False: the generator does not draw its own masks"),
    check_sample_masks: (lambda t: t.conditional, "tags.conditional is False: sample(masks=…) is not offered"),
    check_loss: (lambda t: t.has_loss, "tags.has_loss is False: no loss() hook for white-box attacks"),
}


def skip_reason(check: Callable[[CheckContext], None], cls: type) -> str | None:
    """Why ``check`` does not apply to ``cls`` (by its tags or declared cases), or None when it does."""
    tags = getattr(cls, "tags", None)
    if check is check_bad_params_rejected:
        bad = getattr(cls, "conformance_bad_params", None)
        return None if callable(bad) and bad() else "the class declares no conformance_bad_params()"
    if check is check_hooks and not tuple(getattr(tags, "hooks", ()) or ()):
        return "tags.hooks is empty: no white-box hooks declared"
    if check in APPLIES and isinstance(tags, GeneratorTags) and not APPLIES[check][0](tags):
        return APPLIES[check][1]
    return None


def yield_checks(cls: type) -> Iterator[tuple[Callable[[CheckContext], None], str | None]]:
    """Every check with the reason it is skipped for ``cls`` (None: it applies), in suite order."""
    for check in CHECKS:
        yield check, skip_reason(check, cls)
