"""A module imported on first attribute access: ``torch = LazyModule("torch")`` keeps a light module light (the CLI
and ``import cmraudit`` start without torch) while its functions use ``torch.…`` as usual."""
from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
