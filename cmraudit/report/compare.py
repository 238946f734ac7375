"""``cmraudit compare``: the fidelity–utility–privacy trade-off across runs (as in the reference study).

Headline numbers per run (all read from validated report.json files):

* fidelity — Fréchet distance on the first feature space available in the order
  ``inception, domain, radiomic, pixel`` (lower is better; compare only at equal N and features),
  with coverage beside it;
* utility — mean Dice over structures of the segmentation trained on synthetic data only
  (``utility.regimes.synthetic``; higher is better), and of ``real+synthetic``;
* privacy — max over attacks of the patient-level MIA AUC 95 % CI upper bound (lower is
  better), with the copy-rate CI upper bound (max over feature spaces) and ε.

A run is Pareto-optimal when no other run is at least as good on all three headlines and
strictly better on one (missing headlines never dominate).
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from ..io_guard import atomic_dir
from . import plots
from .io import read_report, resolve_report_path
from .walk import feature_spaces, find_key, is_estimate, is_skipped

FD_SPACES = ("inception", "domain", "radiomic", "pixel")

# (key, column label, better) — better: "lower" / "higher" / ""
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("run", "run", ""),
    ("generator", "generator", ""),
    ("frechet_distance", "Fréchet dist.", "lower"),
    ("coverage", "coverage", "higher"),
    ("dice_synthetic", "Dice (synthetic)", "higher"),
    ("dice_real_synthetic", "Dice (real+syn)", "higher"),
    ("copy_rate_upper", "copy rate ≤", "lower"),
    ("mia_auc_upper", "MIA AUC ≤", "lower"),
    ("epsilon", "ε", "lower"),
    ("verdict", "verdict", ""),
)


@dataclass
class CompareRow:
    run: str
    generator: str
    frechet_distance: float | None = None
    fd_space: str | None = None
    coverage: float | None = None
    dice_synthetic: float | None = None
    dice_real_synthetic: float | None = None
    copy_rate_upper: float | None = None
    mia_auc_upper: float | None = None
    epsilon: float | None = None
    verdict: str | None = None
    pareto_optimal: bool = False

    def cell(self, key: str) -> str:
        v = getattr(self, key)
        if v is None:
            return "—"
        if key == "frechet_distance" and self.fd_space:
            return f"{v:.4g} ({self.fd_space})"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CompareResult:
    rows: list[CompareRow]
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "files": [str(f) for f in self.files]}


def _value(e: Any) -> float | None:
    if is_estimate(e) and isinstance(e.get("value"), (int, float)):
        return float(e["value"])
    return None


def _upper(e: Any) -> float | None:
    if is_estimate(e) and isinstance(e.get("ci"), list) and isinstance(e["ci"][1], (int, float)):
        return float(e["ci"][1])
    return None


def _mean_dice(regime: Any) -> float | None:
    vals = [v for _, e in find_key(regime, "dice", "") for v in _dice_values(e)]
    return sum(vals) / len(vals) if vals else None


def _dice_values(e: Any) -> list[float]:
    if is_estimate(e):
        v = _value(e)
        return [] if v is None else [v]
    if isinstance(e, dict) and not is_skipped(e):
        return [v for sub in e.values() for v in _dice_values(sub)]
    return []


def fd_spaces(report: dict) -> list[str]:
    """The feature spaces with a computed Fréchet distance in ``report``, in the order :func:`headline` prefers."""
    fid = report.get("fidelity")
    dist = fid.get("distribution") if isinstance(fid, dict) else None
    if not isinstance(dist, dict):
        return []
    return [s for s in (*FD_SPACES, *sorted(set(dist) - set(FD_SPACES)))
            if isinstance(dist.get(s), dict) and isinstance(dist[s].get("frechet_distance"), dict)
            and _value(dist[s]["frechet_distance"]) is not None]


def common_fd_space(reports: Sequence[dict]) -> str | None:
    """The preferred feature space whose Fréchet distance every report holds (None if none is shared): Fréchet
    distances of different spaces are not comparable, so ``compare`` reads every run in this one."""
    if not reports:
        return None
    shared = set.intersection(*(set(fd_spaces(r)) for r in reports))
    return next((s for s in fd_spaces(reports[0]) if s in shared), None)


def headline(report: dict, *, run: str, fd_space: str | None | bool = True) -> CompareRow:
    """The headline numbers of one report (None where not computed). ``fd_space``: the feature space to read the
    Fréchet distance and coverage in (None: none); ``True``: the first computed one of :data:`FD_SPACES` (a report on
    its own)."""
    gen = report.get("generator") or {}
    row = CompareRow(run=run, generator=str(gen.get("name")))
    computed = fd_spaces(report)
    space = (computed[0] if computed else None) if fd_space is True else fd_space
    if space in computed:
        dist = report["fidelity"]["distribution"][space]
        row.frechet_distance, row.fd_space = _value(dist["frechet_distance"]), space
        row.coverage = _value(dist.get("coverage"))
    util = report.get("utility")
    regimes = util.get("regimes") if isinstance(util, dict) else None
    if isinstance(regimes, dict):
        row.dice_synthetic = _mean_dice(regimes.get("synthetic"))
        row.dice_real_synthetic = _mean_dice(regimes.get("real+synthetic"))
    priv = report.get("privacy")
    spaces = feature_spaces(priv)
    if "registered" in spaces:  # the copy decision (the gate's default scope); older reports: max over spaces
        spaces = {"registered": spaces["registered"]}
    uppers = [
        _upper((s.get("copy_detection") or {}).get("copy_rate"))
        for s in spaces.values()
        if isinstance(s.get("copy_detection"), dict)
    ]
    uppers = [u for u in uppers if u is not None]
    row.copy_rate_upper = max(uppers) if uppers else None
    mia = priv.get("mia") if isinstance(priv, dict) else None
    if isinstance(mia, dict) and not is_skipped(mia):
        aucs = [
            _upper((a.get("patient") or {}).get("auc"))
            for a in mia.values()
            if isinstance(a, dict) and isinstance(a.get("patient"), dict)
        ]
        aucs = [a for a in aucs if a is not None]
        row.mia_auc_upper = max(aucs) if aucs else None
    dp = gen.get("dp")
    row.epsilon = float(dp["epsilon"]) if isinstance(dp, dict) and isinstance(dp.get("epsilon"), (int, float)) else None
    row.verdict = (report.get("verdicts") or {}).get("overall")
    return row


def pareto_flags(rows: Sequence[CompareRow]) -> list[bool]:
    """Non-dominated runs on (FD lower, Dice synthetic higher, MIA AUC upper lower)."""
    def objs(r: CompareRow):
        return (r.frechet_distance, None if r.dice_synthetic is None else -r.dice_synthetic, r.mia_auc_upper)

    flags = []
    for r in rows:
        a = objs(r)
        if all(x is None for x in a):
            flags.append(False)
            continue
        dominated = False
        for s in rows:
            if s is r:
                continue
            b = objs(s)
            comparable = [(x, y) for x, y in zip(a, b) if x is not None]
            if any(y is None for _, y in comparable) or not comparable:
                continue  # a missing headline never dominates
            if all(y <= x for x, y in comparable) and any(y < x for x, y in comparable):
                dominated = True
                break
        flags.append(not dominated)
    return flags


def compare_runs(run_dirs: Sequence[str | os.PathLike], *, out: str | os.PathLike) -> CompareResult:
    """Read every report, write ``out/compare.{csv,md,json}`` and ``out/pareto.png``."""
    if len(run_dirs) < 1:
        raise UsageError("compare: no run directories given (pass one or more RUN_DIRs)")
    rows = []
    names: dict[str, int] = {}
    paths = [resolve_report_path(rd) for rd in run_dirs]
    reports = [read_report(path) for path in paths]
    space = common_fd_space(reports)  # one space for every run: FDs of different spaces do not compare
    for path, rep in zip(paths, reports):
        name = path.parent.name or str(path)
        names[name] = names.get(name, 0) + 1
        rows.append(headline(rep, run=name if names[name] == 1 else f"{name}#{names[name]}", fd_space=space))
    for r, flag in zip(rows, pareto_flags(rows)):
        r.pareto_optimal = flag

    out = Path(out)
    # built beside, swapped in whole: never old and new files mixed; a write error names OUT (atomic_dir)
    with atomic_dir(out, kind="compare") as build:
        _write_csv(rows, build / "compare.csv")
        _write_md(rows, build / "compare.md")
        (build / "compare.json").write_text(json.dumps([r.to_dict() for r in rows], indent=2))
        (build / "pareto.png").write_bytes(_pareto_png(rows))
    files = [out / n for n in ("compare.csv", "compare.md", "compare.json", "pareto.png")]
    return CompareResult(rows=rows, files=files)


def _pareto_png(rows: Sequence[CompareRow]) -> bytes:
    return plots.pareto_plot(
        [r.run for r in rows],
        [r.frechet_distance for r in rows],
        [r.dice_synthetic for r in rows],
        [r.mia_auc_upper for r in rows],
        labels=(
            "fidelity: Fréchet distance (lower better)",
            "utility: Dice, synthetic-only (higher better)",
            "privacy: MIA AUC CI upper (lower better)",
        ),
        optimal=[r.pareto_optimal for r in rows],
    )


def _write_csv(rows: Sequence[CompareRow], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].to_dict()))
        w.writeheader()
        for r in rows:
            w.writerow(r.to_dict())
    return path


def _write_md(rows: Sequence[CompareRow], path: Path) -> Path:
    head = [label + (" ↓" if b == "lower" else " ↑" if b == "higher" else "") for _, label, b in COLUMNS] + ["Pareto"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r.cell(k) for k, _, _ in COLUMNS] + ["yes" if r.pareto_optimal else ""]) + " |")

    path.write_text("\n".join(lines) + "\n")
    return path
