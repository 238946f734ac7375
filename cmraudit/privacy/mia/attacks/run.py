"""Run registered attacks inside the privacy audit: candidates, reference non-members, timing, evaluation."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ....data.dataset import Dataset
from ....estimates import skipped
from ..interface import ATTACKS, Attack, offered_hooks
from ..metrics import evaluate_attack


def split_reference(holdout, candidates_h, *, seed: int):
    """(reference, non-member candidates): holdout patients outside the candidates, else a quarter of them."""
    cand_p = set(candidates_h.patient_id.astype(str))
    rest = [p for p in np.unique(holdout.patient_id.astype(str)) if p not in cand_p]
    if len(rest) >= 2:
        return holdout.select_patients(np.asarray(rest)), candidates_h
    pats = np.unique(candidates_h.patient_id.astype(str))
    np.random.default_rng([int(seed), 0xF10]).shuffle(pats)
    k = max(2, len(pats) // 4)
    if len(pats) - k < 2:
        return None, candidates_h
    return candidates_h.select_patients(pats[:k]), candidates_h.select_patients(pats[k:])


def run_attacks(
    names: Sequence[str | Attack],
    *,
    generator,
    train,
    holdout,
    seed: int,
    cap: int,
    subsample: Callable,
    steps: Callable,
    ev: dict,
    params: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """One ``evaluate_attack`` result (or a skipped block) per attack (a name or an instance), members = ``train``."""
    out: dict[str, Any] = {}
    if not names:
        return out
    attacks = [a if isinstance(a, Attack) else ATTACKS.get(a)(**(params or {}).get(a, {})) for a in names]
    if generator is None:
        return {a.name: skipped("no generator given (white-box attacks need --model)") for a in attacks}
    sub_t = subsample(train, cap // 2, seed)
    sub_h = subsample(holdout, cap // 2, seed + 1)
    for attack in attacks:
        name = attack.name
        missing = [h for h in attack.needs if h not in offered_hooks(generator)]
        if missing:
            out[name] = skipped(
                f"the generator {getattr(generator, 'name', type(generator).__name__)!r} does not offer the "
                f"hook(s) {', '.join(missing)} that {name} needs (GeneratorTags.hooks)"
            )
            continue
        reference, cand_h = None, sub_h
        if attack.needs_reference:
            reference, cand_h = split_reference(holdout, sub_h, seed=seed)
            if reference is None:
                out[name] = skipped(
                    f"{name} needs reference non-member patients besides the candidates; the holdout is too small"
                )
                continue
        cand = Dataset.concat([sub_t, cand_h])
        member = np.r_[np.ones(len(sub_t), bool), np.zeros(len(cand_h), bool)]
        with steps(f"white-box {name}"):
            t0 = time.perf_counter()
            scores = attack.score(generator, cand, seed, reference=reference)
            dt = time.perf_counter() - t0
        info = attack.info() | {"seconds_per_slice": dt / max(1, len(cand))}
        if reference is not None:
            info["reference_patients"] = int(len(set(reference.patient_id.astype(str))))
        out[name] = evaluate_attack(
            name, scores=scores, member=member, groups=cand.patient_id.astype(str), info=info, **ev
        )
    return out
