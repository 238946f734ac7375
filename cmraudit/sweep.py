"""``cmraudit sweep``: one run per privacy budget ε and the privacy–utility trade-off plot.

``run_sweep(config=RunConfig(...), epsilons=[1, 4, 8, inf], out=DIR)`` runs the whole pipeline once per
ε (``inf`` = trained without DP, the non-private reference) into ``DIR/eps-<ε>/`` and writes
``DIR/sweep.json`` (one row per ε with the headline numbers of :mod:`cmraudit.report.compare`) and
``DIR/sweep.png`` (fidelity, utility and MIA AUC against ε).

Headlines, per run: ``frechet_distance`` on the first feature space available (lower is better; same
N and features across the sweep), ``dice_synthetic`` — mean Dice over structures of the segmenter
trained on synthetic data only (higher is better), ``mia_auc_upper`` — max over attacks of the
patient-level MIA AUC 95 % CI upper bound (0.5 = no leak), and ``epsilon_spent`` — the composed ε the
run's report states (``generator.dp.epsilon``; null without DP).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import pipeline
from .errors import DataError, UsageError
from .io_guard import (
    MARKER, atomic_file, make_output_dir, marker_kind, remove_if_created, write_errors, write_text_atomic,
)
from .report.compare import common_fd_space, headline

METRICS: tuple[tuple[str, str, str], ...] = (
    ("frechet_distance", "fidelity: Fréchet distance", "lower is better"),
    ("dice_synthetic", "utility: Dice, trained on synthetic", "higher is better"),
    ("mia_auc_upper", "privacy: MIA AUC (patient, CI upper)", "0.5 = no leak"),
)


def parse_epsilons(text: str | Sequence[float]) -> list[float]:
    """``"1,4,8,inf"`` → ``[1.0, 4.0, 8.0, inf]``; every value > 0, no duplicates."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    out, bad = [], []
    for item in items:
        try:
            e = float(item)
        except (TypeError, ValueError):
            bad.append(str(item))
            continue
        if not e > 0 or math.isnan(e):
            bad.append(str(item))
        else:
            out.append(e)
    if bad or not out:
        raise UsageError(
            f"--epsilons {text!r}: expected comma-separated numbers > 0 or inf, e.g. 1,4,8,inf (bad: {bad or 'empty'})"
        )
    if len(set(out)) != len(out):
        raise UsageError(f"--epsilons {text!r}: each ε must appear once")
    labels = [epsilon_label(e) for e in out]
    if len(set(labels)) != len(labels):  # each ε's run folder is eps-<label>: two values may not share one
        raise UsageError(f"--epsilons {text!r}: values too close to tell apart in the run folders' names "
                         f"({', '.join(sorted({x for x in labels if labels.count(x) > 1}))})")
    return out


def epsilon_label(e: float) -> str:
    return "inf" if math.isinf(e) else f"{e:g}"


@dataclass
class SweepPoint:
    """One run of the sweep: its target ε, run directory and headline numbers (None where not computed)."""

    epsilon: float
    run_dir: str
    epsilon_spent: float | None = None
    frechet_distance: float | None = None
    fd_space: str | None = None
    dice_synthetic: float | None = None
    mia_auc_upper: float | None = None
    copy_rate_upper: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["epsilon"] = None if math.isinf(self.epsilon) else self.epsilon
        d["dp"] = not math.isinf(self.epsilon)
        return d


@dataclass
class SweepResult:
    generator: str
    points: list[SweepPoint]
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "generator": self.generator,
            "points": [p.to_dict() for p in self.points],
            "files": [str(f) for f in self.files],
        }


def point_from_report(report: dict, *, epsilon: float, run_dir: str, fd_space: str | None | bool = True) -> SweepPoint:
    row = headline(report, run=str(run_dir), fd_space=fd_space)
    return SweepPoint(
        epsilon=epsilon,
        run_dir=str(run_dir),
        epsilon_spent=row.epsilon,
        frechet_distance=row.frechet_distance,
        fd_space=row.fd_space,
        dice_synthetic=row.dice_synthetic,
        mia_auc_upper=row.mia_auc_upper,
        copy_rate_upper=row.copy_rate_upper,
    )


def run_sweep(*, config: Any, epsilons: Sequence[float], out: str | os.PathLike,
              run: Callable[[Any], Any] | None = None) -> SweepResult:
    """Run ``config`` (a :class:`cmraudit.pipeline.RunConfig`) once per ε into ``out/eps-<ε>``; write the summary.

    ``run`` defaults to :func:`cmraudit.pipeline.run` (injectable for tests); it must return an object
    with ``run_dir`` and ``report``. Points run in the given order; an error stops the sweep and the finished runs
    stay on disk. ``config.resume`` (``sweep --resume``) keeps every finished point whose run was made with the
    same settings (refused otherwise), resumes an interrupted one and runs the rest; ``config.overwrite`` redoes
    every point. Either way the old summary (``sweep.json``, ``sweep.png``) is removed before the first point runs
    and written anew at the end, so a folder never holds a summary of other runs than its own.
    """
    if run is None:
        run = pipeline.run
    eps = parse_epsilons(epsilons)
    _check_dp_options(config, eps)  # before the first (possibly hours-long) point, not after it
    resume, overwrite = bool(getattr(config, "resume", False)), bool(getattr(config, "overwrite", False))
    if resume and overwrite:
        raise UsageError("--resume keeps the finished points and --overwrite redoes them: give one of the two")
    cfgs = [replace(config, dp_epsilon=None if math.isinf(e) else float(e),
                    out=str(Path(out) / f"eps-{epsilon_label(e)}"),
                    dp_split=None if math.isinf(e) else getattr(config, "dp_split", None)) for e in eps]
    finished = [_finished(cfg, resume=resume, overwrite=overwrite) for cfg in cfgs]  # every point checked first
    created = not Path(out).exists()
    out = make_output_dir(out, kind="sweep")
    if (resume or overwrite) and marker_kind(out) == "sweep":  # only a summary cmraudit wrote; rewritten at the end
        for name in SUMMARY_FILES:
            with write_errors(out / name):
                (out / name).unlink(missing_ok=True)
    done = []
    for e, cfg, kept in zip(eps, cfgs, finished):
        try:
            res = kept if kept is not None else run(cfg)
        except BaseException:
            if created and {p.name for p in out.iterdir()} <= {MARKER}:
                remove_if_created(out, created)  # refused before any work: leave nothing behind
            raise
        done.append((e, res))
    reports = [r.report if isinstance(r.report, dict) else r.report.to_dict() for _, r in done]
    space = common_fd_space(reports)  # one feature space for every point (cmraudit.report.compare)
    points = [point_from_report(rep, epsilon=e, run_dir=str(r.run_dir), fd_space=space)
              for (e, r), rep in zip(done, reports)]
    result = SweepResult(generator=str(config.generator), points=points)
    summary = out / "sweep.json"
    result.files = [summary, plot_sweep(result, out / "sweep.png")]
    write_text_atomic(summary, json.dumps(result.to_dict(), indent=2, allow_nan=False))
    return result


SUMMARY_FILES = ("sweep.json", "sweep.png")
#: the settings a kept point's run must share with the sweep (``sweep --resume``)
SAME_SETTINGS = ("generator", "data", "preset", "seed", "n_samples", "n_paired", "dp_epsilon", "dp_delta",
                 "max_grad_norm", "accountant", "noise_multiplicity", "dp_split", "params", "phantom_subjects",
                 "dp_audit_canaries")


@dataclass
class _Kept:
    run_dir: Path
    report: dict


def _finished(cfg: Any, *, resume: bool, overwrite: bool) -> _Kept | None:
    """The finished run of one point, kept under ``--resume`` once its settings are checked; None when the point is
    to run. Without either option a finished run is refused here, before any point runs."""
    path = Path(cfg.out) / "report.json"
    if not path.is_file() or overwrite:
        return None
    if not resume:
        raise UsageError(f"--out {path.parent.parent}: {path.parent.name} holds a finished run; pass --resume to keep "
                         "the finished points (and resume an interrupted one), or --overwrite to redo them")
    try:
        report = json.loads(path.read_text())
        old = report["run"]["config"]
        if not isinstance(old, dict):
            raise TypeError("run.config is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a readable cmraudit run report ({e}); move it away or pass --overwrite") from e
    new = json.loads(json.dumps(cfg.to_dict()))  # as the report stores it (JSON types)
    diff = [k for k in SAME_SETTINGS if old.get(k) != new.get(k)]
    if diff:
        shown = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in diff)
        raise UsageError(f"--resume: {path} was run with other settings ({shown}); resume with the same settings, "
                         "or pass --overwrite to redo the sweep")
    return _Kept(run_dir=path.parent, report=report)


def _check_dp_options(config: Any, eps: Sequence[float]) -> None:
    """The DP options every finite ε will use, checked once (:func:`cmraudit.pipeline.dp_options`)."""
    finite = [e for e in eps if not math.isinf(e)]
    if finite:
        pipeline.dp_options(replace(config, dp_epsilon=float(finite[0])))


def plot_sweep(result: SweepResult, path: str | os.PathLike) -> Path:
    """Three panels, one per headline, against ε (log axis); ε = ∞ (no DP) drawn at the right end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted(p.epsilon for p in result.points if math.isfinite(p.epsilon))
    right = (finite[-1] * 4 if finite else 1.0)
    xs = {p.epsilon: (right if math.isinf(p.epsilon) else p.epsilon) for p in result.points}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    for ax, (key, title, note) in zip(axes, METRICS):
        pts = sorted(((xs[p.epsilon], getattr(p, key)) for p in result.points if getattr(p, key) is not None))
        fin = [(x, y) for x, y in pts if x != right or not any(math.isinf(p.epsilon) for p in result.points)]
        if pts:
            ax.plot([x for x, _ in fin], [y for _, y in fin], "o-", color="tab:blue")
            if len(fin) < len(pts):  # the no-DP reference: dotted, it is not on the ε axis
                ax.plot([x for x, _ in pts[-2:]], [y for _, y in pts[-2:]], "o:", color="tab:blue")
        else:
            ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="grey")
        if key == "mia_auc_upper":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ticks = [xs[p.epsilon] for p in sorted(result.points, key=lambda p: xs[p.epsilon])]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["∞\n(no DP)" if math.isinf(p.epsilon) else f"{p.epsilon:g}"
                            for p in sorted(result.points, key=lambda p: xs[p.epsilon])])
        ax.minorticks_off()
        ax.set_xlabel("target ε per patient")
        ax.set_title(f"{title}\n({note})", fontsize=9)
    fig.suptitle(f"privacy–utility trade-off: {result.generator}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
