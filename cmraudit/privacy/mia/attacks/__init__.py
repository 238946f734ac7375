"""Registered white-box membership attacks that use the structure of diffusion and flow models.

Each is a subclass of :class:`.base.Attack` registered in :data:`cmraudit.registry.ATTACKS` (the one attack
registry, also holding the black-box and loss attacks); :func:`get_attack` builds one; :func:`missing_hooks`
says which hooks a generator lacks for it (``GeneratorTags.hooks``). The audit (``audit --attacks``) and the Python
API select them by name; each is scored by ``evaluate_attack`` (patient-level AUC, TPR at 1 % / 0.1 % FPR, CIs).
"""

from __future__ import annotations

from ..interface import ATTACKS, offered_hooks
from .base import Attack
from .conditional_gap import ConditionalGap
from .flow_gap import FlowGap
from .grad_norm import GradNorm
from .pia import PIA, PIAN
from .secmi import SecMI
from .sima import SimA, SimAMC


def register(cls: type[Attack]) -> type[Attack]:
    """Register an attack class in this process (built-ins: a line in ``cmraudit.registry``; a package: an entry
    point)."""
    return ATTACKS.register(cls.name, cls)


def attack_names() -> tuple[str, ...]:
    """The registered attacks that score a candidate dataset from generator hooks (these classes and third parties')."""
    return tuple(n for n in ATTACKS.names() if isinstance(ATTACKS.get(n), type) and issubclass(ATTACKS.get(n), Attack))


def get_attack(name: str, **params) -> Attack:
    return ATTACKS.get(name)(**params)


def missing_hooks(generator, attack: Attack | type[Attack]) -> list[str]:
    return [h for h in attack.needs if h not in offered_hooks(generator)]


__all__ = ["ATTACKS", "PIA", "PIAN", "Attack", "ConditionalGap", "FlowGap", "GradNorm", "SecMI", "SimA", "SimAMC",
           "attack_names", "get_attack", "missing_hooks", "offered_hooks", "register"]
