"""cmraudit: train synthetic cardiac-MRI generators and audit what they leak.

The front door (docs/api.md); names load on first use, so ``import cmraudit`` stays fast::

    import cmraudit
    res = cmraudit.run(generator="ddpm", preset="micro", out="runs/micro")
    print(res.summary()); res.verdicts; res.to_frame()
    cmraudit.audit(train=..., holdout=..., synthetic=..., out=...)
    cmraudit.evaluate(train=..., holdout=..., synthetic=..., out=...)
    ds = cmraudit.read_dataset("prepared/")
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("cmraudit")
except PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0+unknown"

#: public name -> module that defines it (imported on first access: module ``__getattr__``)
_LAZY = {
    "run": ".api", "audit": ".api", "evaluate": ".api",
    "Dataset": ".data.dataset", "read_dataset": ".data.dataset", "write_dataset": ".data.dataset",
    "RunConfig": ".pipeline", "AuditRunConfig": ".auditing", "EvaluateConfig": ".evaluation",
    "AuditConfig": ".privacy.config", "ShadowConfig": ".privacy.config",
    "Report": ".results", "RunResult": ".results", "RunSection": ".results", "DataSection": ".results",
    "GeneratorSection": ".results", "DPSection": ".results", "PrivacySection": ".results",
    "FidelitySection": ".results", "UtilitySection": ".results", "SCHEMA_VERSION": ".results",
    "read_report": ".report.io",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'cmraudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
