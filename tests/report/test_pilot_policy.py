"""examples/ci-gate/pilot-policy.toml (issue 17): a micro run in which nothing leaks passes it with `cmraudit gate`;
a synthetic set of training slices still fails it, so the pilot gate is not a rubber stamp."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cmraudit.cli.main import main
from cmraudit.data import PhantomConfig, make_phantom, split_patients, write_dataset
from cmraudit.report.policy import load_policy

PILOT = Path(__file__).resolve().parents[2] / "examples" / "ci-gate" / "pilot-policy.toml"


def test_pilot_policy_parses_and_says_what_it_does_not_prove():
    pol = load_policy(PILOT)
    assert pol.rules["copy_rate"] is not None and pol.rules["mia_auc"] is None
    text = PILOT.read_text()
    assert "does NOT prove" in text and "membership inference" in text


def test_clean_micro_run_passes_the_pilot_policy(micro_cli_run, capsys):
    report = micro_cli_run["run_dir"] / "report.json"
    assert main(["gate", str(report), "--policy", str(PILOT)]) == 0, capsys.readouterr().err
    # … while the default policy cannot decide a run this small (the reason the pilot policy exists)
    assert main(["gate", str(report)]) == 1
    assert "underpowered" in capsys.readouterr().err


def test_copied_training_slices_fail_the_pilot_policy(tmp_path, capsys):
    ds = make_phantom(PhantomConfig(subjects=9, size=32), seed=0)  # the micro run's data
    parts = split_patients(ds, seed=0).apply(ds)
    for name in ("train", "holdout"):
        write_dataset(parts[name], tmp_path / name)
    train = parts["train"]
    rows = np.random.default_rng(0).choice(len(train), 8, replace=False)
    copies = train.subset(rows)
    write_dataset(copies, tmp_path / "copies")
    assert main(["-q", "audit", "--train", str(tmp_path / "train"), "--holdout", str(tmp_path / "holdout"),
                 "--synthetic", str(tmp_path / "copies"), "--out", str(tmp_path / "audit"), "--resamples", "200"]) == 0
    rc = main(["gate", str(tmp_path / "audit" / "report.json"), "--policy", str(PILOT)])
    err = capsys.readouterr().err
    assert rc == 1 and "copy_rate" in err, err
