"""A module imported on first attribute access: ``torch = LazyModule("torch")`` keeps a light module light (the CLI
and ``import cmraudit`` start without torch, matplotlib or most of SciPy) while its functions use ``torch.…`` as
usual. Only for third-party modules; the project's own modules are imported at module level (docs/design.md § 3.2).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
