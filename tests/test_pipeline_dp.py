"""`cmraudit run --dp-epsilon`: the report's generator.dp block; non-DP plugins refuse the option (exit 2)."""
import json

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_USAGE
from cmraudit.generators.checkpoint import load_generator


def test_run_micro_under_dp_reports_the_budget(tmp_path):
    out = tmp_path / "run"
    rc = main(["--quiet", "run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "8", "--dp-delta", "1e-3",
               "--n-samples", "4", "--n-paired", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    dp = report["generator"]["dp"]
    # the joint accounting over both stages spends the budget asked for, within 1 % (issue 19)
    assert dp is not None and 7.92 <= dp["epsilon"] <= 8.0 and dp["delta"] <= 1e-3 * (1 + 1e-9)
    assert dp["composition"].startswith("prv accountant over the joint history") and dp["target_epsilon"] == 8.0
    assert dp["unit"] == "patient" and dp["accountant"] == "prv"
    assert set(dp["stages"]) == {"mask_model", "image_model"} and dp["split"] == {"mask_model": 0.5, "image_model": 0.5}
    for s in dp["stages"].values():
        assert 0 < s["epsilon"] < dp["epsilon"] and s["n_patients"] == report["data"]["train"]["patients"]
    assert load_generator(out / "model").dp_ == dp  # the saved model keeps its budget
    assert report["run"]["config"]["dp_epsilon"] == 8.0
    from cmraudit.report import validate_report

    validate_report(report)  # the DP block fits the report schema


def test_fit_micro_at_epsilon_1_with_a_stage_split(tmp_path):
    from cmraudit.data.phantom import PhantomConfig, make_phantom
    from cmraudit.data.dataset import write_dataset

    data = tmp_path / "train"
    write_dataset(make_phantom(PhantomConfig(subjects=6, slices=2, size=32), seed=0), data)
    rc = main(["--quiet", "fit", "--generator", "ddpm", "--preset", "micro", "--data", str(data),
               "--out", str(tmp_path / "m"), "--device", "cpu", "--dp-epsilon", "1", "--dp-delta", "1e-3", "--dp-split", "mask=0.3,image=0.7"])
    assert rc == 0
    dp = load_generator(tmp_path / "m").dp_
    assert 0.99 <= dp["epsilon"] <= 1.0 and dp["split"] == {"mask_model": 0.3, "image_model": 0.7}
    # the image stage has the larger share of the budget, so less noise than the mask stage (same q and steps here)
    st = dp["stages"]
    assert st["image_model"]["noise_multiplier"] < st["mask_model"]["noise_multiplier"]


def test_dp_split_names_the_missing_stage(tmp_path, capsys):
    assert main(["run", "--generator", "ldm", "--preset", "micro", "--dp-epsilon", "8", "--dp-split", "mask=1,image=1",
                 "--device", "cpu", "--out", str(tmp_path / "s")]) == EXIT_USAGE
    assert "missing: autoencoder" in capsys.readouterr().err
    assert not (tmp_path / "s" / "report.json").exists()


def test_non_dp_plugin_refuses_dp_epsilon(tmp_path, capsys):
    assert main(["run", "--generator", "copycat", "--preset", "micro", "--dp-epsilon", "8", "--out", str(tmp_path / "c")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--dp-epsilon" in err and "copycat" in err
    assert not (tmp_path / "c" / "report.json").exists()


def test_bad_dp_options_are_usage_errors(tmp_path, capsys):
    assert main(["run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "8", "--accountant", "gdp",
                 "--out", str(tmp_path / "d")]) == EXIT_USAGE
    assert "--accountant" in capsys.readouterr().err
