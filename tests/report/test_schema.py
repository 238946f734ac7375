"""Schema validation on write and on read (issue 8, acceptance 1)."""
from __future__ import annotations

import json

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_USAGE, ReportSchemaError
from cmraudit.report import read_report, report_problems, validate_report, write_report
from .report_fixtures import make_report, variant


@pytest.mark.parametrize("kind", ["holdout", "copycat", "skipped"])
def test_fixture_reports_validate(kind):
    assert report_problems(make_report(kind)) == []


def test_write_then_read_round_trip(tmp_path):
    rep = make_report("holdout")
    path = write_report(tmp_path, rep)
    assert path == tmp_path / "report.json"
    assert read_report(tmp_path) == rep
    assert read_report(path) == rep
    assert not list(tmp_path.glob(".report.json.*"))  # temp file renamed away


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.pop("privacy"), "privacy"),
        (lambda r: r.pop("verdicts"), "verdicts"),
        (lambda r: r["run"].pop("seed"), "run.seed"),
        (lambda r: r["data"]["train"].pop("patients"), "data.train.patients"),
        (lambda r: r["generator"].pop("dp"), "generator.dp"),
        (lambda r: r["generator"].__setitem__("dp", {"epsilon": 8.0}), "generator.dp.delta"),
        (lambda r: r.__setitem__("schema_version", "9.9"), "schema_version"),
        (
            lambda r: r["privacy"]["feature_spaces"]["pixel"]["copy_detection"].pop("copy_rate"),
            "privacy.feature_spaces.pixel.copy_detection.copy_rate",
        ),
        (lambda r: r["privacy"]["mia"]["gan_leaks"]["patient"].pop("auc"), "privacy.mia.gan_leaks.patient.auc"),
        (lambda r: r["privacy"]["mia"]["gan_leaks"]["patient"]["auc"].pop("ci"), "privacy.mia.gan_leaks.patient.auc"),
        (
            lambda r: r["privacy"]["mia"]["gan_leaks"]["patient"]["auc"].__setitem__("unit", "voxel"),
            "privacy.mia.gan_leaks.patient.auc.unit",
        ),
        (lambda r: r["fidelity"]["paired"].__setitem__("psnr", 21.3), "fidelity.paired.psnr"),
        (lambda r: r["fidelity"]["paired"].__setitem__("lpips", {"status": "skipped"}), "fidelity.paired.lpips.reason"),
        (
            lambda r: r["utility"]["regimes"]["real"]["dice"]["LV"].__setitem__("value", float("nan")),
            "utility.regimes.real.dice.LV.value",
        ),
        (
            lambda r: r["utility"]["regimes"]["real"]["dice"]["LV"].__setitem__("ci", [0.9, 0.1]),
            "utility.regimes.real.dice.LV.ci",
        ),
        (
            lambda r: r["utility"]["regimes"]["real"]["dice"]["LV"].__setitem__("n", -3),
            "utility.regimes.real.dice.LV.n",
        ),
        (lambda r: r["verdicts"].__setitem__("overall", "maybe"), "verdicts.overall"),
    ],
)
def test_each_problem_is_named(mutate, field):
    bad = variant(make_report("holdout"), mutate)
    problems = report_problems(bad)
    assert any(p.startswith(field) for p in problems), problems
    with pytest.raises(ReportSchemaError, match="report.json"):
        validate_report(bad)


def test_all_problems_collected_in_one_error():
    bad = variant(
        make_report("holdout"),
        lambda r: (r.pop("utility"), r["run"].pop("device"), r.__setitem__("schema_version", "0.1")),
    )
    with pytest.raises(ReportSchemaError) as ei:
        validate_report(bad, source="x/report.json")
    msg = str(ei.value)
    assert "x/report.json" in msg and "3 problems" in msg
    for field in ("utility", "run.device", "schema_version"):
        assert field in msg


def test_extra_keys_in_stage_sections_are_accepted():
    rep = variant(
        make_report("holdout"), lambda r: r["fidelity"].__setitem__("new_thing", {"whatever": [1, 2], "note": "x"})
    )
    assert report_problems(rep) == []


def test_skipped_stage_is_valid():
    rep = variant(
        make_report("holdout"), lambda r: r.__setitem__("utility", {"status": "skipped", "reason": "--no-utility"})
    )
    assert report_problems(rep) == []


def test_write_refuses_invalid_and_writes_nothing(tmp_path):
    bad = variant(make_report("holdout"), lambda r: r.pop("data"))
    with pytest.raises(ReportSchemaError, match="data") as ei:
        write_report(tmp_path, bad)
    assert not (tmp_path / "report.json").exists()
    assert "report.invalid.json" in str(ei.value)
    assert json.loads((tmp_path / "report.invalid.json").read_text()) == bad


def _write_raw(tmp_path, rep):
    (tmp_path / "report.json").write_text(json.dumps(rep))
    return tmp_path / "report.json"


@pytest.mark.parametrize("cmd", ["report", "gate"])
@pytest.mark.parametrize(
    "mutate, field",
    [(lambda r: r["privacy"]["mia"]["domias"]["patient"].pop("tpr_at_1pct_fpr"), "tpr_at_1pct_fpr"),
     (lambda r: r.__setitem__("schema_version", "2.0"), "schema_version")],
)
def test_cli_refuses_edited_report_with_exit_2(tmp_path, capsys, cmd, mutate, field):
    path = _write_raw(tmp_path, variant(make_report("holdout"), mutate))
    assert main([cmd, str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(path) in err and field in err


def test_cli_refuses_non_json_and_missing_file(tmp_path, capsys):
    (tmp_path / "report.json").write_text("{not json")
    assert main(["gate", str(tmp_path / "report.json")]) == EXIT_USAGE
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == EXIT_USAGE
    (tmp_path / "report.json").write_text('{"schema_version": NaN}')
    assert main(["gate", str(tmp_path)]) == EXIT_USAGE
