"""The gate on real audits (issue 8 acceptance): a copycat set violates the policy, a holdout set passes.

Phantom 160 subjects × 2 slices × 2 phases at 32² (seed 0), split 50/25/25 by patient → 80 train, 40 holdout,
40 test patients. Synthetic sets of 400 slices: `copycat` (20 % planted copies of training slices, the rest novel
slices of test patients) and `holdout` (novel slices of test patients only). Both go through `cmraudit audit`
(pixel + domain spaces, black-box attacks) and `cmraudit gate` with the policy below: with 40 non-member patients
the patient-level AUC CI is about ±0.2 wide, so the AUC budget here is 0.8 (a budget a run of this size can meet);
TPR at 1 % FPR needs ≥ 100 non-member patients and is left out of this policy (it would fail closed).
The copy-rate budget (6 %) sits above the measured false-flag rate of the `registered` space on novel slices
(≈ 2.4 %, CI upper ≈ 5 % with 80 holdout calibration slices) and far below the planted 20 %.
"""
from __future__ import annotations

import pytest

from cmraudit.cli.main import main
from cmraudit.data import PhantomConfig, make_phantom, split_patients, write_dataset
from cmraudit.generators.reference import CopycatGenerator, HoldoutGenerator

POLICY = """
[rules]
copy_rate = 0.06   # the registered space flags ~2 % of novel slices at this calibration size (docs/privacy.md)
patients_copied = 0.1
mia_auc = 0.8
mia_tpr_at_1pct_fpr = false  # unsupported below 100 non-member patients: it would fail closed
"""


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    ds = make_phantom(PhantomConfig(subjects=160, slices=2, size=32), seed=0)
    parts = split_patients(ds, seed=0).apply(ds)
    for name, part in parts.items():
        write_dataset(part, root / name)
    syn = {
        "copycat": CopycatGenerator(rate=0.2).fit(parts["train"], seed=0, reference=parts["test"]).sample(n=400, seed=1),
        "holdout": HoldoutGenerator().fit(parts["train"], seed=0, reference=parts["test"]).sample(n=400, seed=1),
    }
    (root / "policy.toml").write_text(POLICY)
    for name, s in syn.items():
        write_dataset(s, root / f"syn_{name}")
        rc = main(["-q", "audit", "--train", str(root / "train"), "--holdout", str(root / "holdout"),
                   "--synthetic", str(root / f"syn_{name}"), "--out", str(root / f"audit_{name}"), "--resamples", "300"])
        assert rc == 0
    return root


def test_copycat_violates_the_policy(audited, capsys):
    rc = main(["gate", str(audited / "audit_copycat" / "report.json"), "--policy", str(audited / "policy.toml"),
               "--junit", str(audited / "copycat.xml")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "gate FAILED: rule copy_rate" in err and "gate FAILED: rule patients_copied" in err
    assert "failure" in (audited / "copycat.xml").read_text()


def test_holdout_passes_the_policy(audited, capsys):
    rc = main(["gate", str(audited / "audit_holdout" / "report.json"), "--policy", str(audited / "policy.toml")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
