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
    assert dp is not None and 0 < dp["epsilon"] <= 8.0 + 1e-6 and dp["delta"] <= 1e-3 * (1 + 1e-9)
    assert dp["unit"] == "patient" and dp["accountant"] == "prv"
    assert set(dp["stages"]) == {"mask_model", "image_model"}
    for s in dp["stages"].values():
        assert 0 < s["epsilon"] <= 4.0 + 1e-6 and s["n_patients"] == report["data"]["train"]["patients"]
    assert load_generator(out / "model").dp_ == dp  # the saved model keeps its budget
    assert report["run"]["config"]["dp_epsilon"] == 8.0
    from cmraudit.report import validate_report

    validate_report(report)  # the DP block fits the report schema


def test_non_dp_plugin_refuses_dp_epsilon(tmp_path, capsys):
    assert main(["run", "--generator", "copycat", "--preset", "micro", "--dp-epsilon", "8", "--out", str(tmp_path / "c")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--dp-epsilon" in err and "copycat" in err
    assert not (tmp_path / "c" / "report.json").exists()


def test_bad_dp_options_are_usage_errors(tmp_path, capsys):
    assert main(["run", "--generator", "ddpm", "--preset", "micro", "--dp-epsilon", "8", "--accountant", "gdp",
                 "--out", str(tmp_path / "d")]) == EXIT_USAGE
    assert "--accountant" in capsys.readouterr().err
