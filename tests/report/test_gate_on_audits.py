"""The default gate on real audits at the size of a public dataset (issue 13 acceptance).

ACDC-sized: phantom of 150 subjects × 2 slices × 2 phases at 32² (seed 0), split like the pipeline (50/25/25 by
patient → 75 train, 38 holdout, 37 test patients). Synthetic sets of 400 slices: `holdout` (novel slices of test
patients only: the ideal private generator) and `copycat` at 5 % (20 copies of training slices, each under one copy
transform, the rest novel). Both go through `cmraudit audit` with its defaults and `cmraudit gate` with the default
policy: the holdout set passes (exit 0), the copycat fails naming the copy rule (exit 1).
"""
from __future__ import annotations

import csv

import pytest

from cmraudit.cli.main import main
from cmraudit.data import PhantomConfig, make_phantom, split_patients, write_dataset
from cmraudit.generators.reference import CopycatGenerator, HoldoutGenerator


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    ds = make_phantom(PhantomConfig(subjects=150, slices=2, size=32), seed=0)
    parts = split_patients(ds, seed=0).apply(ds)
    assert [len(set(parts[k].patient_id)) for k in ("train", "holdout", "test")] == [75, 38, 37]
    for name, part in parts.items():
        write_dataset(part, root / name)
    syn = {
        "copycat": CopycatGenerator(rate=0.05, transforms="all")
        .fit(parts["train"], seed=0, reference=parts["test"])
        .sample(n=400, seed=1),
        "holdout": HoldoutGenerator().fit(parts["train"], seed=0, reference=parts["test"]).sample(n=400, seed=1),
    }
    for name, s in syn.items():
        write_dataset(s, root / f"syn_{name}")
        rc = main(
            [
                "-q",
                "audit",
                "--train",
                str(root / "train"),
                "--holdout",
                str(root / "holdout"),
                "--synthetic",
                str(root / f"syn_{name}"),
                "--out",
                str(root / f"audit_{name}"),
                "--resamples",
                "300",
            ]
        )
        assert rc == 0
    return root


def test_copycat_at_5_percent_fails_the_default_gate(audited, capsys):
    rc = main(["gate", str(audited / "audit_copycat" / "report.json"), "--junit", str(audited / "copycat.xml")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "gate FAILED: rule copy_rate" in err and "copies detected" in err
    assert "failure" in (audited / "copycat.xml").read_text()


def test_holdout_passes_the_default_gate(audited, capsys):
    rc = main(["gate", str(audited / "audit_holdout" / "report.json")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err


def test_per_slice_csv_has_a_combined_copy_column(audited):
    rows = list(csv.DictReader(open(audited / "audit_copycat" / "privacy" / "per_slice_copies.csv")))
    assert len(rows) == 400 and {"copy_pixel", "copy_domain", "copy_registered", "copy_any_space"} <= set(rows[0])
    assert all(
        r["copy_any_space"] == str(int(any(r[k] == "1" for k in r if k.startswith("copy_") and k != "copy_any_space")))
        for r in rows
    )
    assert 19 <= sum(r["copy_registered"] == "1" for r in rows) <= 20
