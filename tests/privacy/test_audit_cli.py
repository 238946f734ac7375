"""`cmraudit audit` end to end on prepared directories, and the report's privacy section."""
from __future__ import annotations

import json


from cmraudit.cli.main import main
from cmraudit.data.dataset import write_dataset
from cmraudit.generators.reference import CopycatGenerator


def test_audit_cli_writes_privacy_report(tmp_path, phantom_split, capsys):
    train, holdout, test = phantom_split
    syn = CopycatGenerator(rate=0.1).fit(train, seed=0, reference=test).sample(n=120, seed=0)
    for name, ds in (("train", train), ("holdout", holdout), ("syn", syn)):
        write_dataset(ds, tmp_path / name)
    gen_dir = tmp_path / "run" / "model"
    CopycatGenerator(rate=1.0).fit(train, seed=0).save(gen_dir)
    rc = main(["-q", "audit", "--train", str(tmp_path / "train"), "--holdout", str(tmp_path / "holdout"), "--synthetic",
               str(tmp_path / "syn"), "--model", str(tmp_path / "run"), "--feature", "pixel", "--resamples", "50",
               "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    p = rep["privacy"]
    cd = p["feature_spaces"]["pixel"]["copy_detection"]
    assert cd["copy_rate"]["unit"] == "slice" and cd["copy_rate"]["ci"][0] <= 0.1 <= cd["copy_rate"]["ci"][1]
    assert {"bins", "train", "holdout"} <= set(p["feature_spaces"]["pixel"]["dcr_histogram"])
    assert p["mia"]["gan_leaks_pixel"]["patient"]["auc"]["unit"] == "patient"
    assert p["mia"]["loss"]["status"] == "skipped" and "loss" in p["mia"]["loss"]["reason"]
    assert "dice_gt_0_99" in p["masks"]["copy_detection"]["legacy"]
    assert (tmp_path / "out" / "privacy" / "top_pairs_pixel.png").is_file()
    assert (tmp_path / "out" / "privacy" / "per_slice_pixel.csv").is_file()
    assert rep["fidelity"]["status"] == "skipped"


def test_audit_cli_errors(tmp_path, capsys):
    d = tmp_path / "d"  # inputs beside --out, never holding it (the output guard refuses an --out inside an input)
    d.mkdir()
    rc = main(["audit", "--train", str(tmp_path / "nope"), "--holdout", str(d), "--synthetic", str(d),
               "--out", str(tmp_path / "o")])
    assert rc == 4 and "not a prepared dataset" in capsys.readouterr().err
    rc = main(["audit", "--train", str(d), "--holdout", str(d), "--synthetic", str(d),
               "--feature", "inception", "--out", str(tmp_path / "o")])
    assert rc == 2 and "inception" in capsys.readouterr().err
