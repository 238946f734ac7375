"""Generator discovery through the entry-point group ``cmraudit.generators``.

The core never imports a plugin by name: every generator, the built-ins included, is
found here. A plugin that fails to import is recorded as broken (listed with its error,
raised only when requested); duplicate names warn naming both distributions.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from ..errors import PluginError

GROUP = "cmraudit.generators"


@dataclass
class PluginInfo:
    name: str
    value: str  # "module:attr"
    distribution: str
    version: str
    cls: type | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.cls is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "entry_point": self.value, "distribution": self.distribution, "version": self.version}


def _dist(ep: EntryPoint) -> tuple[str, str]:
    d = getattr(ep, "dist", None)
    if d is None:
        return "unknown", "unknown"
    return d.metadata["Name"] or "unknown", d.version or "unknown"


@lru_cache(maxsize=1)
def _discover() -> dict[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=GROUP):
        dist, ver = _dist(ep)
        if ep.name in found:
            prev = found[ep.name]
            if prev.value == ep.value:
                continue  # the same entry point seen twice (e.g. editable + metadata)
            warnings.warn(
                f"generator name {ep.name!r} is registered by both {prev.distribution} ({prev.value}) and "
                f"{dist} ({ep.value}); using the one from {prev.distribution}",
                stacklevel=2,
            )
            continue
        info = PluginInfo(name=ep.name, value=ep.value, distribution=dist, version=ver)
        try:
            info.cls = ep.load()
        except Exception as e:  # noqa: BLE001 - any import failure marks the plugin broken
            info.error = f"{type(e).__name__}: {e}"
        found[ep.name] = info
    return found


def refresh() -> None:
    """Forget cached discovery (after installing a plugin in the same process)."""
    _discover.cache_clear()


def list_generators() -> list[PluginInfo]:
    return sorted(_discover().values(), key=lambda p: p.name)


def get_plugin(name: str) -> PluginInfo:
    plugins = _discover()
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise PluginError(f"unknown generator {name!r}; installed generators: {known}")
    info = plugins[name]
    if info.cls is None:
        raise PluginError(f"generator {name!r} ({info.distribution}) failed to import: {info.error}")
    return info


def get_generator_class(name: str) -> type:
    return get_plugin(name).cls  # type: ignore[return-value]


def make_generator(name: str, **params):
    """Instantiate a registered generator with hyper-parameters; bad params give a PluginError/UsageError."""
    cls = get_generator_class(name)
    try:
        return cls(**params)
    except TypeError as e:
        raise PluginError(f"generator {name!r} rejected its parameters: {e}") from e
