"""Generator discovery through the entry-point group ``cmraudit.generators`` (a :class:`cmraudit.registry.Registry`).

The core never imports a plugin by name: every generator, the built-ins included, is found here. A plugin that
fails to import is recorded as broken (listed with its error, raised only when requested) — even one that calls
``sys.exit`` or raises KeyboardInterrupt at import. A built-in name (an entry point of the ``cmraudit``
distribution) cannot be shadowed by a third-party package: the built-in is used and the other entry point is
listed as a conflict. Other duplicate names warn naming both distributions.
"""
from __future__ import annotations

from ..registry import BUILTIN_DIST, GENERATORS, PluginInfo, guarded_call

GROUP = GENERATORS.group
#: third-party entry points ignored because they reuse a taken name (shown by ``cmraudit generators list``)
CONFLICTS: list[PluginInfo] = GENERATORS.conflicts

__all__ = ["BUILTIN_DIST", "CONFLICTS", "GENERATORS", "GROUP", "PluginInfo", "call_plugin", "generator_name",
           "get_generator_class", "get_plugin", "list_generators", "make_generator", "name_of", "refresh"]


def call_plugin(name: str, what: str, fn, *args, **kwargs):
    """Call a plugin's method; an exception that is not a deliberate cmraudit error becomes a PluginError (exit 3)."""
    return guarded_call("generator", name, what, fn, *args, **kwargs)


def refresh() -> None:
    """Forget cached discovery (after installing a plugin in the same process)."""
    GENERATORS.refresh()


def list_generators() -> list[PluginInfo]:
    return GENERATORS.list()


def get_plugin(name: str) -> PluginInfo:
    return GENERATORS.info(name)


def get_generator_class(name: str) -> type:
    return GENERATORS.get(name)


def generator_name(generator) -> str | None:
    """The registry name of a generator object's class (None when its class is not a registered generator)."""
    return GENERATORS.name_of(type(generator))


def make_generator(name: str, **params):
    """Instantiate a registered generator with hyper-parameters; bad params give a PluginError/UsageError."""
    return GENERATORS.make(name, **params)


def name_of(cls: type) -> str:
    """The entry-point name of a generator class (that of its nearest registered ancestor, else the class
    name): plugins do not repeat their name in code (``BaseGenerator.name`` reads it from here)."""
    for c in getattr(cls, "__mro__", (cls,)):
        name = GENERATORS.name_of(c)
        if name is not None:
            return name
    return cls.__name__
