"""The front door (docs/api.md): ``cmraudit.run``, ``cmraudit.audit`` and ``cmraudit.evaluate``.

Each takes its config object or the same fields as keywords and returns a :class:`cmraudit.results.RunResult`
(``.report``, ``.verdicts``, ``.summary()``, ``.to_frame()``); the files written are those of the CLI command.

>>> import cmraudit
>>> res = cmraudit.run(generator="ddpm", preset="micro", out="runs/micro")   # doctest: +SKIP
>>> print(res.summary())                                                       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from .auditing import AuditRunConfig, audit as _audit
from .errors import UsageError
from .evaluation import EvaluateConfig, evaluate as _evaluate
from .pipeline import RunConfig, run as _run

__all__ = ["run", "audit", "evaluate"]


def _config(cls: type, config: Any, kwargs: dict, what: str):
    if config is not None and kwargs:
        raise UsageError(f"cmraudit.{what}: give a {cls.__name__} or keyword fields, not both")
    if config is not None:
        if not isinstance(config, cls):
            raise UsageError(f"cmraudit.{what}: expected a {cls.__name__}, got {type(config).__name__}")
        return config
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UsageError(f"cmraudit.{what}: {e}") from e


def run(config: Any = None, /, **fields: Any):
    """Split → fit → sample → audit → report (``cmraudit run``); ``fields``: those of :class:`RunConfig`."""
    return _run(_config(RunConfig, config, fields, "run"))


def audit(config: Any = None, /, **fields: Any):
    """The privacy audit of a synthetic set (``cmraudit audit``); ``fields``: those of :class:`AuditRunConfig`."""
    return _audit(_config(AuditRunConfig, config, fields, "audit"))


def evaluate(config: Any = None, /, **fields: Any):
    """All three axes on an existing synthetic set (``cmraudit evaluate``); ``fields``: those of EvaluateConfig."""
    return _evaluate(_config(EvaluateConfig, config, fields, "evaluate"))
