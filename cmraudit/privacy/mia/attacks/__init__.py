"""Registered white-box membership attacks that use the structure of diffusion and flow models.

``ATTACKS`` maps a name to its class; :func:`get_attack` builds one; :func:`missing_hooks` says which hooks a
generator lacks for it (``GeneratorTags.hooks``). The audit (``audit --attacks``) and the Python API select
them by name; each is scored by ``evaluate_attack`` (patient-level AUC, TPR at 1 % / 0.1 % FPR, bootstrap CIs).
"""

from __future__ import annotations

from ....errors import UsageError
from .base import Attack
from .conditional_gap import ConditionalGap
from .flow_gap import FlowGap
from .grad_norm import GradNorm
from .pia import PIA, PIAN
from .secmi import SecMI
from .sima import SimA, SimAMC

ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    if not cls.name or cls.name in ATTACKS:
        raise UsageError(f"attack {cls.__name__}: name {cls.name!r} is empty or already registered")
    ATTACKS[cls.name] = cls
    return cls


for _cls in (PIA, PIAN, SecMI, SimA, SimAMC, ConditionalGap, FlowGap, GradNorm):
    register(_cls)


def attack_names() -> tuple[str, ...]:
    return tuple(ATTACKS)


def get_attack(name: str, **params) -> Attack:
    if name not in ATTACKS:
        raise UsageError(f"unknown attack {name!r}; registered: {', '.join(ATTACKS)}")
    return ATTACKS[name](**params)


def offered_hooks(generator) -> set[str]:
    tags = getattr(generator, "tags", None)
    hooks = set(getattr(tags, "hooks", ()) or ())
    if getattr(tags, "has_loss", False):
        hooks.add("loss")
    return hooks


def missing_hooks(generator, attack: Attack | type[Attack]) -> list[str]:
    return [h for h in attack.needs if h not in offered_hooks(generator)]


__all__ = ["ATTACKS", "Attack", "attack_names", "get_attack", "missing_hooks", "offered_hooks", "register"]
