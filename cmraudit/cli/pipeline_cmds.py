"""``cmraudit run``, ``cmraudit fit`` and ``cmraudit sample``: one call of the Python API each."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..dp import DPConfig
from ..errors import UsageError
from ..estimates import is_skipped
from ..generators.distributed import is_main_process
from ..pipeline import RunConfig, fit_generator, run, sample_generator
from ..progress import make_console
from . import _state

console = make_console()
SEED_MAX = 2**32 - 1

_SET = typer.Option(
    None, "--set", help="Override a generator parameter: --set steps=800 --set channels=[32,64,64] (JSON values)."
)
_DP_EPS = typer.Option(
    None, "--dp-epsilon", help="Train every stage with patient-level DP-SGD to this total ε (inf: no DP; docs/dp.md)."
)
_DP_DELTA = typer.Option(
    1e-5, "--dp-delta", min=0.0, max=1.0,
    help="DP δ for the whole generator (must be < 1/n_patients).",
)
_DP_CLIP = typer.Option(1.0, "--max-grad-norm", min=0.0, help="DP-SGD: per-patient gradient clipping norm C.")
_DP_ACC = typer.Option("prv", "--accountant", help="DP accountant: prv (tighter) or rdp.")
_DP_K = typer.Option(
    1, "--noise-multiplicity", min=1, max=1024,
    help="DP-SGD: diffusion-loss draws averaged per example before clipping.",
)
_DP_SPLIT = typer.Option(None, "--dp-split", help="DP: weight of each stage in the joint budget, e.g. "
                         "mask=0.3,image=0.7 (ldm also ae=…); default equal (docs/dp.md).")
_DEVICE = typer.Option("auto", "--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")


def parse_overrides(items: Optional[List[str]]) -> dict:
    """``["steps=800", "channels=[32,64]"]`` → ``{"steps": 800, "channels": [32, 64]}`` (JSON values, else strings)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set steps=800")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def run_cmd(
    generator: str = typer.Option(
        ..., "--generator", "-g", help="Registered generator name (see `cmraudit generators`)."
    ),
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset; default: the embedded phantom."),
    preset: str = typer.Option(
        "quick",
        "--preset",
        help="micro (smoke test: 32², a few steps, ~20 s on 2 CPU cores), quick (CPU, 64², minutes) or paper "
        "(reference study, GPU).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default cmraudit-runs/<generator>-<time>)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the split, training and sampling."),
    n_samples: Optional[int] = typer.Option(
        None, "--n-samples", min=1, help="Synthetic slices to draw (default: 96 in quick, train size in paper)."
    ),
    n_paired: Optional[int] = typer.Option(
        None,
        "--n-paired",
        min=0,
        help="Real test masks re-rendered for paired fidelity (default 32 in quick, all in paper; 0: none).",
    ),
    dp_epsilon: Optional[float] = _DP_EPS,
    dp_delta: float = _DP_DELTA,
    max_grad_norm: float = _DP_CLIP,
    accountant: str = _DP_ACC,
    noise_multiplicity: int = _DP_K,
    dp_split: Optional[str] = _DP_SPLIT,
    device: str = _DEVICE,
    sets: Optional[List[str]] = _SET,
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run in --out (same seed and settings)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out."),
    dp_audit_canaries: int = typer.Option(
        0, "--dp-audit-canaries", min=0,
        help="Also train once more with this many canary patients (each drawn in with probability ½) and report "
        "the one-run lower bound ε̂ beside the claimed ε in report.json (dp_audit block; gate rule dp_audit). "
        "0: off. Doubles the training time.",
    ),
) -> None:
    """Split → fit → sample → audit → report.json, in one command."""
    cfg = RunConfig(
        generator=generator,
        data=None if data is None else str(data),
        preset=preset,
        out=None if out is None else str(out),
        seed=seed,
        n_samples=n_samples,
        n_paired=n_paired,
        device=device,
        dp_epsilon=dp_epsilon,
        dp_delta=dp_delta,
        max_grad_norm=max_grad_norm,
        accountant=accountant,
        noise_multiplicity=noise_multiplicity,
        dp_split=dp_split,
        params=parse_overrides(sets),
        overwrite=overwrite,
        resume=resume,
        progress=not _state.QUIET,
        dp_audit_canaries=dp_audit_canaries,
    )
    res = run(cfg)
    table = Table(title=f"cmraudit run: {generator} → {res.run_dir}")
    table.add_column("step")
    table.add_column("status")
    table.add_column("time (s)", justify="right")
    for step in ("data", "fit", "sample", "fidelity", "utility", "privacy"):
        entry = res.report.get(step) if step in ("fidelity", "utility", "privacy") else None
        status = res.stage_status.get(step, "done")
        if is_skipped(entry):
            status = f"skipped: {entry.get('reason')}"
        table.add_row(step, status, f"{res.timings.get(step, 0.0):.1f}")
    console.print(table)
    for line in run_summary(res.run_dir, res.report):
        console.print(line, highlight=False, soft_wrap=True)


def _count(d: dict | None, noun: str = "slices") -> str:
    if not isinstance(d, dict):
        return "no " + noun
    p = f" of {d['patients']} patient{'s' if d['patients'] != 1 else ''}" if isinstance(d.get("patients"), int) else ""
    return f"{d.get('slices', '?')} {noun}{p}"


def run_summary(run_dir: Path, report: dict) -> list[str]:
    """The closing lines of ``cmraudit run``: where the report is, the counts in words and the verdict."""
    d = report.get("data", {})
    overall = (report.get("verdicts") or {}).get("overall", "inconclusive")
    synthetic = d.get("synthetic") if isinstance(d.get("synthetic"), dict) else {}
    return [
        f"run folder: {run_dir}",
        f"report: {run_dir / 'report.html'} (open in a browser; shareable: no real patient image)",
        "also: report.json (every number), card.md (model / data card), samples.png, logs/ (training curves)",
        f"The generator trained on {_count(d.get('train'))}; {_count(d.get('holdout'))} were held out as "
        f"non-members for the privacy audit and {_count(d.get('test'))} kept for testing; it drew "
        f"{synthetic.get('slices', '?')} synthetic slices.",
        f"Privacy verdict: {overall} (the report's headline says why). Real patient data stay in data/, split.json, "
        "model/, work/, synthetic_paired/ and privacy/: keep the run folder local (card.md lists every file).",
    ]


def fit_cmd(
    generator: str = typer.Option(..., "--generator", "-g", help="Registered generator name."),
    data: Path = typer.Option(..., "--data", help="Prepared training dataset."),
    out: Path = typer.Option(..., "--out", help="Directory for the saved generator (config.json + weights)."),
    preset: str = typer.Option("quick", "--preset", help="micro (smoke test), quick (CPU) or paper (GPU)."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX),
    device: str = _DEVICE,
    sets: Optional[List[str]] = _SET,
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Resumable training state (default OUT.work)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted fit from --work-dir (same --data and --seed, else refused)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT when it is a model cmraudit wrote."),
    dp_epsilon: Optional[float] = _DP_EPS,
    dp_delta: float = _DP_DELTA,
    max_grad_norm: float = _DP_CLIP,
    accountant: str = _DP_ACC,
    noise_multiplicity: int = _DP_K,
    dp_split: Optional[str] = _DP_SPLIT,
) -> None:
    """Fit a generator on a prepared dataset and save it. Multi-GPU: torchrun --nproc_per_node N -m cmraudit fit …"""
    dp = DPConfig.from_options(dp_epsilon, delta=dp_delta, max_grad_norm=max_grad_norm, accountant=accountant,
                               noise_multiplicity=noise_multiplicity, split=dp_split)
    gen = fit_generator(
        generator=generator,
        data=data,
        out=out,
        preset=preset,
        seed=seed,
        device=device,
        params=parse_overrides(sets),
        work_dir=work_dir,
        resume=resume,
        progress=not _state.QUIET,
        dp=dp,
        overwrite=overwrite,
    )
    if is_main_process():
        tr = getattr(gen, "training_", {}) or {}
        table = Table(title=f"fit {generator} → {out}")
        for col in ("stage", "steps", "loss start", "loss end", "time (s)"):
            table.add_column(col)
        for stage in ("mask", "image"):
            s = tr.get(stage) or {}
            f = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
            table.add_row(
                stage,
                str(s.get("steps", "-")),
                f(s.get("loss_start")),
                f(s.get("loss_end")),
                f"{s.get('time_s', 0.0):.1f}",
            )
        console.print(table)
        block = getattr(gen, "dp_", None)
        if block:
            console.print(
                f"DP-SGD: ε = {block['epsilon']:.3f}, δ = {block['delta']:.2g} per patient ({block['accountant']})"
            )


def sample_cmd(
    model: Path = typer.Option(..., "--model", help="Saved generator directory (from cmraudit fit / run)."),
    out: Path = typer.Option(..., "--out", help="Output prepared dataset."),
    n: Optional[int] = typer.Option(
        None, "--n", min=1, max=1_000_000, help="Number of slices (masks from the mask model)."
    ),
    masks: Optional[Path] = typer.Option(
        None, "--masks", help="Prepared dataset whose masks condition the images (paired)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX),
    vendor: Optional[str] = typer.Option(
        None, "--vendor", help="Render this scanner vendor's appearance (vendor-conditioned models)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT (and OUT_nifti, OUT.png) when cmraudit wrote them."
    ),
) -> None:
    """Draw synthetic slices from a saved generator (prepared format + NIfTI + PNG grid)."""
    if (n is None) == (masks is None):
        raise UsageError("cmraudit sample: give exactly one of --n N or --masks DATASET")
    syn = sample_generator(model=model, out=out, n=n, masks=masks, seed=seed, vendor=vendor, overwrite=overwrite,
                           progress=not _state.QUIET)
    console.print(f"wrote {len(syn)} synthetic slices -> {out} (NIfTI: {out}_nifti, grid: {out}.png)")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("fit")(fit_cmd)
    app.command("sample")(sample_cmd)
