"""``cmraudit dp-audit``: the canary-patient check of a DP claim (one training run, ε̂ lower bound)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from ..dp import DPConfig, require_dp_support
from ..errors import GateFailed, UsageError
from ..generators.checkpoint import write_json_atomic
from ..generators.registry import get_plugin
from ..io_guard import check_output, make_output_dir
from ..pipeline import load_data, make_generator
from ..privacy.canary import canary_audit
from ..progress import make_console
from . import _state
from .pipeline_cmds import parse_overrides

console = make_console()


def dp_audit_cmd(
    generator: str = typer.Option(..., "--generator", "-g", help="Registered generator name."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Prepared dataset (all patients: canaries and base); default: the phantom."
    ),
    preset: str = typer.Option("quick", "--preset", help="micro, quick or paper (the run's settings)."),
    dp_epsilon: Optional[float] = typer.Option(
        None, "--dp-epsilon", help="Train under patient-level DP-SGD to this ε (the claim to check); omit: no DP."
    ),
    dp_delta: float = typer.Option(1e-5, "--dp-delta", help="DP δ (must be < 1/n_train_patients)."),
    canaries: int = typer.Option(
        32, "--canaries", help="M canary patients, each included with probability ½ (secret, recorded draw)."
    ),
    attack: str = typer.Option(
        "auto",
        "--attack",
        help="White-box attack that scores the canaries: auto (the strongest the generator allows: grad_norm, "
        "else loss), loss, or a registered attack that needs no reference (grad_norm, pia, sima, …).",
    ),
    distinctive: float = typer.Option(
        0.0,
        "--distinctive",
        help="Stamp each canary patient with its own smooth random pattern of this standard deviation "
        "(outlier canaries, a stronger audit; 0 = as they are).",
    ),
    guesses: Optional[int] = typer.Option(
        None, "--guesses", help="r guesses: r/2 highest 'in', r/2 lowest 'out' (default M/2)."
    ),
    subjects: Optional[int] = typer.Option(
        None, "--subjects", help="Phantom subjects when --data is absent (default: the preset's)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the canary choice, the inclusion draw, training and scoring."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="Override a generator parameter (JSON values)."),
    out: Path = typer.Option(..., "--out", help="Directory for dp_audit.json (the report's dp_audit block)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dp_audit.json this command wrote before."),
) -> None:
    """Train once with canary patients and report the one-run lower bound ε̂ beside the claimed ε (exit 1 if ε̂ > ε)."""
    check_output(out, inputs=[("--data", data)], option="--out", produces="dp-audit")
    path = out / "dp_audit.json"
    if path.exists() and not overwrite:
        raise UsageError(f"--out {out}: dp_audit.json is already there; pass --overwrite or choose another --out")
    if guesses is not None and (guesses < 2 or guesses > canaries):
        raise UsageError(f"--guesses {guesses}: must be in 2..--canaries ({canaries})")
    dp = DPConfig.from_options(dp_epsilon, delta=dp_delta)
    require_dp_support(name=generator, tags=get_plugin(generator).cls.tags, dp=dp)
    ds, source = load_data(None if data is None else str(data), preset=preset, seed=seed, subjects=subjects)
    params = parse_overrides(sets)
    r = None if guesses is None else guesses // 2
    res = canary_audit(
        make_generator=lambda: make_generator(generator, preset=preset, params=params, device=device),
        data=ds,
        canaries=canaries,
        seed=seed,
        dp=dp,
        attack=attack,
        distinctive=distinctive,
        r_plus=r,
        r_minus=None if guesses is None else guesses - r,
    )
    block = res.to_dict() | {"generator": generator, "preset": preset, "data": source}
    make_output_dir(out, kind="dp-audit")
    write_json_atomic(path, {"format": "cmraudit-dp-audit", "dp_audit": block})
    eps_hat = block["epsilon_lower_bound"]
    claim = "no DP claim (ε = ∞)" if res.epsilon_claimed is None else f"claimed ε = {res.epsilon_claimed:.3f}"
    shown = "∞" if eps_hat is None or (isinstance(eps_hat, float) and math.isinf(eps_hat)) else f"{eps_hat:.3f}"
    console.print(
        f"dp-audit {generator}: ε̂ = {shown} (95 % lower bound; {block['correct']}/{block['guesses']} guesses "
        f"right on {block['m']} canaries), {claim} → {path}"
    )
    if res.falsified:
        raise GateFailed(
            f"dp-audit: ε̂ = {shown} exceeds the claimed ε = {res.epsilon_claimed:.3f}: the DP claim is falsified"
        )
    if not _state.QUIET and eps_hat == 0:
        console.print(
            "ε̂ = 0: this attack found no evidence against the claim (a lower bound; it does not prove privacy)"
        )


def register(app: typer.Typer) -> None:
    app.command("dp-audit")(dp_audit_cmd)
