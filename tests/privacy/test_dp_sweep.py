"""`cmraudit sweep`: one run per ε (inf = no DP), summary JSON and the trade-off plot."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cmraudit.errors import UsageError
from cmraudit.pipeline import RunConfig
from cmraudit.sweep import parse_epsilons, run_sweep


def _est(v, unit="patient"):
    return {"value": v, "ci": [v - 0.02, v + 0.02], "n": 20, "unit": unit}


@dataclass
class _Res:
    run_dir: Path
    report: dict


def fake_run(calls):
    """A stand-in for pipeline.run whose report numbers depend on ε in a known way."""

    def run(cfg):
        calls.append(cfg)
        e = cfg.dp_epsilon
        strength = 1.0 if e is None else e / (1.0 + e)  # more budget -> better fidelity/utility, more leakage
        report = {
            "generator": {
                "name": cfg.generator,
                "dp": None if e is None else {"epsilon": 0.9 * e, "delta": 1e-5, "accountant": "prv"},
            },
            "fidelity": {"distribution": {"pixel": {"frechet_distance": _est(100 * (1 - strength) + 5, "slice")}}},
            "utility": {
                "regimes": {"synthetic": {"dice": {s: _est(0.5 + 0.4 * strength) for s in ("RV", "MYO", "LV")}}}
            },
            "privacy": {"mia": {"gan_leaks": {"patient": {"auc": _est(0.5 + 0.2 * strength)}}}},
        }
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return _Res(run_dir=Path(cfg.out), report=report)

    return run


def test_parse_epsilons():
    assert parse_epsilons("1, 4,8,inf") == [1.0, 4.0, 8.0, math.inf]
    for bad in ("", "1,x", "0,1", "-2", "1,1", "nan", "1,1.0000001"):  # the last two share the folder eps-1
        with pytest.raises(UsageError, match="--epsilons"):
            parse_epsilons(bad)


def test_sweep_runs_each_epsilon_and_plots(tmp_path):
    calls = []
    res = run_sweep(config=RunConfig(generator="ddpm", preset="micro", seed=3), epsilons="1,4,inf", out=tmp_path,
                    run=fake_run(calls))
    assert [c.dp_epsilon for c in calls] == [1.0, 4.0, None]  # inf = trained without DP
    assert [Path(c.out).name for c in calls] == ["eps-1", "eps-4", "eps-inf"]
    assert all(c.seed == 3 and c.preset == "micro" for c in calls)
    summary = json.loads((tmp_path / "sweep.json").read_text())
    pts = summary["points"]
    assert [p["epsilon"] for p in pts] == [1.0, 4.0, None] and [p["dp"] for p in pts] == [True, True, False]
    assert pts[0]["epsilon_spent"] == pytest.approx(0.9) and pts[2]["epsilon_spent"] is None
    assert pts[0]["dice_synthetic"] == pytest.approx(0.5 + 0.4 * 0.5)
    assert pts[1]["mia_auc_upper"] == pytest.approx(0.5 + 0.2 * 0.8 + 0.02)
    assert pts[2]["frechet_distance"] == pytest.approx(5.0)
    png = tmp_path / "sweep.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.files == [tmp_path / "sweep.json", png]


def test_sweep_cli_command(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from cmraudit import pipeline
    from cmraudit.cli import sweep as sweep_cli

    calls = []
    monkeypatch.setattr(pipeline, "run", fake_run(calls))
    app = typer.Typer()
    sweep_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps "sweep" a named subcommand
    result = CliRunner().invoke(app, ["sweep", "--generator", "ddpm", "--epsilons", "2,inf", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [c.dp_epsilon for c in calls] == [2.0, None]
    assert (tmp_path / "sweep.png").is_file()


def test_bad_dp_options_are_refused_before_anything_is_trained_or_written(tmp_path):
    """A --dp-split that names no stage of the generator, or a generator without DP, used to fail only at fit time:
    after a run had written its split and data copies (and, in a sweep, after the ε = ∞ point had fully trained)."""
    from cmraudit.pipeline import run

    cfg = RunConfig(generator="ddpm", preset="micro", out=str(tmp_path / "r"), dp_epsilon=8.0, dp_split="mask=1",
                    progress=False)
    with pytest.raises(UsageError, match="--dp-split"):
        run(cfg)
    assert not (tmp_path / "r").exists()
    calls = []
    for bad in (replace(cfg, out=None), replace(cfg, generator="noise", dp_split=None, out=None)):
        with pytest.raises(UsageError):
            run_sweep(config=bad, epsilons="inf,8", out=tmp_path / "s", run=calls.append)
        assert calls == [] and not (tmp_path / "s").exists()


class _Interrupted(Exception):
    """Stands in for Ctrl-C / kill in the middle of a point."""


def _reporting_run(calls, fail_at=None):
    """fake_run that also writes report.json (with the run's config, as pipeline.run does), except in the point
    folder named ``fail_at``, where it stops half-way (an interrupted point: a folder without report.json)."""
    inner = fake_run(calls)

    def run(cfg):
        res = inner(cfg)
        if Path(cfg.out).name == fail_at:
            (Path(cfg.out) / "split.json").write_text("{}")
            raise _Interrupted
        res.report["run"] = {"config": cfg.to_dict()}
        (Path(cfg.out) / "report.json").write_text(json.dumps(res.report))
        return res

    return run


def test_resume_keeps_finished_points_and_reruns_the_rest(tmp_path):
    """An interrupted sweep used to be recoverable only with --overwrite (every point trained again), and the
    docstring promised a --resume that sweep did not have."""
    cfg = RunConfig(generator="ddpm", preset="micro", seed=3)
    out = tmp_path / "s"
    with pytest.raises(_Interrupted):
        run_sweep(config=cfg, epsilons="1,4,inf", out=out, run=_reporting_run([], fail_at="eps-4"))
    assert (out / "eps-1" / "report.json").is_file() and not (out / "eps-4" / "report.json").exists()
    calls = []
    with pytest.raises(UsageError, match="--resume"):  # a plain rerun: refused before any point runs
        run_sweep(config=cfg, epsilons="1,4,inf", out=out, run=_reporting_run(calls))
    assert calls == []
    res = run_sweep(config=replace(cfg, resume=True), epsilons="1,4,inf", out=out, run=_reporting_run(calls))
    assert [c.dp_epsilon for c in calls] == [4.0, None] and all(c.resume for c in calls)  # ε = 1 kept
    assert [p.epsilon for p in res.points] == [1.0, 4.0, math.inf] and (out / "sweep.png").is_file()
    assert json.loads((out / "sweep.json").read_text())["points"][0]["dice_synthetic"] == pytest.approx(0.7)
    # a finished point made with other settings is refused, naming the setting, before anything runs
    calls = []
    with pytest.raises(UsageError, match="seed: 3 there, 4 here"):
        run_sweep(config=replace(cfg, seed=4, resume=True), epsilons="1,4,inf", out=out, run=_reporting_run(calls))
    with pytest.raises(UsageError, match="one of the two"):
        run_sweep(config=replace(cfg, resume=True, overwrite=True), epsilons="1", out=out, run=_reporting_run(calls))
    assert calls == [] and (out / "sweep.json").is_file()
    # --overwrite interrupted at ε = 4: the old summary is gone, not left beside a new eps-1
    with pytest.raises(_Interrupted):
        run_sweep(config=replace(cfg, overwrite=True), epsilons="1,4,inf", out=out,
                  run=_reporting_run(calls, fail_at="eps-4"))
    assert [c.dp_epsilon for c in calls] == [1.0, 4.0]
    assert not (out / "sweep.json").exists() and not (out / "sweep.png").exists()
