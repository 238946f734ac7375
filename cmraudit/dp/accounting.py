"""Privacy accounting for DP-SGD: ε from (σ, q, steps), per-stage budgets and their composition.

All numbers come from Opacus's accountants (``prv``: the privacy-loss-random-variable accountant of
Gopi et al. 2021, returning its *upper* bound on ε; ``rdp``: Rényi DP of the sampled Gaussian
mechanism, Mironov et al. 2019). The mechanism accounted for is the Poisson-subsampled Gaussian
mechanism with sample rate ``q`` (probability that a given **patient** is in a step) and noise
multiplier ``σ`` (noise std / clipping norm), repeated ``steps`` times.

Units: ε is dimensionless (natural-log privacy loss), δ is a probability, both per patient
(add/remove-one-patient neighbouring datasets).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

from ..errors import PluginError, UsageError

ACCOUNTANTS = ("prv", "rdp")

GUARANTEE_TEXT = (
    "Patient-level (ε, δ)-differential privacy under add/remove-one-patient neighbouring datasets: "
    "for any two training sets that differ by all slices of one patient, the probability of any set "
    "of released generator weights (and hence of anything sampled from them) changes by at most a "
    "factor e^ε, plus δ. Each training step samples every patient independently with probability q "
    "(Poisson sampling) and draws one slice of each sampled patient, so a patient contributes at most "
    "one clipped gradient (L2 norm ≤ C) per step; Gaussian noise of standard deviation σ·C is added "
    "to the summed gradient. Assumptions: only the DP-trained stages listed here saw patient data; "
    "hyper-parameters, preprocessing and the split were not tuned on the private training patients; "
    "the accountant is told the q and the number of steps actually run (checked at run time); "
    "floating-point and timing side channels are out of scope; the pseudo-random generators are "
    "seeded for reproducibility and are not cryptographically secure."
)


def _check_accountant(accountant: str, *, option: str = "--accountant") -> str:
    if accountant not in ACCOUNTANTS:
        raise UsageError(f"{option} {accountant!r} is not an accountant; expected one of {', '.join(ACCOUNTANTS)}")
    return accountant


def _epsilon_of_history(history: Sequence[tuple[float, float, int]], *, delta: float, accountant: str) -> float:
    from opacus.accountants import create_accountant

    history = [(float(s), float(q), int(n)) for s, q, n in history if int(n) > 0]
    if not history:
        return 0.0
    acc = create_accountant(mechanism=_check_accountant(accountant))
    acc.history = list(history)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(acc.get_epsilon(delta=delta))


def compute_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """ε spent after ``steps`` Poisson-subsampled Gaussian steps (σ = ``noise_multiplier``, q = ``sample_rate``).

    Returns ε at the given δ from Opacus's ``accountant`` ("prv" returns the accountant's upper bound,
    "rdp" the RDP conversion). 0.0 for zero steps; ``inf`` for σ = 0.
    """
    problems = []
    if not noise_multiplier >= 0:
        problems.append(f"noise_multiplier={noise_multiplier} must be ≥ 0")
    if not 0 < sample_rate <= 1:
        problems.append(f"sample_rate={sample_rate} must be in (0, 1]")
    if int(steps) < 0:
        problems.append(f"steps={steps} must be ≥ 0")
    if not 0 < delta < 1:
        problems.append(f"delta={delta} must be in (0, 1)")
    if problems:
        raise UsageError("compute_epsilon: " + "; ".join(problems))
    _check_accountant(accountant)
    if int(steps) == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    return _epsilon_of_history([(noise_multiplier, sample_rate, int(steps))], delta=delta, accountant=accountant)


def noise_multiplier_for(*, epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Smallest σ (to Opacus's binary-search tolerance 0.01 in ε) whose ε after ``steps`` is ≤ ``epsilon``."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=int(steps),
                accountant=_check_accountant(accountant),
            ))
    except ValueError as e:
        raise UsageError(
            f"--dp-epsilon {epsilon}: no noise level reaches ε ≤ {epsilon} at δ={delta} with q={sample_rate:.4g} "
            f"over {steps} steps ({e}); raise --dp-epsilon, lower the number of steps or the batch size"
        ) from e


@dataclass(frozen=True)
class StageBudget:
    """The privacy spent by one training stage (mask model, image model, autoencoder …).

    ``epsilon`` is the ε actually spent at ``delta`` for the steps run (``inf`` for a stage trained on
    patient data without DP); ``target_epsilon`` what the stage was calibrated for; ``sample_rate``
    the per-step probability that a patient is sampled; ``steps`` optimiser steps actually run;
    ``max_grad_norm`` the per-patient clipping norm C; ``noise_multiplier`` σ (noise std = σ·C).
    """

    name: str
    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    noise_multiplicity: int = 1
    target_epsilon: float | None = None
    n_patients: int | None = None
    expected_batch_size: float | None = None

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    @classmethod
    def non_private(cls, name: str) -> "StageBudget":
        """A stage that was trained on patient data *without* DP: voids the composed guarantee."""
        return cls(name=name, epsilon=math.inf, delta=0.0, accountant="none", noise_multiplier=0.0,
                   sample_rate=0.0, steps=0, max_grad_norm=math.inf)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("name")
        return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in d.items()}


def _json_float(x: float | None):
    """JSON has no inf/nan: a non-finite ε is reported as null (no guarantee)."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def compose_budget(stages: Sequence[StageBudget], *, target_epsilon: float | None = None,
                   split: dict[str, float] | None = None) -> dict:
    """The ``generator.dp`` block of report.json: the composed total and the per-stage budgets.

    Keys required by the report schema: ``epsilon`` (total ε), ``delta`` (total δ), ``accountant``;
    also ``unit`` ("patient"), ``patient_level`` (True), ``per_stage`` (stage → ε), ``stages`` (stage →
    ε, δ, σ, q, steps, C, K, …), ``composition``, ``basic_composition``, ``guarantee`` (text for the report).

    Stages that saw the same patients compose sequentially. Two valid bounds are computed at the same
    δ_total = Σ δ_i: (a) basic composition, ε_total = Σ ε_i; (b) when every stage used the same
    accountant, that accountant over the joint history of all stages (tighter). ``epsilon`` is the
    smaller of the two and ``composition`` says which one it is. A stage trained on patient data without
    DP voids the guarantee: that is a :class:`PluginError` (report ``generator.dp = null`` instead).
    ``target_epsilon``: the ε the run asked for (default: the sum of the stages' targets); ``split``: the
    stage weights of a joint calibration (reported as ``split``, with ``calibration`` saying how σ was set).
    """
    stages = list(stages)
    if not stages:
        raise UsageError("compose_budget: no stages given; pass one StageBudget per stage trained on patient data")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UsageError(f"compose_budget: duplicate stage names {names}; each stage must be named once")
    open_ = [s.name for s in stages if not s.private]
    if open_:
        raise PluginError(
            f"stage(s) {', '.join(open_)} were trained on patient data without DP, so the generator has no "
            "differential-privacy guarantee; train every stage that sees patient data with DP "
            "(or report generator.dp = null)"
        )
    delta_total = float(sum(s.delta for s in stages))
    eps_basic = float(sum(s.epsilon for s in stages))
    accountants = sorted({s.accountant for s in stages})
    clip = {s.max_grad_norm for s in stages}
    block = {
        "epsilon": eps_basic,
        "delta": delta_total,
        "accountant": accountants[0] if len(accountants) == 1 else "mixed:" + ",".join(accountants),
        "unit": "patient",
        "patient_level": True,
        "composition": "basic (sum of per-stage ε and δ)",
        "basic_composition": {"epsilon": eps_basic, "delta": delta_total},
        "target_epsilon": _json_float(target_epsilon) if target_epsilon is not None else (
            _json_float(sum(s.target_epsilon for s in stages))
            if all(s.target_epsilon is not None for s in stages) else None),
        "max_grad_norm": clip.pop() if len(clip) == 1 else None,
        "per_stage": {s.name: float(s.epsilon) for s in stages},
        "stages": {s.name: s.to_dict() for s in stages},
        "guarantee": GUARANTEE_TEXT,
    }
    if split is not None:
        block["split"] = {k: float(v) for k, v in split.items()}
        block["calibration"] = "joint: σ of every stage set together so the joint accountant spends target_epsilon"
    if len(accountants) == 1:
        acc = accountants[0]
        history = [(s.noise_multiplier, s.sample_rate, s.steps) for s in stages]
        eps_joint = _epsilon_of_history(history, delta=delta_total, accountant=acc)
        block["joint_accountant_epsilon"] = eps_joint
        if eps_joint <= eps_basic:
            block["epsilon"] = eps_joint
            block["composition"] = f"{acc} accountant over the joint history of all stages, at δ_total = Σ δ_i"
    return block


def split_budget(*, epsilon: float, delta: float, stages: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per-stage (ε_i, δ_i) = (ε/n, δ/n), so that basic composition of n stages stays within (ε, δ).

    The reported total (joint accountant) is then at most ε, usually below.
    """
    stages = list(stages)
    if not stages:
        raise UsageError("split_budget: no stages given")
    n = len(stages)
    return {s: (epsilon / n, delta / n) for s in stages}
