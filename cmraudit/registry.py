"""One registry shape for every pluggable part: generators, feature spaces, attacks, shadow executors.

A :class:`Registry` maps a name to a factory (a class or a function). Parts come from two places:

- **built-ins**, registered below by reference (``"module:attr"``, imported on first use, so listing the names
  imports nothing) or in code with :meth:`Registry.register` (generators: entry points of the ``cmraudit``
  distribution itself, in pyproject.toml);
- **third parties**, through the registry's entry-point group (``cmraudit.generators``,
  ``cmraudit.feature_spaces``, ``cmraudit.attacks``, ``cmraudit.executors``): ``name = "module:attr"``.

It fails closed like the generator registry always did: a part that fails to import is listed as broken with its
error and raised only when requested, even one that calls ``sys.exit`` or raises KeyboardInterrupt at import; a
built-in name cannot be shadowed (the other entry point is listed in :attr:`Registry.conflicts`, with a warning);
between two third-party distributions the first on the path wins, with a warning naming both. Discovery is cached
(:meth:`Registry.refresh` forgets it). docs/design.md § 3.1, docs/plugins.md.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable

from .errors import CmrAuditError, ConfigError, PluginError, UsageError

#: the distribution whose entry points are built-ins; its names cannot be shadowed
BUILTIN_DIST = "cmraudit"


@dataclass
class PluginInfo:
    """One registered part: where it comes from and, once imported, its factory (``cls``) or its import error."""

    name: str
    value: str  # "module:attr"
    distribution: str
    version: str
    cls: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.cls is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "entry_point": self.value, "distribution": self.distribution,
                "version": self.version}


def _dist(ep: EntryPoint) -> tuple[str, str]:
    d = getattr(ep, "dist", None)
    if d is None:
        return "unknown", "unknown"
    return d.metadata["Name"] or "unknown", d.version or "unknown"


def _load(info: PluginInfo, ep: EntryPoint) -> PluginInfo:
    """Import one part; *anything* it raises (SystemExit and KeyboardInterrupt included) marks it broken."""
    try:
        info.cls = ep.load()
    except BaseException as e:  # noqa: BLE001 - fail closed: a plugin can never end or hijack the process
        at = " at import" if isinstance(e, (SystemExit, KeyboardInterrupt)) else ""
        info.error = f"{type(e).__name__}{at}: {e}"
    return info


def _ref(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


class Registry:
    """Name → factory, with entry-point discovery (``group``) and fail-closed lookup.

    ``kind`` names the part in messages ("generator", "attack", …); ``error`` is the exception raised for an
    unknown name (PluginError, exit 3, by default; a registry of option values raises UsageError or ConfigError,
    exit 2). A broken part always raises PluginError (exit 3).
    """

    def __init__(self, kind: str, group: str | None, *, error: type[CmrAuditError] = PluginError):
        self.kind = kind
        self.group = group
        self.error = error
        self._builtins: dict[str, PluginInfo] = {}
        self._found: dict[str, PluginInfo] | None = None
        self.conflicts: list[PluginInfo] = []

    # ------------------------------------------------------------------ registration
    def register(self, name: str, factory: Any = None):
        """Register a built-in ``factory`` under ``name``: an object, or a ``"module:attr"`` reference imported on
        first use (as an entry point is). Without ``factory``, a class decorator."""

        def add(obj: Any) -> Any:
            ref = obj if isinstance(obj, str) else _ref(obj)
            if not name or name in self._builtins:
                raise PluginError(f"{self.kind} {ref}: name {name!r} is empty or already registered")
            self._builtins[name] = PluginInfo(name=name, value=ref, distribution=BUILTIN_DIST, version="builtin",
                                              cls=None if isinstance(obj, str) else obj)
            self._found = None
            return obj

        return add if factory is None else add(factory)

    def _resolve(self, info: PluginInfo) -> PluginInfo:
        """Import a built-in registered by reference (once); a failure marks it broken like an entry point."""
        if info.cls is None and info.error is None and info.distribution == BUILTIN_DIST and ":" in info.value:
            mod, _, attr = info.value.partition(":")
            try:
                obj = importlib.import_module(mod)
                for part in attr.split("."):
                    obj = getattr(obj, part)
                info.cls = obj
            except Exception as e:  # noqa: BLE001 - listed as broken, raised when requested
                info.error = f"{type(e).__name__}: {e}"
        return info

    # ------------------------------------------------------------------ discovery
    def refresh(self) -> None:
        """Forget cached discovery (after installing a plugin in the same process)."""
        self._found = None

    def discover(self) -> dict[str, PluginInfo]:
        if self._found is None:
            self._found = self._discover()
        return self._found

    def _discover(self) -> dict[str, PluginInfo]:
        by_name: dict[str, list[tuple[Any, str, str]]] = {n: [(i, i.distribution, i.version)]
                                                          for n, i in self._builtins.items()}
        for ep in entry_points(group=self.group) if self.group else ():
            dist, ver = _dist(ep)
            cands = by_name.setdefault(ep.name, [])
            if any(c[0].value == ep.value for c in cands):
                continue  # the same entry point seen twice (e.g. editable + metadata)
            cands.append((ep, dist, ver))
        found: dict[str, PluginInfo] = {}
        self.conflicts.clear()
        for name, cands in by_name.items():
            cands = sorted(cands, key=lambda c: c[1] != BUILTIN_DIST)  # stable: built-in first, else path order
            first, dist, ver = cands[0]
            for other, odist, over in cands[1:]:
                why = f"name {name!r} is taken by {dist} ({first.value}); this entry point is ignored"
                self.conflicts.append(PluginInfo(name=name, value=other.value, distribution=odist, version=over,
                                                 error=why))
                warnings.warn(
                    f"{self.kind} name {name!r} is registered by both {dist} ({first.value}) and {odist} "
                    f"({other.value}); using the one from {dist}"
                    + (" (built-in names cannot be shadowed)" if dist == BUILTIN_DIST else ""),
                    stacklevel=3,
                )
            if isinstance(first, PluginInfo):
                found[name] = first
            else:
                found[name] = _load(PluginInfo(name=name, value=first.value, distribution=dist, version=ver), first)
        return found

    # ------------------------------------------------------------------ lookup
    def names(self, *, ok_only: bool = True) -> tuple[str, ...]:
        """Registered names, built-ins first in their order; without ``ok_only`` also the broken ones. A built-in
        registered by reference counts as importable until it is requested (listing names imports nothing)."""
        return tuple(n for n, i in self.discover().items() if i.ok or i.error is None or not ok_only)

    def list(self) -> list[PluginInfo]:
        """Every part, imported (a broken one carries its error)."""
        return sorted((self._resolve(i) for i in self.discover().values()), key=lambda p: p.name)

    def __contains__(self, name: object) -> bool:
        return name in self.discover()

    def info(self, name: str) -> PluginInfo:
        found = self.discover()
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise self.error(f"unknown {self.kind} {name!r}; installed {self.kind}s: {known}")
        info = self._resolve(found[name])
        if info.cls is None:
            raise PluginError(f"{self.kind} {name!r} ({info.distribution}) failed to import: {info.error}")
        return info

    def get(self, name: str) -> Any:
        return self.info(name).cls

    def name_of(self, cls: type) -> str | None:
        """The name ``cls`` is registered under (None when it is not)."""
        return next((n for n, i in self.discover().items() if i.cls is cls or (i.cls is None and i.value == _ref(cls))),
                    None)

    def make(self, name: str, **params) -> Any:
        """Build the part ``name`` with ``params``; a part's own exception becomes a PluginError naming it."""
        return self.call(name, "its constructor", self.get(name), **params)

    def call(self, name: str, what: str, fn: Callable, *args, **kwargs) -> Any:
        """Call part ``name``'s ``fn``; its own exceptions become a PluginError naming the part (exit 3)."""
        return guarded_call(self.kind, name, what, fn, *args, **kwargs)


def guarded_call(kind: str, name: str, what: str, fn: Callable, /, *args, **kwargs) -> Any:
    """Call a plugin's function; an exception that is not a deliberate cmraudit error becomes a PluginError (exit 3)."""
    try:
        return fn(*args, **kwargs)
    except CmrAuditError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's bug must not look like cmraudit's (exit 5)
        line = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise PluginError(f"{kind} {name!r} failed in {what}: {type(e).__name__}: {line}") from e


#: every generator, the built-ins included, comes from the entry-point group ``cmraudit.generators`` (the built-ins
#: are entry points of the cmraudit distribution). Here, not in ``generators/``, so that the privacy audit can
#: resolve a shadow generator by name without importing the generators package (docs/design.md § 3.2).
GENERATORS = Registry("generator", "cmraudit.generators")

#: feature spaces of the copy search and the black-box attacks (docs/privacy.md); third parties:
#: ``cmraudit.feature_spaces``
FEATURE_SPACES = Registry("feature space", "cmraudit.feature_spaces", error=UsageError)
FEATURE_SPACES.register("pixel", "cmraudit.features.pixel:PixelFeatures")
FEATURE_SPACES.register("domain", "cmraudit.features.domain:DomainFeatures")
FEATURE_SPACES.register("polar", "cmraudit.features.polar:PolarFeatures")
FEATURE_SPACES.register("spectral", "cmraudit.features.spectral:SpectralFeatures")

#: membership-inference attacks (docs/privacy.md); third parties: ``cmraudit.attacks``
ATTACKS = Registry("attack", "cmraudit.attacks", error=UsageError)
ATTACKS.register("gan_leaks", "cmraudit.privacy.mia.blackbox:GanLeaks")
ATTACKS.register("domias", "cmraudit.privacy.mia.blackbox:Domias")
ATTACKS.register("loss", "cmraudit.privacy.mia.whitebox:LossAttack")
ATTACKS.register("fcre", "cmraudit.privacy.mia.whitebox:FCRE")
ATTACKS.register("pia", "cmraudit.privacy.mia.attacks.pia:PIA")
ATTACKS.register("pian", "cmraudit.privacy.mia.attacks.pia:PIAN")
ATTACKS.register("secmi", "cmraudit.privacy.mia.attacks.secmi:SecMI")
ATTACKS.register("sima", "cmraudit.privacy.mia.attacks.sima:SimA")
ATTACKS.register("sima_mc", "cmraudit.privacy.mia.attacks.sima:SimAMC")
ATTACKS.register("conditional_gap", "cmraudit.privacy.mia.attacks.conditional_gap:ConditionalGap")
ATTACKS.register("flow_gap", "cmraudit.privacy.mia.attacks.flow_gap:FlowGap")
ATTACKS.register("grad_norm", "cmraudit.privacy.mia.attacks.grad_norm:GradNorm")

#: shadow-model executors (docs/privacy.md); third parties: ``cmraudit.executors``
EXECUTORS = Registry("executor", "cmraudit.executors", error=ConfigError)
EXECUTORS.register("inline", "cmraudit.privacy.mia.executors:InlineExecutor")
EXECUTORS.register("local", "cmraudit.privacy.mia.executors:LocalExecutor")
EXECUTORS.register("slurm", "cmraudit.privacy.mia.executors:SlurmExecutor")
EXECUTORS.register("ray", "cmraudit.privacy.mia.executors:RayExecutor")
