"""Generator discovery through the entry-point group ``cmraudit.generators``.

The core never imports a plugin by name: every generator, the built-ins included, is
found here. A plugin that fails to import is recorded as broken (listed with its error,
raised only when requested) — even one that calls ``sys.exit`` or raises KeyboardInterrupt at
import. A built-in name cannot be shadowed by a third-party package: the built-in is used and the
other entry point is listed as a conflict. Other duplicate names warn naming both distributions.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from ..errors import CmrAuditError, PluginError

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


#: the distribution whose entry points are the built-in generators; its names cannot be shadowed
BUILTIN_DIST = "cmraudit"
#: third-party entry points ignored because they reuse a taken name (shown by ``cmraudit generators list``)
CONFLICTS: list[PluginInfo] = []


def _load(info: PluginInfo, ep: EntryPoint) -> PluginInfo:
    """Import one plugin; *anything* it raises (SystemExit and KeyboardInterrupt included) marks it broken."""
    try:
        info.cls = ep.load()
    except BaseException as e:  # noqa: BLE001 - fail closed: a plugin can never end or hijack the process
        at = " at import" if isinstance(e, (SystemExit, KeyboardInterrupt)) else ""
        info.error = f"{type(e).__name__}{at}: {e}"
    return info


@lru_cache(maxsize=1)
def _discover() -> dict[str, PluginInfo]:
    """Built-in names always win over third-party ones (the loser is listed as a conflict, with a warning);
    between two third-party distributions the first on the path wins, with a warning naming both."""
    by_name: dict[str, list[tuple[EntryPoint, str, str]]] = {}
    for ep in entry_points(group=GROUP):
        dist, ver = _dist(ep)
        cands = by_name.setdefault(ep.name, [])
        if any(c[0].value == ep.value for c in cands):
            continue  # the same entry point seen twice (e.g. editable + metadata)
        cands.append((ep, dist, ver))
    found: dict[str, PluginInfo] = {}
    CONFLICTS.clear()
    for name, cands in by_name.items():
        cands = sorted(cands, key=lambda c: c[1] != BUILTIN_DIST)  # stable: built-in first, else path order
        ep, dist, ver = cands[0]
        for other, odist, over in cands[1:]:
            why = f"name {name!r} is taken by {dist} ({ep.value}); this entry point is ignored"
            CONFLICTS.append(PluginInfo(name=name, value=other.value, distribution=odist, version=over, error=why))
            warnings.warn(
                f"generator name {name!r} is registered by both {dist} ({ep.value}) and {odist} ({other.value}); "
                f"using the one from {dist}" + (" (built-in names cannot be shadowed)" if dist == BUILTIN_DIST else ""),
                stacklevel=2,
            )
        found[name] = _load(PluginInfo(name=name, value=ep.value, distribution=dist, version=ver), ep)
    return found


def call_plugin(name: str, what: str, fn, *args, **kwargs):
    """Call a plugin's method; an exception that is not a deliberate cmraudit error becomes a PluginError (exit 3)."""
    try:
        return fn(*args, **kwargs)
    except CmrAuditError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's bug must not look like cmraudit's (exit 5)
        line = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise PluginError(f"generator {name!r} failed in {what}: {type(e).__name__}: {line}") from e


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
    return call_plugin(name, "its constructor", cls, **params)


def name_of(cls: type) -> str:
    """The entry-point name of a generator class (that of its nearest registered ancestor, else the class
    name): plugins do not repeat their name in code (``BaseGenerator.name`` reads it from here)."""
    by_cls = {info.cls: name for name, info in _discover().items() if info.cls is not None}
    for c in getattr(cls, "__mro__", (cls,)):
        if c in by_cls:
            return by_cls[c]
    return cls.__name__
